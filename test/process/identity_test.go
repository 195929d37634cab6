package process_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"rxflow/infra/httpapi"
)

func init() { configEnv = append(configEnv, httpapi.AuthEnv...) }

// The projector binary configured with a JWKS URL: JWTs signed by the
// provider's key are served by role, other tokens and the static token are
// refused, and every request is in the access log, which outlives a
// restart.
func TestProjectorJWTCallersAndAccessLog(t *testing.T) {
	f := newFixture(t)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b64 := func(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
	jwks, err := json.Marshal(map[string]any{"keys": []map[string]any{{"kty": "EC", "crv": "P-256", "kid": "k1", "alg": "ES256",
		"x": b64(key.X.FillBytes(make([]byte, 32))), "y": b64(key.Y.FillBytes(make([]byte, 32)))}}})
	if err != nil {
		t.Fatal(err)
	}
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(jwks) }))
	t.Cleanup(idp.Close)
	const issuer, audience = "https://idp.test/realms/rx", "rxflow-api"
	sign := func(sub string, exp time.Time, extra jwt.MapClaims) string {
		c := jwt.MapClaims{"iss": issuer, "aud": audience, "sub": sub, "iat": time.Now().Add(-time.Minute).Unix(), "exp": exp.Unix()}
		for k, v := range extra {
			c[k] = v
		}
		tok := jwt.NewWithClaims(jwt.SigningMethodES256, c)
		tok.Header["kid"] = "k1"
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	auditor := sign("auditor@hospital", time.Now().Add(time.Hour), jwt.MapClaims{"roles": []string{"auditor"}})
	pharmacy := sign("pharmacist@ph-1", time.Now().Add(time.Hour), jwt.MapClaims{"roles": "pharmacy", "pharmacy_id": "ph-1"})
	expired := sign("auditor@hospital", time.Now().Add(-time.Hour), jwt.MapClaims{"roles": []string{"auditor"}})

	addr := freeAddr(t)
	env := f.projectorEnv("PROJECTOR_HTTP_ADDR="+addr, "PROJECTOR_DATA_DIR="+filepath.Join(t.TempDir(), "projector"),
		"QUERY_API_STATIC_TOKEN_ENABLED=false", "QUERY_API_TOKEN=",
		"QUERY_API_JWKS_URL="+idp.URL+"/jwks", "QUERY_API_JWT_ISSUER="+issuer, "QUERY_API_JWT_AUDIENCE="+audience)
	get := func(path, tok string, out any) int {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := client.Do(req)
		if err != nil {
			return 0
		}
		defer resp.Body.Close()
		if out != nil && resp.StatusCode == http.StatusOK {
			if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
				t.Fatalf("GET %s: %v", path, err)
			}
		}
		return resp.StatusCode
	}
	start := func() *proc {
		p := launch(t, bin.projector, nil, env)
		p.waitFor(t, "the query API", func() bool { return getJSON(t, "http://"+addr+"/healthz", false, nil) == http.StatusOK })
		return p
	}

	p := start()
	for _, c := range []struct {
		path, tok string
		want      int
	}{
		{"/prescriptions", auditor, http.StatusOK},
		{"/prescriptions/stats", pharmacy, http.StatusOK},
		{"/effects/parked", pharmacy, http.StatusForbidden},
		{"/prescriptions", token, http.StatusUnauthorized}, // the static token is not enabled
		{"/prescriptions", expired, http.StatusUnauthorized},
	} {
		if got := get(c.path, c.tok, nil); got != c.want {
			t.Errorf("GET %s: %d, want %d", c.path, got, c.want)
		}
	}
	type record struct {
		Subject, Role, Route, Outcome string
		Status                        int
	}
	var log struct{ Items []record }
	if st := get("/audit/access", auditor, &log); st != http.StatusOK {
		t.Fatalf("GET /audit/access: %d", st)
	}
	want := []record{
		{"", "", "/prescriptions", "unauthorized", 401},
		{"", "", "/prescriptions", "unauthorized", 401},
		{"pharmacist@ph-1", "pharmacy", "/effects/parked", "forbidden", 403},
		{"pharmacist@ph-1", "pharmacy", "/prescriptions/stats", "ok", 200},
		{"auditor@hospital", "auditor", "/prescriptions", "ok", 200},
	}
	if len(log.Items) != len(want) {
		t.Fatalf("access log %+v, want %+v", log.Items, want)
	}
	for i := range want {
		if log.Items[i] != want[i] {
			t.Errorf("record %d: %+v, want %+v", i, log.Items[i], want[i])
		}
	}
	p.stop(t)

	// The log is on disk: after a restart it still holds every request,
	// the first read of the log included.
	p = start()
	defer p.stop(t)
	log.Items = nil
	if st := get("/audit/access", auditor, &log); st != http.StatusOK || len(log.Items) != len(want)+1 ||
		log.Items[0] != (record{"auditor@hospital", "auditor", "/audit/access", "ok", 200}) {
		t.Fatalf("after a restart: %d %+v", st, log.Items)
	}
}
