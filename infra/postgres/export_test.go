package postgres

// SetAfterRebuildLoad makes RebuildReadModel call f between loading the
// fresh tables and switching them in; it returns a func restoring the
// previous state.
func SetAfterRebuildLoad(f func()) (restore func()) {
	old := afterRebuildLoad
	afterRebuildLoad = f
	return func() { afterRebuildLoad = old }
}

// DueSQL is Due's statement: deadline, cutoff (unix nanoseconds), limit.
const DueSQL = dueSQL
