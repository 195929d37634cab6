package config

import (
	"strconv"
	"strings"
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
	if got, err := DurationOrDays("3650d"); err != nil || got != 3650*24*time.Hour {
		t.Errorf("DurationOrDays(3650d) = %v, %v; want %v", got, err, MaxDuration)
	}
	// Beyond the cap, including values whose product overflows
	// time.Duration (213504d wrapped to about 25 minutes): refused, and
	// the message names the value as given.
	for _, big := range []string{"3651d", "106752d", "213504d", "99999999999d", "87601h", "2562047h"} {
		got, err := DurationOrDays(big)
		if err == nil {
			t.Errorf("DurationOrDays(%q) = %v, want an error", big, got)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, strconv.Quote(big)) || strings.Contains(msg, "-") {
			t.Errorf("DurationOrDays(%q): %q, want the value as given and no negative duration", big, msg)
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

// -deadline-every and -deadline-resend have lower bounds: 1ns would spin.
func TestDeadlineFlagsLowerBounds(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string // "" if accepted
	}{
		{[]string{"-deadline-every", "100ms", "-deadline-resend", "1s"}, ""},
		{[]string{"-deadline-every", "1ns"}, "-deadline-every"},
		{[]string{"-deadline-every", "99ms"}, "-deadline-every"},
		{[]string{"-deadline-resend", "1ns"}, "-deadline-resend"},
		{[]string{"-deadline-resend", "999ms"}, "-deadline-resend"},
		{[]string{"-deadline-every", "2m", "-deadline-resend", "1m"}, "-deadline-resend"},
	} {
		f := NewFlags("test")
		get := DeadlineFlags(f)
		if err := f.Parse(c.args); err != nil {
			t.Fatal(err)
		}
		_, _, _, err := get()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%v: %v", c.args, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%v: %v, want an error naming %s", c.args, err, c.want)
		}
	}
}
