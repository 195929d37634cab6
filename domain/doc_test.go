package domain_test

import (
	"flag"
	"os"
	"testing"

	"rxflow/domain"
)

var update = flag.Bool("update", false, "rewrite docs/workflow.md from the workflow table")

// The workflow page is generated from the table and must match it.
func TestWorkflowDocMatchesTable(t *testing.T) {
	const path = "../docs/workflow.md"
	want := domain.Prescriptions.Markdown()
	if *update {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatalf("%s is out of date: run go test ./domain -update", path)
	}
}
