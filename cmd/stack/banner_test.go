package main

import (
	"os"
	"strings"
	"testing"
)

// The banner's sample command is the README's, pharmacyId included.
func TestBannerExampleIsTheReadmes(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "echo '"+requestExample+"'") {
		t.Fatalf("README.md has no kcat example equal to the banner's:\n%s", requestExample)
	}
	if !strings.Contains(requestExample, `"pharmacyId":"ph1"`) {
		t.Fatal("the banner's example names no pharmacy")
	}
}
