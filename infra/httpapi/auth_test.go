package httpapi_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"rxflow/infra/httpapi"
	"rxflow/infra/readmodel"
)

// The identity provider of these tests.
const (
	issuer   = "https://idp.test/realms/rx"
	audience = "rxflow-query-api"
)

// now is the clock of the tokens' checks and of the access records.
var now = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

func clock() time.Time { return now }

// signer is a signing key of the identity provider, generated per test.
type signer struct {
	kid string
	key *ecdsa.PrivateKey
}

func newSigner(t testing.TB, kid string) signer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return signer{kid: kid, key: key}
}

// jwk is the public key as a JSON Web Key (RFC 7517/7518), written out by
// hand rather than by the library under test.
func (s signer) jwk() map[string]any {
	b64 := func(n *big.Int) string { return base64.RawURLEncoding.EncodeToString(n.FillBytes(make([]byte, 32))) }
	return map[string]any{"kty": "EC", "crv": "P-256", "kid": s.kid, "alg": "ES256", "use": "sig",
		"x": b64(s.key.X), "y": b64(s.key.Y)}
}

func jwks(t testing.TB, signers ...signer) []byte {
	t.Helper()
	keys := make([]map[string]any, len(signers))
	for i, s := range signers {
		keys[i] = s.jwk()
	}
	b, err := json.Marshal(map[string]any{"keys": keys})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sign makes an ES256 JWT with the signer's kid.
func (s signer) sign(t testing.TB, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, claims)
	tok.Header["kid"] = s.kid
	raw, err := tok.SignedString(s.key)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// claims of a valid token for sub with roles (a string, a list, or nil for
// no roles claim), and extra claims.
func claims(sub string, roles any, extra ...any) jwt.MapClaims {
	c := jwt.MapClaims{"iss": issuer, "aud": []string{"other-api", audience}, "sub": sub,
		"iat": now.Add(-time.Minute).Unix(), "exp": now.Add(time.Hour).Unix()}
	if roles != nil {
		c["roles"] = roles
	}
	for i := 0; i+1 < len(extra); i += 2 {
		c[extra[i].(string)] = extra[i+1]
	}
	return c
}

// unsigned is a token with alg "none" and no signature, naming kid.
func unsigned(t testing.TB, kid string, c jwt.MapClaims) string {
	t.Helper()
	h, _ := json.Marshal(map[string]string{"alg": "none", "typ": "JWT", "kid": kid})
	p, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(p) + "."
}

// jwksFile writes the signers' public keys to a JWKS file.
func jwksFile(t testing.TB, signers ...signer) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(path, jwks(t, signers...), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// jwtAPI serves the fixture's API to JWTs verified against jwt (Issuer,
// Audience and the clock filled in) and the static token, recording into
// a fresh access log.
func (f *fixture) jwtAPI(j httpapi.JWTConfig) (*client, *readmodel.AccessLog) {
	f.t.Helper()
	j.Issuer, j.Audience = issuer, audience
	auth, err := httpapi.NewAuthenticator(httpapi.AuthConfig{JWT: &j, StaticToken: token, Now: clock, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(auth.Close)
	log := memAccessLog(f.t)
	return serve(f.t, httpapi.Config{Auth: auth, AccessLog: log, Now: clock}, f.store, f.hist, parkedList{}), log
}

// accesses returns the whole access log, oldest first.
func accesses(t testing.TB, log *readmodel.AccessLog) []readmodel.Access {
	t.Helper()
	page, err := log.Query(t.Context(), readmodel.AccessFilter{Limit: readmodel.MaxLimit})
	if err != nil {
		t.Fatal(err)
	}
	slices.Reverse(page.Records)
	return page.Records
}

func TestJWTRefusals(t *testing.T) {
	f := newFixture(t)
	f.lifecycle("urn:rx:1")
	key, other := newSigner(t, "k1"), newSigner(t, "k1") // other: the same kid, another key
	c, log := f.jwtAPI(httpapi.JWTConfig{JWKSFile: jwksFile(t, key)})

	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rs := jwt.NewWithClaims(jwt.SigningMethodRS256, claims("u", "auditor"))
	rs.Header["kid"] = "k1"
	rsaSigned, err := rs.SignedString(rsaKey)
	if err != nil {
		t.Fatal(err)
	}
	hs := jwt.NewWithClaims(jwt.SigningMethodHS256, claims("u", "auditor"))
	hs.Header["kid"] = "k1"
	hmacSigned, err := hs.SignedString(jwks(t, key)) // the public JWKS as an HMAC secret: alg confusion
	if err != nil {
		t.Fatal(err)
	}
	valid := key.sign(t, claims("u", "auditor"))
	stripped := valid[:strings.LastIndex(valid, ".")+1]

	refused := map[string]string{
		"expired":              key.sign(t, claims("u", "auditor", "exp", now.Add(-time.Minute).Unix())),
		"no expiry":            key.sign(t, func() jwt.MapClaims { c := claims("u", "auditor"); delete(c, "exp"); return c }()),
		"not yet valid":        key.sign(t, claims("u", "auditor", "nbf", now.Add(5*time.Minute).Unix())),
		"issued in the future": key.sign(t, claims("u", "auditor", "iat", now.Add(5*time.Minute).Unix())),
		"wrong audience":       key.sign(t, claims("u", "auditor", "aud", "other-api")),
		"no audience":          key.sign(t, func() jwt.MapClaims { c := claims("u", "auditor"); delete(c, "aud"); return c }()),
		"wrong issuer":         key.sign(t, claims("u", "auditor", "iss", "https://evil.test")),
		"no subject":           key.sign(t, claims("", "auditor")),
		"alg none":             unsigned(t, "k1", claims("u", "auditor")),
		"alg none, no kid": func() string {
			s, _ := jwt.NewWithClaims(jwt.SigningMethodNone, claims("u", "auditor")).SignedString(jwt.UnsafeAllowNoneSignatureType)
			return s
		}(),
		"signature stripped":   stripped,
		"another key":          other.sign(t, claims("u", "auditor")),
		"unknown kid":          newSigner(t, "k9").sign(t, claims("u", "auditor")),
		"RS256 by another key": rsaSigned,
		"HS256 with the JWKS":  hmacSigned,
		"garbage":              "not.a.jwt",
		"a critical extension": func() string {
			tok := jwt.NewWithClaims(jwt.SigningMethodES256, claims("u", "auditor"))
			tok.Header["kid"], tok.Header["crit"], tok.Header["foo"] = "k1", []string{"foo"}, true
			s, err := tok.SignedString(key.key)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}(),
	}
	for name, tok := range refused {
		r := c.send(http.MethodGet, "/prescriptions/urn:rx:1", "Bearer "+tok)
		var e apiError
		if err := json.Unmarshal(r.body, &e); err != nil || r.status != http.StatusUnauthorized || e.Error != "unauthorized" {
			t.Errorf("%s: %d %s, want 401 unauthorized", name, r.status, r.body)
		}
		if strings.Contains(string(r.body), "urn:rx:1") {
			t.Errorf("%s: the answer names the prescription: %s", name, r.body)
		}
	}
	if r := c.send(http.MethodGet, "/prescriptions/urn:rx:1", "Bearer "+valid); r.status != http.StatusOK {
		t.Fatalf("the valid token: %d %s", r.status, r.body)
	}

	// Every refusal is in the access log, unauthenticated, then the read.
	got := accesses(t, log)
	if len(got) != len(refused)+1 {
		t.Fatalf("%d access records, want %d: %+v", len(got), len(refused)+1, got)
	}
	for _, a := range got[:len(refused)] {
		if a.Status != http.StatusUnauthorized || a.Outcome != "unauthorized" || a.Subject != "" || a.Role != "" ||
			a.Route != "/prescriptions/{urn}" || a.Method != "GET" || !slices.Equal(a.URNs, []string{"urn:rx:1"}) || !a.At.Equal(now) {
			t.Errorf("refusal recorded as %+v", a)
		}
	}
	if a := got[len(refused)]; a.Status != http.StatusOK || a.Outcome != "ok" || a.Subject != "u" || a.Role != "auditor" ||
		!slices.Equal(a.URNs, []string{"urn:rx:1"}) {
		t.Errorf("the read recorded as %+v", a)
	}
}

func TestJWTRoles(t *testing.T) {
	f := newFixture(t)
	f.lifecycle("urn:rx:1") // pharmacy ph-9
	key := newSigner(t, "k1")
	c, log := f.jwtAPI(httpapi.JWTConfig{JWKSFile: jwksFile(t, key)})
	nested, nestedLog := f.jwtAPI(httpapi.JWTConfig{JWKSFile: jwksFile(t, key), RolesClaim: "realm_access.roles", PharmacyClaim: "ext.pharmacy"})
	// Auth0 style: namespaced claim names, dots and all, at the top level.
	const ns = "https://rx.example.com/"
	namespaced, namespacedLog := f.jwtAPI(httpapi.JWTConfig{JWKSFile: jwksFile(t, key), RolesClaim: ns + "roles", PharmacyClaim: ns + "pharmacy"})

	for _, tc := range []struct {
		name   string
		c      *client
		claims jwt.MapClaims
		status int
		role   string
	}{
		{"operator in a list", c, claims("op", []string{"offline_access", "operator"}), http.StatusOK, "operator"},
		{"auditor as a string", c, claims("aud1", "uma_authorization auditor"), http.StatusOK, "auditor"},
		{"operator wins over auditor", c, claims("op2", []string{"auditor", "operator"}), http.StatusOK, "operator"},
		{"pharmacy", c, claims("ph", "pharmacy", "pharmacy_id", "ph-9"), http.StatusOK, "pharmacy"},
		{"no roles claim", c, claims("nobody", nil), http.StatusForbidden, ""},
		{"only unknown roles", c, claims("nobody", []any{"admin", 7}), http.StatusForbidden, ""},
		{"pharmacy without its claim", c, claims("ph", "pharmacy"), http.StatusForbidden, ""},
		{"pharmacy with an empty claim", c, claims("ph", "pharmacy", "pharmacy_id", ""), http.StatusForbidden, ""},
		{"pharmacy and auditor", c, claims("mixed", []string{"pharmacy", "auditor"}, "pharmacy_id", "ph-9"), http.StatusForbidden, ""},
		{"nested claims", nested, claims("ph", nil, "realm_access", map[string]any{"roles": []string{"pharmacy"}},
			"ext", map[string]any{"pharmacy": "ph-9"}), http.StatusOK, "pharmacy"},
		{"top-level roles ignored when nested configured", nested, claims("aud2", "auditor"), http.StatusForbidden, ""},
		{"a top-level claim named with dots", nested, claims("aud3", nil, "realm_access.roles", "auditor"), http.StatusOK, "auditor"},
		{"namespaced auditor", namespaced, claims("aud4", nil, ns+"roles", "auditor"), http.StatusOK, "auditor"},
		{"namespaced pharmacy", namespaced, claims("ph", nil, ns+"roles", []string{"pharmacy"}, ns+"pharmacy", "ph-9"), http.StatusOK, "pharmacy"},
		{"namespaced pharmacy without its claim", namespaced, claims("ph", nil, ns+"roles", "pharmacy", "pharmacy_id", "ph-9"), http.StatusForbidden, ""},
	} {
		r := tc.c.send(http.MethodGet, "/prescriptions/urn:rx:1", "Bearer "+key.sign(t, tc.claims))
		if r.status != tc.status {
			t.Errorf("%s: %d %s, want %d", tc.name, r.status, r.body, tc.status)
		}
		l := map[*client]*readmodel.AccessLog{c: log, nested: nestedLog, namespaced: namespacedLog}[tc.c]
		got := accesses(t, l)
		last := got[len(got)-1]
		if last.Subject != tc.claims["sub"] || last.Role != tc.role || last.Status != tc.status {
			t.Errorf("%s: recorded %+v, want subject %v role %q status %d", tc.name, last, tc.claims["sub"], tc.role, tc.status)
		}
		if tc.status == http.StatusForbidden && last.Outcome != "forbidden" {
			t.Errorf("%s: outcome %q", tc.name, last.Outcome)
		}
	}
	// The static token is one caller, the operator.
	if r := c.send(http.MethodGet, "/prescriptions/urn:rx:1", "Bearer "+token); r.status != http.StatusOK {
		t.Fatalf("static token: %d %s", r.status, r.body)
	}
	got := accesses(t, log)
	if last := got[len(got)-1]; last.Subject != httpapi.StaticSubject || last.Role != "operator" {
		t.Errorf("static token recorded as %+v", last)
	}
}

// jwksServer serves a JWKS that the test rotates, on 127.0.0.1, counting
// the fetches.
type jwksServer struct {
	mu      sync.Mutex
	body    []byte
	fetches atomic.Int64
	url     string
}

func newJWKSServer(t *testing.T, body []byte) *jwksServer {
	s := &jwksServer{body: body}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fetches.Add(1)
		s.mu.Lock()
		defer s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Write(s.body)
	}))
	t.Cleanup(srv.Close)
	s.url = srv.URL + "/jwks.json"
	return s
}

func (s *jwksServer) set(body []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.body = body
}

// A JWKS URL is fetched at start; a token signed by a key it does not hold
// fetches it again, at most once per UnknownKeyInterval: a rotation is
// picked up, and tokens naming made-up key ids cannot make the API hammer
// the identity provider.
func TestJWKSURLRotation(t *testing.T) {
	f := newFixture(t)
	f.lifecycle("urn:rx:1")
	k1, k2, k3 := newSigner(t, "k1"), newSigner(t, "k2"), newSigner(t, "k3")
	idp := newJWKSServer(t, jwks(t, k1))
	c, log := f.jwtAPI(httpapi.JWTConfig{JWKSURL: idp.url, UnknownKeyInterval: time.Hour})
	if n := idp.fetches.Load(); n != 1 {
		t.Fatalf("%d fetches at start, want 1", n)
	}
	read := func(s signer) int {
		return c.send(http.MethodGet, "/prescriptions/urn:rx:1", "Bearer "+s.sign(t, claims("u", "auditor"))).status
	}
	if st := read(k1); st != http.StatusOK {
		t.Fatalf("k1 before the rotation: %d", st)
	}
	if n := idp.fetches.Load(); n != 1 {
		t.Fatalf("a known key fetched the JWKS again: %d fetches", n)
	}

	idp.set(jwks(t, k2)) // the provider rotates: k1 retired, k2 signs
	if st := read(k2); st != http.StatusOK {
		t.Fatalf("k2 after the rotation: %d", st)
	}
	if n := idp.fetches.Load(); n != 2 {
		t.Fatalf("%d fetches after the rotation, want 2", n)
	}
	if st := read(k1); st != http.StatusUnauthorized {
		t.Errorf("k1 after it was retired: %d, want 401", st)
	}
	idp.set(jwks(t, k2, k3))
	for range 5 {
		if st := read(newSigner(t, "made-up")); st != http.StatusUnauthorized {
			t.Fatalf("a made-up kid: %d", st)
		}
	}
	if st := read(k3); st != http.StatusUnauthorized {
		t.Errorf("k3 within the interval after the last fetch: %d, want 401 (no fetch yet)", st)
	}
	if n := idp.fetches.Load(); n != 2 {
		t.Errorf("%d fetches, want still 2: unknown kids refetch at most once per interval", n)
	}
	if got := len(accesses(t, log)); got != 9 {
		t.Errorf("%d access records, want one per request (9)", got)
	}
}

// A JWKS URL that does not answer at start does not stop the API: tokens
// are refused until a fetch succeeds, which a token's unknown kid triggers.
func TestJWKSURLDownAtStart(t *testing.T) {
	f := newFixture(t)
	f.lifecycle("urn:rx:1")
	key := newSigner(t, "k1")
	var up atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !up.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Write(jwks(t, key))
	}))
	t.Cleanup(srv.Close)
	c, _ := f.jwtAPI(httpapi.JWTConfig{JWKSURL: srv.URL, UnknownKeyInterval: time.Nanosecond})
	tok := "Bearer " + key.sign(t, claims("u", "auditor"))
	if r := c.send(http.MethodGet, "/prescriptions/urn:rx:1", tok); r.status != http.StatusUnauthorized {
		t.Fatalf("with the JWKS down: %d, want 401", r.status)
	}
	up.Store(true)
	if r := c.send(http.MethodGet, "/prescriptions/urn:rx:1", tok); r.status != http.StatusOK {
		t.Fatalf("once the JWKS answers: %d %s", r.status, r.body)
	}
}

