package httpapi_test

import (
	"bufio"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"regexp"
	"strings"
	"testing"
	"time"

	"rxflow/domain"
	"rxflow/infra/httpapi"
	"rxflow/projections"
)

// FuzzQueryAPI sends arbitrary requests, with no token, the static token
// (operator) or the JWT of pharmacy ph-1, to the handler over the real read
// model and access log, and checks every answer with checkAnswer: JSON,
// valid UTF-8, Content-Type application/json, no redirect and no 5xx but a
// minPosition timeout. The pharmacy never gets a field of urn:rx:1, which
// is ph-9's. A request net/http cannot parse never reaches the handler
// (the server answers it itself), so it is not an input here.
//
//	go test -run '^$' -fuzz FuzzQueryAPI -fuzztime 20s ./infra/httpapi/
func FuzzQueryAPI(f *testing.F) {
	fx := newFixture(f)
	fx.lifecycle("urn:rx:1")
	fx.do(t0, request("urn:rx:stats", "pat-2"))
	fx.record(t0, request("urn:rx:unprojected", "pat-3"))
	parked := parkedList{{ID: "pharmacy/e1", Projector: "pharmacy", URN: "urn:rx:1", EventID: "e1", EventName: "PrescriptionApproved",
		Status: projections.EffectParked, Error: "partner call failed: 503", At: t0}}
	key := newSigner(f, "k1")
	auth, err := httpapi.NewAuthenticator(httpapi.AuthConfig{StaticToken: token, Now: clock,
		JWT: &httpapi.JWTConfig{JWKSFile: jwksFile(f, key), Issuer: issuer, Audience: audience}})
	if err != nil {
		f.Fatal(err)
	}
	pharmacy := key.sign(f, claims("pharmacist", "pharmacy", "pharmacy_id", "ph-1"))
	// A short wait: a minPosition past the checkpoint is a quick 504.
	h, err := httpapi.NewHandler(httpapi.Config{Auth: auth, AccessLog: memAccessLog(f), WaitTimeout: time.Millisecond,
		Logger: slog.New(slog.DiscardHandler), Now: clock}, fx.store, fx.hist, parked)
	if err != nil {
		f.Fatal(err)
	}
	const (
		anonymous uint8 = iota
		operator
		pharmacist
	)

	for _, s := range []struct {
		method, target, header string
		caller                 uint8
	}{
		{"GET", "/.#", "", operator},
		{"GET", "/.", "", operator},
		{"GET", "//prescriptions", "", operator},
		{"GET", "/prescriptions/stats", "", operator},
		{"GET", "/prescriptions/urn:rx:a%C2%A0b", "", operator},
		{"GET", "/prescriptions/urn:rx:1/history?asOf=garbage", "", operator},
		{"GET", "/prescriptions?limit=-1&cursor=%ff", "", operator},
		{"GET", "/prescriptions/urn:rx:\xff\xfe", "", operator},
		{"GET", "/\xc3\x28", "", operator},
		{"GET", "/prescriptions?patientId=\xff", "", operator},
		{"GET", "/prescriptions/" + strings.Repeat("a", 10000), "", operator},
		{"GET", "/prescriptions/urn:rx:" + strings.Repeat("9", 5000) + "/history", "", operator},
		{"GET", "/" + strings.Repeat("x/", 3000), "", operator},
		{"GET", "/prescriptions/" + strings.Repeat("%2F", 1000), "", operator},
		{"GET", "/prescriptions/../effects/parked", "", operator},
		{"GET", "/prescriptions/%2E%2E", "", operator},
		{"GET", "/prescriptions/stats/", "", operator},
		{"GET", "/prescriptions/urn:rx:stats", "", operator},
		{"GET", "/prescriptions/stats/history", "", operator},
		{"GET", "/prescriptions/URN:rx:1", "", operator},
		{"GET", "/prescriptions/urn:rx:a%E2%80%8Bb", "", operator},
		{"GET", "/prescriptions/urn:rx:a%00b", "", operator},
		{"GET", "/prescriptions/urn:rx:a%2Fb/history", "", operator},
		{"GET", "/prescriptions/urn:rx:unprojected/history?asOf=0", "", operator},
		{"GET", "/prescriptions/urn:rx:1/history?asOf=2025-03-01T09:01:30%2B00:00", "", operator},
		{"GET", "/prescriptions/urn:rx:1?minPosition=18446744073709551615&timeout=1ns", "", operator},
		{"GET", "/prescriptions?status=requested&patientId=pat-2&pharmacyId=ph-1&limit=1&cursor=dXJuOnJ4OjE", "", operator},
		{"GET", "/prescriptions?patientId=%00&pharmacyId=%C2%A0", "", operator},
		{"GET", "/prescriptions?cursor=AA", "", operator},
		{"GET", "/prescriptions?cursor=_w&limit=500", "", operator},
		{"GET", "/prescriptions?cursor=" + strings.Repeat("dXJu", 2000), "", operator},
		{"GET", "/prescriptions?%zz", "", operator},
		{"GET", "/prescriptions;x", "", operator},
		{"GET", "/effects/parked", "", operator},
		{"GET", "/effects/parked?x=1", "", operator},
		{"GET", "http://127.0.0.1//prescriptions", "", operator},
		{"POST", "/prescriptions", "Content-Length: 2\r\n\r\n{}", operator},
		{"HEAD", "/prescriptions/stats", "", operator},
		{"OPTIONS", "*", "", operator},
		{"CONNECT", "127.0.0.1:443", "", operator},
		{"GET", "/prescriptions/stats", "", anonymous},
		{"GET", "//prescriptions", "", anonymous},
		{"GET", "/prescriptions/stats", "Authorization: Bearer " + token, anonymous},
		{"GET", "/prescriptions/stats", "Authorization: Basic " + token, operator},
		{"GET", "/prescriptions/stats", "Authorization: Bearer " + token + "\xff", anonymous},
		{"GET", "/prescriptions/stats", "X-Forwarded-Prefix: //x\r\nAccept: text/html", operator},
		{"GET", "/prescriptions/urn:rx:1", "", pharmacist},
		{"GET", "/prescriptions/urn:rx:1/history?asOf=0", "", pharmacist},
		{"GET", "/prescriptions?pharmacyId=ph-9", "", pharmacist},
		{"GET", "/prescriptions?status=completed&limit=1", "", pharmacist},
		{"GET", "/prescriptions/stats", "", pharmacist},
		{"GET", "/effects/parked", "", pharmacist},
		{"GET", "/audit/access?urn=urn:rx:1", "", pharmacist},
		{"GET", "/audit/access?urn=urn:rx:1&limit=2", "", operator},
		{"GET", "/audit/access?since=2026-11-30T12:00:00Z&cursor=MQ", "", operator},
		{"GET", "/prescriptions/urn:rx:1", "Authorization: Bearer " + pharmacy[:len(pharmacy)-4], anonymous},
	} {
		f.Add(s.method, s.target, s.header, s.caller)
	}

	f.Fuzz(func(t *testing.T, method, target, header string, caller uint8) {
		raw := method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n"
		switch caller % 3 {
		case operator:
			raw += "Authorization: Bearer " + token + "\r\n"
		case pharmacist:
			raw += "Authorization: Bearer " + pharmacy + "\r\n"
		}
		if header != "" {
			raw += header + "\r\n"
		}
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw + "\r\n")))
		if err != nil {
			return // not a request that reaches a handler
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if err := checkAnswer(w.Code, w.Header(), w.Body.Bytes(), false); err != nil {
			t.Fatalf("%.300q: %v", raw, err)
		}
		if req.Header.Get("Authorization") == "" && w.Code != http.StatusUnauthorized {
			t.Fatalf("%.300q: %d without a token", raw, w.Code)
		}
		if caller%3 == pharmacist && req.Header.Values("Authorization")[0] == "Bearer "+pharmacy {
			if field := otherPharmacysField(w.Body.Bytes()); field != "" {
				t.Fatalf("%.300q: the pharmacy got %s of ph-9's urn:rx:1: %.300s", raw, field, w.Body)
			}
		}
		// A {urn} segment is refused with invalid_urn exactly when it is not
		// in the grammar.
		if urn, ok := urnSegment(req); ok && w.Code != http.StatusUnauthorized && w.Code != http.StatusMethodNotAllowed {
			invalid := domain.ValidateURN(urn) != nil
			if refused := strings.Contains(w.Body.String(), `"error":"invalid_urn"`); invalid != refused {
				t.Fatalf("%.300q: urn %.100q (invalid: %v): %d %.300s", raw, urn, invalid, w.Code, w.Body)
			}
		}
	})
}

var urnRoute = regexp.MustCompile(`^/prescriptions/([^/]+)(/history)?$`)

// urnSegment is the unescaped {urn} of a canonical path of a urn route.
func urnSegment(r *http.Request) (string, bool) {
	p := r.URL.EscapedPath()
	m := urnRoute.FindStringSubmatch(p)
	if m == nil || path.Clean(p) != p {
		return "", false
	}
	urn, err := url.PathUnescape(m[1])
	return urn, err == nil && urn != "stats"
}

// otherPharmacysField names a field of urn:rx:1 (pharmacy ph-9, patient
// pat-1) anywhere in a JSON answer, or is "".
func otherPharmacysField(body []byte) string {
	var v any
	if json.Unmarshal(body, &v) != nil {
		return ""
	}
	var walk func(any) string
	walk = func(v any) string {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if s, ok := x.(string); ok && ((k == "pharmacyId" && s == "ph-9") || (k == "patientId" && s == "pat-1") ||
					(k == "urn" && s == "urn:rx:1")) {
					return k
				}
				if f := walk(x); f != "" {
					return f
				}
			}
		case []any:
			for _, x := range v {
				if f := walk(x); f != "" {
					return f
				}
			}
		}
		return ""
	}
	return walk(v)
}
