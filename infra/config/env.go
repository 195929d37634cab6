// Package config reads settings from flags whose defaults come from
// environment variables, so that each setting has one name per medium.
package config

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
)

// Flags is a flag set whose defaults come from the environment.
type Flags struct {
	*flag.FlagSet
	errs []error
}

// NewFlags returns an empty set for the named program.
func NewFlags(program string) *Flags {
	return &Flags{FlagSet: flag.NewFlagSet(program, flag.ContinueOnError)}
}

// String defines a string flag defaulting to $env, then def.
func (f *Flags) String(name, env, def, usage string) *string {
	if v, ok := os.LookupEnv(env); ok {
		def = v
	}
	return f.FlagSet.String(name, def, fmt.Sprintf("%s (env %s)", usage, env))
}

// Int defines an int flag defaulting to $env, then def.
func (f *Flags) Int(name, env string, def int, usage string) *int {
	if v, ok := os.LookupEnv(env); ok {
		n, err := strconv.Atoi(v)
		if err != nil {
			f.errs = append(f.errs, fmt.Errorf("%s=%q is not an integer", env, v))
		}
		def = n
	}
	return f.FlagSet.Int(name, def, fmt.Sprintf("%s (env %s)", usage, env))
}

// Parse parses args and reports every malformed value at once.
func (f *Flags) Parse(args []string) error {
	return errors.Join(append(f.errs, f.FlagSet.Parse(args))...)
}

// List splits a comma-separated list, dropping empty items.
func List(s string) []string {
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// Logger returns a text logger at the named level (debug, info, warn, error).
func Logger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: %w", level, err)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})), nil
}
