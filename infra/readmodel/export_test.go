package readmodel

import "time"

// SetPollInterval sets how often WaitFor polls the database and returns a
// func restoring it.
func SetPollInterval(d time.Duration) (restore func()) {
	old := pollInterval
	pollInterval = d
	return func() { pollInterval = old }
}
