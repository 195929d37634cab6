// Package partners reaches rxflow's external partners over HTTP/JSON: Client
// posts to one partner, and Set, the reactors' adapter, holds one Client per
// partner of the projections.Reactions table, keyed by its name.
//
// Every call is a POST of a JSON body carrying an Idempotency-Key header, so
// a partner can drop duplicates. Client retries transient failures (network
// errors, timeouts, 408, 429, 5xx) with capped exponential backoff and full
// jitter, honouring Retry-After; any other 4xx is permanent. Where this sits
// among the other retry layers: docs/failure-policy.md.
package partners

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
)

// Defaults applied by NewClient to zero Config fields.
const (
	DefaultTimeout     = 5 * time.Second
	DefaultMaxAttempts = 5
	DefaultBaseBackoff = 200 * time.Millisecond
	DefaultMaxBackoff  = 5 * time.Second
)

// maxRetryAfterSecs clamps absurd Retry-After values (any value above
// MaxBackoff makes Post give up anyway).
const maxRetryAfterSecs = 365 * 24 * 3600

// maxErrorBody bounds how much of a failed response is quoted in errors.
const maxErrorBody = 512

var (
	// ErrPermanent marks a call the partner refused with a non-retryable
	// status (4xx other than 408/429); retrying the same request cannot help.
	ErrPermanent = errors.New("partner refused the call permanently")
	// ErrExhausted marks a call that kept failing transiently until the
	// retry budget ran out; the same call may succeed later.
	ErrExhausted = errors.New("partner call retries exhausted")
)

// Config configures one partner client.
type Config struct {
	// BaseURL is the partner's root URL, e.g. http://127.0.0.1:8090/insurance.
	BaseURL string
	// Timeout bounds each attempt (default 5s).
	Timeout time.Duration
	// MaxAttempts is the total number of attempts, first one included (default 5).
	MaxAttempts int
	// BaseBackoff is the backoff ceiling after the first failure (default 200ms);
	// it doubles per attempt up to MaxBackoff (default 5s).
	BaseBackoff time.Duration
	MaxBackoff  time.Duration
	// Token, when set, is sent as "Authorization: Bearer <Token>".
	Token string
	// Logger receives retry warnings (default slog.Default()).
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.BaseBackoff == 0 {
		c.BaseBackoff = DefaultBaseBackoff
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = DefaultMaxBackoff
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate reports every problem with c, joined. Zero durations and
// attempts are invalid here; NewClient replaces them with defaults first.
func (c Config) Validate() error {
	var errs []error
	if c.BaseURL == "" {
		errs = append(errs, errors.New("partners: BaseURL is required"))
	} else if u, err := url.Parse(c.BaseURL); err != nil {
		errs = append(errs, fmt.Errorf("partners: BaseURL: %w", err))
	} else if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("partners: BaseURL %q must be an absolute http(s) URL", c.BaseURL))
	}
	if c.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("partners: Timeout must be positive, got %v", c.Timeout))
	}
	if c.MaxAttempts < 1 {
		errs = append(errs, fmt.Errorf("partners: MaxAttempts must be at least 1, got %d", c.MaxAttempts))
	}
	if c.BaseBackoff <= 0 {
		errs = append(errs, fmt.Errorf("partners: BaseBackoff must be positive, got %v", c.BaseBackoff))
	}
	if c.MaxBackoff < c.BaseBackoff {
		errs = append(errs, fmt.Errorf("partners: MaxBackoff %v must not be below BaseBackoff %v", c.MaxBackoff, c.BaseBackoff))
	}
	return errors.Join(errs...)
}

// Result describes a finished call: how many attempts were made and the
// last HTTP status received (0 if no response arrived).
type Result struct {
	Attempts int
	Status   int
}

// CallError is returned by Post when a call fails. Err wraps ErrPermanent,
// ErrExhausted or the context's error, so errors.Is works on a *CallError.
type CallError struct {
	Path     string
	Status   int // last HTTP status received, 0 if none
	Attempts int
	Err      error
}

func (e *CallError) Error() string {
	return fmt.Sprintf("partners: POST %s failed after %d attempt(s): %v", e.Path, e.Attempts, e.Err)
}

func (e *CallError) Unwrap() error { return e.Err }

// Client posts JSON to one partner with retries. It is safe for concurrent use.
type Client struct {
	cfg  Config
	base string
	http *http.Client
}

