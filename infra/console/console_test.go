package console

import (
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"rxflow/domain"
)

// An action's result page links back only inside the console: a form that
// names another site, or a scheme-relative or odd path, gets the
// operations page.
func TestBackStaysInTheConsole(t *testing.T) {
	for from, want := range map[string]string{
		"/console/prescription?urn=urn%3Arx%3A1": "/console/prescription?urn=urn%3Arx%3A1",
		"/console/operations":                    "/console/operations",
		"https://attacker.example/console/":      "/console/operations",
		"//attacker.example/console/":            "/console/operations",
		"/prescriptions":                         "/console/operations",
		"/console/\\attacker.example":            "/console/operations",
		"":                                       "/console/operations",
	} {
		r := httptest.NewRequest("POST", "/console/retry", strings.NewReader(url.Values{"back": {from}}.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if got := back(r); got != want {
			t.Errorf("back %q: %q, want %q", from, got, want)
		}
	}
}

// The overview's diagram is the workflow's, with every state's count.
func TestDiagramCounts(t *testing.T) {
	d := diagram(domain.Prescriptions, map[domain.Status]int{domain.StatusCompleted: 3})
	if !strings.HasPrefix(d, domain.Prescriptions.Mermaid()) {
		t.Errorf("the diagram does not start with the workflow's:\n%s", d)
	}
	for _, s := range domain.Statuses {
		want := "    " + string(s) + ": " + string(s) + " (0)\n"
		if s == domain.StatusCompleted {
			want = "    completed: completed (3)\n"
		}
		if !strings.Contains(d, want) {
			t.Errorf("the diagram lacks %q:\n%s", want, d)
		}
	}
}
