package domain_test

import (
	"testing"

	"rxflow/domain"
)

func TestCodeSystemOf(t *testing.T) {
	cases := map[string]string{
		"J01CA04": domain.CodeSystemATC, "A10BA02": domain.CodeSystemATC,
		"314076": domain.CodeSystemRxNorm, "1": domain.CodeSystemRxNorm,
		"": domain.CodeSystemUnknown, "j01ca04": domain.CodeSystemUnknown, "J01CA4": domain.CodeSystemUnknown,
		"J01CA045": domain.CodeSystemUnknown, "MET-500": domain.CodeSystemUnknown, "31407a": domain.CodeSystemUnknown,
		"３１４": domain.CodeSystemUnknown, // full-width digits are not digits here
	}
	for code, want := range cases {
		if got := domain.CodeSystemOf(code); got != want {
			t.Errorf("CodeSystemOf(%q) = %q, want %q", code, got, want)
		}
	}
}

// A request keeps the code system it names, and gets the one its code's
// shape shows when it names none.
func TestRequestedCodeSystem(t *testing.T) {
	cases := []struct{ code, system, want string }{
		{"J01CA04", "", domain.CodeSystemATC},
		{"314076", "", domain.CodeSystemRxNorm},
		{"", "", domain.CodeSystemUnknown},
		{"0093-7146", "NDC", "NDC"},
		{"J01CA04", domain.CodeSystemRxNorm, domain.CodeSystemRxNorm},
	}
	for _, tc := range cases {
		c := domain.Command{Type: domain.Request, URN: "urn:rx:cs", PatientID: "p", PrescriberID: "d",
			Medication: domain.Medication{Name: "n", Code: tc.code, CodeSystem: tc.system, Quantity: 1}}
		evs, err := domain.Decide(domain.Prescription{}, c, now)
		if err != nil {
			t.Fatal(err)
		}
		if got := evs[0].(domain.Requested).Medication.CodeSystem; got != tc.want {
			t.Errorf("code %q, system %q: recorded %q, want %q", tc.code, tc.system, got, tc.want)
		}
	}
}