// NewClient validates cfg (after applying defaults) and returns a Client.
// A nil httpClient gets a default one that does not follow redirects, so a
// POST is never silently turned into a GET, and that traces each attempt
// (otelhttp): a client span, and its traceparent sent to the partner.
func NewClient(cfg Config, httpClient *http.Client) (*Client, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if httpClient == nil {
		httpClient = &http.Client{
			Transport:     otelhttp.NewTransport(inMemoryBody{http.DefaultTransport}),
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	return &Client{cfg: cfg, base: strings.TrimRight(cfg.BaseURL, "/"), http: httpClient}, nil
}

// inMemoryBody hands next a request whose body net/http knows to be in
// memory. otelhttp wraps the body to count it for its metrics; for a body
// it does not know, net/http writes the headers and the body in two writes
// (it flushes the headers first), and a process killed between them leaves
// the partner a request without its body. Partner bodies are small JSON,
// read and closed here (which ends otelhttp's count), then sent from memory
// in one write with the headers.
type inMemoryBody struct{ next http.RoundTripper }

func (t inMemoryBody) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return t.next.RoundTrip(r)
	}
	buf, err := io.ReadAll(r.Body)
	if closeErr := r.Body.Close(); err == nil {
		err = closeErr
	}
	if err != nil {
		return nil, err
	}
	r = r.Clone(r.Context())
	r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(buf)), int64(len(buf))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf)), nil }
	return t.next.RoundTrip(r)
}

// Post sends body as JSON to BaseURL+path with the given Idempotency-Key,
// retrying transient failures. The same encoded body and key are sent on
// every attempt. It stops early when ctx is done; the error then wraps
// ctx.Err(). On failure the error is a *CallError and Result still reports
// attempts and last status.
func (c *Client) Post(ctx context.Context, path, idempotencyKey string, body any) (Result, error) {
	var res Result
	fail := func(err error) (Result, error) {
		return res, &CallError{Path: path, Status: res.Status, Attempts: res.Attempts, Err: err}
	}
	if idempotencyKey == "" {
		return fail(fmt.Errorf("%w: empty idempotency key", ErrPermanent))
	}
	payload, err := json.Marshal(body)
	if err != nil {
		return fail(fmt.Errorf("%w: encode body: %w", ErrPermanent, err))
	}
	target := c.base + path
	if _, err := url.Parse(target); err != nil {
		return fail(fmt.Errorf("%w: %w", ErrPermanent, err))
	}

	for {
		if err := ctx.Err(); err != nil {
			return fail(err)
		}
		res.Attempts++
		status, retryAfter, err := c.attempt(ctx, target, idempotencyKey, payload)
		if status != 0 {
			res.Status = status
		}
		if err == nil {
			return res, nil
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			return fail(fmt.Errorf("%w (last attempt: %w)", ctxErr, err))
		}
		if !retryable(status) {
			return fail(fmt.Errorf("%w: %w", ErrPermanent, err))
		}
		if res.Attempts >= c.cfg.MaxAttempts {
			return fail(fmt.Errorf("%w: %w", ErrExhausted, err))
		}

		delay := c.backoff(res.Attempts)
		if retryAfter > 0 {
			if retryAfter > c.cfg.MaxBackoff {
				// Retrying earlier than asked would ignore the partner;
				// give up now so the caller can park the call.
				return fail(fmt.Errorf("%w: partner asked to retry after %v (beyond MaxBackoff %v): %w",
					ErrExhausted, retryAfter, c.cfg.MaxBackoff, err))
			}
			delay = retryAfter
		}
		c.cfg.Logger.Warn("partner call failed, retrying",
			"url", target, "idempotency_key", idempotencyKey, "attempt", res.Attempts,
			"status", status, "retry_in", delay, "err", err)

		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return fail(fmt.Errorf("%w (last attempt: %w)", ctx.Err(), err))
		case <-t.C:
		}
	}
}

// attempt makes one request. It returns the HTTP status (0 if no response),
// the Retry-After delay if the partner sent one, and an error unless 2xx.
func (c *Client) attempt(ctx context.Context, target, key string, payload []byte) (int, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()

	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(payload))
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Idempotency-Key", key)
	if c.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.cfg.Token)
	}

	resp, err := c.http.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	// Drain a bounded remainder so the connection can be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))

	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp.StatusCode, 0, nil
	}
	err = fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(snippet)))
	return resp.StatusCode, parseRetryAfter(resp.Header.Get("Retry-After")), err
}

// retryable reports whether a failed attempt with this status (0 = no
// response: network error or timeout) is worth retrying.
func retryable(status int) bool {
	return status == 0 || status == http.StatusRequestTimeout ||
		status == http.StatusTooManyRequests || status >= 500
}

// backoff returns a full-jitter delay in [0, min(MaxBackoff, BaseBackoff*2^(attempt-1))).
func (c *Client) backoff(attempt int) time.Duration {
	ceiling := c.cfg.BaseBackoff
	for i := 1; i < attempt && ceiling < c.cfg.MaxBackoff; i++ {
		ceiling *= 2
	}
	ceiling = min(ceiling, c.cfg.MaxBackoff)
	return rand.N(ceiling)
}

// parseRetryAfter reads delay-seconds or an HTTP-date; 0 if absent, invalid or past.
func parseRetryAfter(v string) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(v); err == nil {
		// Clamp before converting so huge values cannot overflow.
		return time.Duration(min(max(secs, 0), maxRetryAfterSecs)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}
