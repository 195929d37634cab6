package config

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"rxflow/domain"
)

// DurationOrDays parses a positive duration: a whole number of days such
// as "10d", or what time.ParseDuration takes, such as "48h" or "90m".
func DurationOrDays(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days <= 0 {
			return 0, fmt.Errorf("%q is not a positive whole number of days", s)
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%q is not a positive duration (such as 10d, 48h or 90m)", s)
	}
	return d, nil
}

// DeadlineFlags defines, for each deadline of the workflow table, the flag
// -deadline-<name> with env DEADLINE_<NAME> (e.g. -deadline-pickup-overdue,
// DEADLINE_PICKUP_OVERDUE), defaulting to the table's duration, plus
// -deadline-every (DEADLINE_EVERY, 30s) and -deadline-resend
// (DEADLINE_RESEND, 10m). The returned func, called after Parse, gives the
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
		if err != nil {
			errs = append(errs, fmt.Errorf("-deadline-every: %w", err))
		}
		resend, err := DurationOrDays(*resendFlag)
		if err != nil {
			errs = append(errs, fmt.Errorf("-deadline-resend: %w", err))
		}
		return after, every, resend, errors.Join(errs...)
	}
}
