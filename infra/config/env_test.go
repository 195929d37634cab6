package config

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestLine(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{errors.New("boom"), "processor: boom"},
		{errors.Join(errors.New("kafka: no brokers"), nil, errors.New("processor: partitions must be positive")),
			"processor: kafka: no brokers; partitions must be positive"},
		{fmt.Errorf("processor: http: %w", errors.New("address in use")), "processor: http: address in use"},
		{errors.New("line one\n\n  line two  \n"), "processor: line one; line two"},
		{errors.New("\n"), "processor: failed"},
	} {
		if got := Line("processor", c.err); got != c.want {
			t.Errorf("Line(%q) = %q, want %q", c.err, got, c.want)
		}
	}
}

// Every malformed value is reported at once, from the environment or from
// the flags, and a value out of range is reported whatever its source.
func TestParseReportsEveryProblem(t *testing.T) {
	t.Setenv("RXFLOW_TEST_A", "abc")
	t.Setenv("RXFLOW_TEST_B", "0")
	f := NewFlags("test")
	a := f.IntRange("a", "RXFLOW_TEST_A", 8, 1, 10, "")
	f.IntRange("b", "RXFLOW_TEST_B", 8, 1, 10, "")
	f.IntRange("c", "RXFLOW_TEST_C", 8, 1, 10, "")
	err := f.Parse([]string{"-c", "11"})
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{`RXFLOW_TEST_A="abc" is not an integer`, "-b (env RXFLOW_TEST_B) must be in [1, 10], got 0", "got 11"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if *a != 8 {
		t.Errorf("a malformed $RXFLOW_TEST_A changed the default to %d", *a)
	}
	if strings.Contains(err.Error(), "-a ") {
		t.Errorf("a malformed value is reported twice: %v", err)
	}
}

func TestParseRefusesArguments(t *testing.T) {
	f := NewFlags("test")
	f.String("s", "RXFLOW_TEST_S", "", "")
	if err := f.Parse([]string{"-s", "x", "extra"}); err == nil || !strings.Contains(err.Error(), `"extra"`) {
		t.Errorf("error %v, want one naming the argument", err)
	}
	f = NewFlags("test")
	if err := f.Parse([]string{"-h"}); !errors.Is(err, ErrHelp) {
		t.Errorf("-h: %v, want ErrHelp", err)
	}
}

func TestEnvBool(t *testing.T) {
	for _, c := range []struct {
		env     string
		set     bool
		args    []string
		want    bool
		wantErr string
	}{
		{want: false},
		{env: "true", set: true, want: true},
		{env: "1", set: true, want: true},
		{env: "", set: true, want: false},
		{env: "false", set: true, args: []string{"-b"}, want: true},
		{env: "true", set: true, args: []string{"-b=false"}, want: false},
		{env: "yes", set: true, want: false, wantErr: `RXFLOW_TEST_BOOL="yes" is not a boolean`},
	} {
		if c.set {
			t.Setenv("RXFLOW_TEST_BOOL", c.env)
		}
		f := NewFlags("test")
		b := f.EnvBool("b", "RXFLOW_TEST_BOOL", false, "")
		err := f.Parse(c.args)
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("env %q: error %v, want %q", c.env, err, c.wantErr)
			}
		} else if err != nil {
			t.Errorf("env %q args %v: %v", c.env, c.args, err)
		}
		if *b != c.want {
			t.Errorf("env %q (set %v) args %v: %v, want %v", c.env, c.set, c.args, *b, c.want)
		}
	}
}

func TestEnvDuration(t *testing.T) {
	for _, c := range []struct {
		env     string
		set     bool
		args    []string
		want    time.Duration
		wantErr string
	}{
		{want: time.Hour},
		{env: "90s", set: true, want: 90 * time.Second},
		{env: "90s", set: true, args: []string{"-d=2m"}, want: 2 * time.Minute},
		{env: "soon", set: true, want: time.Hour, wantErr: `RXFLOW_TEST_DURATION="soon" is not a duration`},
	} {
		if c.set {
			t.Setenv("RXFLOW_TEST_DURATION", c.env)
		}
		f := NewFlags("test")
		d := f.EnvDuration("d", "RXFLOW_TEST_DURATION", time.Hour, "")
		err := f.Parse(c.args)
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("env %q: error %v, want %q", c.env, err, c.wantErr)
			}
		} else if err != nil {
			t.Errorf("env %q args %v: %v", c.env, c.args, err)
		}
		if *d != c.want {
			t.Errorf("env %q (set %v) args %v: %v, want %v", c.env, c.set, c.args, *d, c.want)
		}
	}
}

// A secret comes from the environment or the flag, and -h never shows it.
func TestSecret(t *testing.T) {
	t.Setenv("RXFLOW_TEST_SECRET", "from-env-s3cret")
	f := NewFlags("test")
	s := f.Secret("secret", "RXFLOW_TEST_SECRET", "a password")
	if err := f.Parse(nil); err != nil || *s != "from-env-s3cret" {
		t.Fatalf("from the environment: %q, %v", *s, err)
	}
	var usage strings.Builder
	f.SetOutput(&usage)
	f.PrintDefaults()
	if strings.Contains(usage.String(), "s3cret") || !strings.Contains(usage.String(), "[redacted]") {
		t.Errorf("usage shows the secret or does not say it is set:\n%s", usage.String())
	}

	f = NewFlags("test")
	s = f.Secret("secret", "RXFLOW_TEST_SECRET", "a password")
	if err := f.Parse([]string{"-secret", "from-flag"}); err != nil || *s != "from-flag" {
		t.Errorf("from the flag: %q, %v", *s, err)
	}
	t.Setenv("RXFLOW_TEST_SECRET", "")
	f = NewFlags("test")
	s = f.Secret("secret", "RXFLOW_TEST_SECRET", "a password")
	usage.Reset()
	f.SetOutput(&usage)
	f.PrintDefaults()
	if err := f.Parse(nil); err != nil || *s != "" || strings.Contains(usage.String(), "[redacted]") {
		t.Errorf("unset: %q, %v, usage:\n%s", *s, err, usage.String())
	}
}
