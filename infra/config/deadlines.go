package config

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"rxflow/domain"
)

// MaxDuration caps DurationOrDays: ten years (3650 days), well within
// time.Duration, whose range ends near 292 years.
const MaxDuration = 3650 * 24 * time.Hour

// Lower bounds of -deadline-every and -deadline-resend: a pass every
// 100 ms at most, and a command sent again no sooner than a second later
// (and never before the next pass).
const (
	MinDeadlineEvery  = 100 * time.Millisecond
	MinDeadlineResend = time.Second
)

// DurationOrDays parses a positive duration of at most MaxDuration: a
// whole number of days such as "10d", or what time.ParseDuration takes,
// such as "48h" or "90m". The error names s as given.
func DurationOrDays(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days <= 0 {
			return 0, fmt.Errorf("%q is not a positive whole number of days", s)
		}
		if days > int(MaxDuration/(24*time.Hour)) {
			return 0, fmt.Errorf("%q is more than %s", s, domain.Days(MaxDuration))
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%q is not a positive duration (such as 10d, 48h or 90m)", s)
	}
	if d > MaxDuration {
		return 0, fmt.Errorf("%q is more than %s", s, domain.Days(MaxDuration))
	}
	return d, nil
}

// DeadlineFlags defines, for each deadline of the workflow table, the flag
// -deadline-<name> with env DEADLINE_<NAME> (e.g. -deadline-pickup-overdue,
// DEADLINE_PICKUP_OVERDUE), defaulting to the table's duration, plus
// -deadline-every (DEADLINE_EVERY, 30s, at least MinDeadlineEvery) and
// -deadline-resend (DEADLINE_RESEND, 10m, at least MinDeadlineResend and
// -deadline-every). The returned func, called after Parse, gives the
// durations by deadline name, the pause between passes and the resend
// delay, or every malformed value at once.
func DeadlineFlags(f *Flags) func() (after map[string]time.Duration, every, resend time.Duration, err error) {
	values := map[string]*string{}
	for _, d := range domain.Prescriptions.Deadlines {
		env := "DEADLINE_" + strings.ToUpper(strings.ReplaceAll(d.Name, "-", "_"))
		values[d.Name] = f.String("deadline-"+d.Name, env, domain.Days(d.After), fmt.Sprintf("how long a prescription may stay %s before deadline %s: %s", d.In, d.Name, d.Action))
	}
	everyFlag := f.String("deadline-every", "DEADLINE_EVERY", "30s", "how often the projector looks for due deadlines")
	resendFlag := f.String("deadline-resend", "DEADLINE_RESEND", "10m", "when a deadline's command is sent again if its event is not yet projected")
	return func() (map[string]time.Duration, time.Duration, time.Duration, error) {
		var errs []error
		after := map[string]time.Duration{}
		for name, v := range values {
			d, err := DurationOrDays(*v)
			if err != nil {
				errs = append(errs, fmt.Errorf("-deadline-%s: %w", name, err))
			}
			after[name] = d
		}
		every, err := DurationOrDays(*everyFlag)
		if err == nil && every < MinDeadlineEvery {
			err = fmt.Errorf("%q is less than %v", *everyFlag, MinDeadlineEvery)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("-deadline-every: %w", err))
		}
		resend, err := DurationOrDays(*resendFlag)
		if err == nil && resend < max(MinDeadlineResend, every) {
			err = fmt.Errorf("%q is less than %v (and -deadline-every)", *resendFlag, max(MinDeadlineResend, every))
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("-deadline-resend: %w", err))
		}
		return after, every, resend, errors.Join(errs...)
	}
}
