package config

import (
	"testing"
	"time"
)

func TestDurationOrDays(t *testing.T) {
	for in, want := range map[string]time.Duration{"10d": 240 * time.Hour, "1d": 24 * time.Hour, "48h": 48 * time.Hour, "90m": 90 * time.Minute} {
		if got, err := DurationOrDays(in); err != nil || got != want {
			t.Errorf("DurationOrDays(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "0d", "-1d", "1.5d", "d", "0s", "-5m", "ten days"} {
		if got, err := DurationOrDays(bad); err == nil {
			t.Errorf("DurationOrDays(%q) = %v, want an error", bad, got)
		}
	}
}

func TestDeadlineFlags(t *testing.T) {
	t.Setenv("DEADLINE_PICKUP_OVERDUE", "3d")
	f := NewFlags("test")
	get := DeadlineFlags(f)
	if err := f.Parse([]string{"-deadline-processing-overdue", "90m", "-deadline-every", "5s"}); err != nil {
		t.Fatal(err)
	}
	after, every, resend, err := get()
	if err != nil || after["pickup-overdue"] != 72*time.Hour || after["processing-overdue"] != 90*time.Minute ||
		after["approval-overdue"] != 48*time.Hour || every != 5*time.Second || resend != 10*time.Minute {
		t.Fatalf("after %v, every %v, resend %v, %v", after, every, resend, err)
	}
	f = NewFlags("test")
	get = DeadlineFlags(f)
	if err := f.Parse([]string{"-deadline-approval-overdue", "soon"}); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := get(); err == nil {
		t.Fatal("a malformed deadline was accepted")
	}
}
