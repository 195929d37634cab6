package partners_test

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"rxflow/domain"
	"rxflow/infra/partners"
	"rxflow/projections"
	"rxflow/standin/partnersim"
)

// Set tells the reactors which class a failure is: refused by the partner
// (a retry cannot help) or unavailable (a later retry may), both
// ErrPartnerFailed; a cancelled call is neither, so it stays transient.
func TestSetClassifiesFailures(t *testing.T) {
	sim := startSim(t)
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	unreachable := "http://" + closed.Addr().String() + "/pharmacy"
	closed.Close()

	rx := domain.Prescription{URN: "urn:rx:1", PatientID: "pat-1", PrescriberID: "dr-1", PharmacyID: "ph-1", ApprovedBy: "dr-1",
		Medication: domain.Medication{Name: "Amoxicillin", Quantity: 20}, ApprovedAt: time.Now(), ProcessingAt: time.Now(), FailedAt: time.Now()}
	cases := []struct {
		name    string
		partner partnersim.Partner
		setup   func()
		baseURL string // instead of the simulator
		cancel  bool
		want    error // nil: success
	}{
		{name: "accepted", partner: partnersim.Pharmacy},
		{name: "pharmacy refuses 422", partner: partnersim.Pharmacy, setup: func() { sim.FailNext(partnersim.Pharmacy, 1, 422) }, want: projections.ErrPartnerRefused},
		{name: "insurance refuses 400", partner: partnersim.Insurance, setup: func() { sim.FailNext(partnersim.Insurance, 1, 400) }, want: projections.ErrPartnerRefused},
		{name: "notifications down", partner: partnersim.Notifications, setup: func() { sim.SetDown(partnersim.Notifications, true) }, want: projections.ErrPartnerUnavailable},
		{name: "alerting keeps answering 429", partner: partnersim.Alerting, setup: func() { sim.FailNext(partnersim.Alerting, 10, 429) }, want: projections.ErrPartnerUnavailable},
		{name: "pharmacy unreachable", partner: partnersim.Pharmacy, baseURL: unreachable, want: projections.ErrPartnerUnavailable},
		{name: "cancelled", partner: partnersim.Pharmacy, setup: func() { sim.SetDown(partnersim.Pharmacy, true) }, cancel: true, want: context.Canceled},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sim.Reset()
			if tc.setup != nil {
				tc.setup()
			}
			set := newSet(t, sim, map[string]string{string(tc.partner): tc.baseURL})
			ctx, cancel := context.WithCancel(context.Background())
			if tc.cancel {
				cancel()
			}
			defer cancel()
			r := reactionOf(t, tc.partner)
			_, err := set.Call(ctx, r.Partner, "evt-"+string(rune('a'+i)), r.Body(projections.Change{After: rx}))
			if tc.want == nil {
				if err != nil {
					t.Fatalf("err = %v, want success", err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			partnerFailed := tc.want != context.Canceled
			if errors.Is(err, projections.ErrPartnerFailed) != partnerFailed {
				t.Fatalf("errors.Is(%v, ErrPartnerFailed) = %v, want %v", err, !partnerFailed, partnerFailed)
			}
			other := projections.ErrPartnerRefused
			if tc.want == projections.ErrPartnerRefused {
				other = projections.ErrPartnerUnavailable
			}
			if errors.Is(err, other) {
				t.Fatalf("err = %v is both refused and unavailable", err)
			}
		})
	}
}

// reactionOf returns the row of projections.Reactions that calls p.
func reactionOf(t *testing.T, p partnersim.Partner) projections.Reaction {
	t.Helper()
	i := slices.IndexFunc(projections.Reactions, func(r projections.Reaction) bool { return r.Partner.Name == string(p) })
	if i < 0 {
		t.Fatalf("no reaction calls %s", p)
	}
	return projections.Reactions[i]
}

// NewSet reports every partner it cannot reach at once, by name, and Call
// refuses a partner it was not given without calling it a partner failure.
func TestNewSetNamesEveryMisconfiguredPartner(t *testing.T) {
	ps := projections.PartnersOf(projections.Reactions)
	_, err := partners.NewSet(ps, partners.Endpoints{"pharmacy": {BaseURL: "ftp://x"}}, nil)
	for _, p := range ps {
		if err == nil || !strings.Contains(err.Error(), p.Name+": partners: BaseURL") {
			t.Errorf("NewSet error %v does not name %s", err, p.Name)
		}
	}
	set, err := partners.NewSet(nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = set.Call(context.Background(), projections.Support, "k", projections.Alert{})
	if err == nil || errors.Is(err, projections.ErrPartnerFailed) || !strings.Contains(err.Error(), `"alerting"`) {
		t.Fatalf("Call of a partner not configured: %v", err)
	}
}
