// Package pebbledb opens the project's Pebble stores (the embedded event
// store and the projector's ledger) with the same options and logging.
package pebbledb

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/cockroachdb/pebble/v2"
)

// Open opens or creates the Pebble store in dir. Pebble's messages go to
// log under name: info as debug, errors as errors. Pebble locks dir, so a
// second Open of the same store fails.
func Open(dir, name string, log *slog.Logger) (*pebble.DB, error) {
	return pebble.Open(dir, &pebble.Options{
		FormatMajorVersion: pebble.FormatNewest,
		Logger:             logger{log: log, prefix: name + ": pebble: "},
	})
}

// logger adapts slog to pebble.Logger. Pebble calls Fatalf for failures it
// cannot continue after (a failed log write, a corrupt store) and requires
// it not to return: like Pebble's own default, it ends the process.
type logger struct {
	log    *slog.Logger
	prefix string
}

func (l logger) Infof(format string, args ...any) {
	l.log.Debug(l.prefix + fmt.Sprintf(format, args...))
}

func (l logger) Errorf(format string, args ...any) {
	l.log.Error(l.prefix + fmt.Sprintf(format, args...))
}

func (l logger) Fatalf(format string, args ...any) {
	l.log.Error(l.prefix + "fatal: " + fmt.Sprintf(format, args...))
	os.Exit(1)
}