func TestAuthConfigRefusals(t *testing.T) {
	file := jwksFile(t, newSigner(t, "k1"))
	empty := filepath.Join(t.TempDir(), "empty.json")
	if err := os.WriteFile(empty, []byte(`{"keys":[]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	octOnly := filepath.Join(t.TempDir(), "oct.json")
	if err := os.WriteFile(octOnly, []byte(`{"keys":[{"kty":"oct","kid":"s1","alg":"HS256","k":"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTMyYg"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		cfg  httpapi.AuthConfig
		want string
	}{
		"nothing":            {httpapi.AuthConfig{}, "no way to authenticate callers"},
		"static as pharmacy": {httpapi.AuthConfig{StaticToken: "t", StaticRole: httpapi.RolePharmacy}, "not auditor or operator"},
		"URL and file": {httpapi.AuthConfig{JWT: &httpapi.JWTConfig{JWKSURL: "https://idp/jwks", JWKSFile: file, Issuer: issuer, Audience: audience}},
			"exactly one of the JWKS URL and the JWKS file"},
		"neither URL nor file":           {httpapi.AuthConfig{JWT: &httpapi.JWTConfig{Issuer: issuer, Audience: audience}}, "exactly one"},
		"not an http URL":                {httpapi.AuthConfig{JWT: &httpapi.JWTConfig{JWKSURL: "file:///etc/jwks", Issuer: issuer, Audience: audience}}, "not an http(s) URL"},
		"no issuer":                      {httpapi.AuthConfig{JWT: &httpapi.JWTConfig{JWKSFile: file, Audience: audience}}, "issuer is required"},
		"no audience":                    {httpapi.AuthConfig{JWT: &httpapi.JWTConfig{JWKSFile: file, Issuer: issuer}}, "audience is required"},
		"HS256":                          {httpapi.AuthConfig{JWT: &httpapi.JWTConfig{JWKSFile: file, Issuer: issuer, Audience: audience, Algorithms: []string{"HS256"}}}, `"HS256" is not allowed`},
		"none":                           {httpapi.AuthConfig{JWT: &httpapi.JWTConfig{JWKSFile: file, Issuer: issuer, Audience: audience, Algorithms: []string{"none"}}}, `"none" is not allowed`},
		"empty claim part":               {httpapi.AuthConfig{JWT: &httpapi.JWTConfig{JWKSFile: file, Issuer: issuer, Audience: audience, RolesClaim: "a..b"}}, "empty part"},
		"file missing":                   {httpapi.AuthConfig{JWT: &httpapi.JWTConfig{JWKSFile: file + ".gone", Issuer: issuer, Audience: audience}}, "no such file"},
		"file without keys":              {httpapi.AuthConfig{JWT: &httpapi.JWTConfig{JWKSFile: empty, Issuer: issuer, Audience: audience}}, "no usable key"},
		"file with a symmetric key only": {httpapi.AuthConfig{JWT: &httpapi.JWTConfig{JWKSFile: octOnly, Issuer: issuer, Audience: audience}}, "no usable key"},
		"no key for the algorithms": {httpapi.AuthConfig{JWT: &httpapi.JWTConfig{JWKSFile: file, Issuer: issuer, Audience: audience, Algorithms: []string{"RS256", "EdDSA"}}},
			"no usable key"},
		"static token with a space":        {httpapi.AuthConfig{StaticToken: "two words"}, "white space or control characters"},
		"static token with a control char": {httpapi.AuthConfig{StaticToken: "tok\x00en"}, "white space or control characters"},
	} {
		a, err := httpapi.NewAuthenticator(c.cfg)
		if err == nil || a != nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error saying %q", name, err, c.want)
		}
	}
}
