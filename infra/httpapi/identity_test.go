package httpapi_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"rxflow/infra/httpapi"
)

// The access record names the urn the router matched, however the path
// spells it.
func TestAccessRecordURNWhateverTheEncoding(t *testing.T) {
	f := newFixture(t)
	f.lifecycle("urn:rx:1")
	log := memAccessLog(t)
	c := f.serve(httpapi.Config{AccessLog: log})
	for _, p := range []string{
		"/%70rescriptions/urn:rx:1",
		"/prescription%73/urn:rx:1",
		"/prescriptions/urn%3Arx%3A1",
		"/prescriptions/urn%3arx%3a1",
		"/prescriptions/%75rn:rx:1",
		"/%70rescriptions/urn:rx:1/history",
		"/prescriptions/urn%3Arx%3A1/histor%79",
	} {
		for _, auth := range []string{"Bearer " + token, ""} {
			r := c.send(http.MethodGet, p, auth)
			want := http.StatusOK
			if auth == "" {
				want = http.StatusUnauthorized
			}
			if r.status != want {
				t.Errorf("GET %s (auth %t): %d %s, want %d", p, auth != "", r.status, r.body, want)
				continue
			}
			got := accesses(t, log)
			if last := got[len(got)-1]; !slices.Equal(last.URNs, []string{"urn:rx:1"}) {
				t.Errorf("GET %s (auth %t): recorded urns %q, want [urn:rx:1]", p, auth != "", last.URNs)
			}
		}
	}
}

// An encoded slash stays inside the {urn} segment the router matches; no
// urn holds one, so the answer is 400 and the record names no urn.
func TestAccessRecordEncodedSlash(t *testing.T) {
	f := newFixture(t)
	f.lifecycle("urn:rx:1")
	log := memAccessLog(t)
	c := f.serve(httpapi.Config{AccessLog: log})
	for _, p := range []string{"/prescriptions/urn:rx%2F1", "/prescriptions/urn%3Arx%2f1/history"} {
		if e, _ := c.expectError(p, http.StatusBadRequest, "invalid_urn"); e.Error != "invalid_urn" {
			continue
		}
		got := accesses(t, log)
		if last := got[len(got)-1]; len(last.URNs) != 0 || last.Status != http.StatusBadRequest {
			t.Errorf("GET %s: recorded %+v, want status 400 and no urn", p, last)
		}
	}
}

// What a caller puts in a token reaches the log bounded.
func TestTokenValuesInTheLogAreBounded(t *testing.T) {
	f := newFixture(t)
	f.lifecycle("urn:rx:1")
	key := newSigner(t, "k1")
	auth, err := httpapi.NewAuthenticator(httpapi.AuthConfig{JWT: &httpapi.JWTConfig{JWKSFile: jwksFile(t, key), Issuer: issuer, Audience: audience},
		Now: clock, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(auth.Close)
	var mu sync.Mutex
	var logs bytes.Buffer
	c := f.serve(httpapi.Config{Auth: auth, Logger: slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &mu}, nil))})

	huge := strings.Repeat("k", 600<<10)
	hugeKid := jwt.NewWithClaims(jwt.SigningMethodES256, claims("u", "auditor"))
	hugeKid.Header["kid"] = huge
	hugeAlg := func() string { // an alg no one allows: refused before any key is looked up
		h, _ := json.Marshal(map[string]string{"alg": huge, "kid": "k1"})
		p, _ := json.Marshal(claims("u", "auditor"))
		return base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(p) + ".c2ln"
	}()
	for name, tok := range map[string]string{
		"huge kid":         mustSign(t, hugeKid, key),
		"huge alg":         hugeAlg,
		"huge subject":     key.sign(t, claims(huge, "nothing-known")),
		"huge crit":        mustSign(t, withHeader(claims("u", "auditor"), "crit", []string{huge}), key),
		"huge role values": key.sign(t, claims("u", []string{huge})),
	} {
		mu.Lock()
		logs.Reset()
		mu.Unlock()
		r := c.send(http.MethodGet, "/prescriptions/urn:rx:1", "Bearer "+tok)
		if r.status != http.StatusUnauthorized && r.status != http.StatusForbidden {
			t.Errorf("%s: %d %s, want a refusal", name, r.status, r.body)
		}
		mu.Lock()
		line := logs.String()
		mu.Unlock()
		if !strings.Contains(line, "token refused") || len(line) > 1024 {
			t.Errorf("%s: the log holds %d bytes, want one refusal line under 1 KiB: %.300s", name, len(line), line)
		}
	}
}

func withHeader(c jwt.MapClaims, name string, v any) *jwt.Token {
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, c)
	tok.Header[name] = v
	return tok
}

func mustSign(t testing.TB, tok *jwt.Token, s signer) string {
	t.Helper()
	if _, ok := tok.Header["kid"]; !ok {
		tok.Header["kid"] = s.kid
	}
	raw, err := tok.SignedString(s.key)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// When the access record cannot be written, the error logged names the
// caller and method bounded too.
func TestUnrecordedAccessLogIsBounded(t *testing.T) {
	f := newFixture(t)
	key := newSigner(t, "k1")
	auth, err := httpapi.NewAuthenticator(httpapi.AuthConfig{JWT: &httpapi.JWTConfig{JWKSFile: jwksFile(t, key), Issuer: issuer, Audience: audience},
		Now: clock, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(auth.Close)
	var mu sync.Mutex
	var logs bytes.Buffer
	c := f.serve(httpapi.Config{Auth: auth, AccessLog: failingLog{memAccessLog(t)},
		Logger: slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &mu}, nil))})
	huge := strings.Repeat("s", 300<<10)
	for name, req := range map[string]struct{ method, sub string }{
		"huge subject": {http.MethodGet, huge},
		"huge method":  {strings.Repeat("M", 300<<10), "u"},
	} {
		mu.Lock()
		logs.Reset()
		mu.Unlock()
		if r := c.send(req.method, "/prescriptions/urn:rx:1", "Bearer "+key.sign(t, claims(req.sub, "auditor"))); r.status != http.StatusServiceUnavailable {
			t.Errorf("%s: %d %s, want 503", name, r.status, r.body)
		}
		mu.Lock()
		line := logs.String()
		mu.Unlock()
		if !strings.Contains(line, "access record not written") || len(line) > 1024 {
			t.Errorf("%s: the log holds %d bytes, want one line under 1 KiB: %.300s", name, len(line), line)
		}
	}
}
