// Package config reads settings from flags whose defaults come from
// environment variables, so that each setting has one name per medium, and
// formats a failed start-up as the one line a main prints before exiting.
package config

import (
	"cmp"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"
)

// ErrHelp is returned by Parse when -h or -help was given; the usage has
// then been printed on stderr, and the program should exit with status 0.
var ErrHelp = flag.ErrHelp

// Flags is a flag set whose defaults come from the environment.
type Flags struct {
	*flag.FlagSet
	// Synopsis, when set, replaces the "Usage of <program>:" line of -h:
	// the forms the program is run in, one per line.
	Synopsis string
	errs     []error
	checks   []func() error
}

// NewFlags returns an empty set for the named program. The flag package's
// own messages are silenced: Parse returns every problem as an error, and
// main prints it on one line (see Line).
func NewFlags(program string) *Flags {
	fs := flag.NewFlagSet(program, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return &Flags{FlagSet: fs}
}

// String defines a string flag defaulting to $env, then def.
func (f *Flags) String(name, env, def, usage string) *string {
	if v, ok := os.LookupEnv(env); ok {
		def = v
	}
	return f.FlagSet.String(name, def, fmt.Sprintf("%s (env %s)", usage, env))
}

// Int defines an int flag defaulting to $env, then def. A malformed $env is
// reported by Parse.
func (f *Flags) Int(name, env string, def int, usage string) *int {
	if v, ok := os.LookupEnv(env); ok {
		n, err := strconv.Atoi(v)
		if err != nil {
			f.errs = append(f.errs, fmt.Errorf("%s=%q is not an integer", env, v))
		} else {
			def = n
		}
	}
	return f.FlagSet.Int(name, def, fmt.Sprintf("%s (env %s)", usage, env))
}

// EnvBool defines a boolean flag defaulting to $env, then def. $env takes
// the values strconv.ParseBool does, and "" means false; a malformed $env is
// reported by Parse. (Not Bool: that is the FlagSet's, without an
// environment variable.)
func (f *Flags) EnvBool(name, env string, def bool, usage string) *bool {
	if v, ok := os.LookupEnv(env); ok {
		b, err := strconv.ParseBool(cmp.Or(v, "false"))
		if err != nil {
			f.errs = append(f.errs, fmt.Errorf("%s=%q is not a boolean (true or false)", env, v))
		} else {
			def = b
		}
	}
	return f.FlagSet.Bool(name, def, fmt.Sprintf("%s (env %s)", usage, env))
}

// EnvDuration defines a duration flag defaulting to $env, then def. $env is
// a Go duration such as 90s or 1h; a malformed $env is reported by Parse.
// (Not Duration: that is the FlagSet's, without an environment variable.)
func (f *Flags) EnvDuration(name, env string, def time.Duration, usage string) *time.Duration {
	if v, ok := os.LookupEnv(env); ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			f.errs = append(f.errs, fmt.Errorf("%s=%q is not a duration such as 90s or 1h", env, v))
		} else {
			def = d
		}
	}
	return f.FlagSet.Duration(name, def, fmt.Sprintf("%s (env %s)", usage, env))
}

// Secret defines a string flag defaulting to $env, for a password or a
// token: -h shows "[redacted]" for a value that is set, never the value.
// Prefer the environment (or a file) to the flag, which other users of the
// machine can read in the process list.
func (f *Flags) Secret(name, env, usage string) *string {
	v := secretValue(os.Getenv(env))
	f.FlagSet.Var(&v, name, fmt.Sprintf("%s (env %s)", usage, env))
	return (*string)(&v)
}

// secretValue is a flag.Value that does not print itself.
type secretValue string

func (s *secretValue) Set(v string) error { *s = secretValue(v); return nil }

func (s *secretValue) String() string {
	if s == nil || *s == "" {
		return ""
	}
	return "[redacted]"
}

// IntRange is Int for a value that must lie in [lo, hi], whether it comes
// from the flag, $env or def; Parse reports one outside.
func (f *Flags) IntRange(name, env string, def, lo, hi int, usage string) *int {
	p := f.Int(name, env, def, usage)
	f.checks = append(f.checks, func() error {
		if *p < lo || *p > hi {
			return fmt.Errorf("-%s (env %s) must be in [%d, %d], got %d", name, env, lo, hi, *p)
		}
		return nil
	})
	return p
}

// Parse parses args and reports every malformed value at once. With -h it
// prints the usage on stderr and returns ErrHelp. Positional arguments are
// refused: no program takes any after its flags.
func (f *Flags) Parse(args []string) error {
	err := f.FlagSet.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		f.SetOutput(os.Stderr)
		if f.Synopsis != "" {
			fmt.Fprintf(os.Stderr, "Usage:\n%s\nFlags:\n", f.Synopsis)
		} else {
			fmt.Fprintf(os.Stderr, "Usage of %s:\n", f.Name())
		}
		f.PrintDefaults()
		return ErrHelp
	}
	errs := append(f.errs, err)
	if err == nil {
		for _, check := range f.checks {
			errs = append(errs, check())
		}
		if f.NArg() > 0 {
			errs = append(errs, fmt.Errorf("unexpected argument %q", f.Arg(0)))
		}
	}
	return errors.Join(errs...)
}

// Given reports whether flag name was given on the command line, or its
// variable env is set in the environment. Call it after Parse.
func (f *Flags) Given(name, env string) bool {
	_, given := os.LookupEnv(env)
	f.Visit(func(fl *flag.Flag) { given = given || fl.Name == name })
	return given
}

// Durations parses a comma-separated list of positive durations such as
// "1s,2s,4s"; an empty list is nil.
func Durations(s string) ([]time.Duration, error) {
	var out []time.Duration
	for _, item := range List(s) {
		d, err := time.ParseDuration(item)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("%q is not a positive duration", item)
		}
		out = append(out, d)
	}
	return out, nil
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

// Line formats a failed start-up as the one line a main prints on stderr
// before it exits with status 1: "program: problem; problem". The lines of
// a joined error become "; "-separated parts, and a part's own leading
// "program: " is dropped, as the line already starts with it.
func Line(program string, err error) string {
	prefix := program + ": "
	var parts []string
	for part := range strings.SplitSeq(err.Error(), "\n") {
		part = strings.TrimSpace(part)
		for strings.HasPrefix(part, prefix) {
			part = strings.TrimPrefix(part, prefix)
		}
		if part != "" {
			parts = append(parts, part)
		}
	}
	if len(parts) == 0 {
		parts = []string{"failed"}
	}
	return prefix + strings.Join(parts, "; ")
}
