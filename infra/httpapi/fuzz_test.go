package httpapi_test

import (
	"bufio"
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

// FuzzQueryAPI sends arbitrary requests, with the token or without, to the
// handler over the real read model, and checks every answer with
// checkAnswer: JSON, valid UTF-8, Content-Type application/json, no
// redirect and no 5xx but a minPosition timeout. A request net/http cannot
// parse never reaches the handler (the server answers it itself), so it is
// not an input here.
//
//	go test -run '^$' -fuzz FuzzQueryAPI -fuzztime 20s ./infra/httpapi/
func FuzzQueryAPI(f *testing.F) {
	fx := newFixture(f)
	fx.lifecycle("urn:rx:1")
	fx.do(t0, request("urn:rx:stats", "pat-2"))
	fx.record(t0, request("urn:rx:unprojected", "pat-3"))
	parked := parkedList{{ID: "pharmacy/e1", Projector: "pharmacy", URN: "urn:rx:1", EventID: "e1", EventName: "PrescriptionApproved",
		Status: projections.EffectParked, Error: "partner call failed: 503", At: t0}}
	// A short wait: a minPosition past the checkpoint is a quick 504.
	h, err := httpapi.NewHandler(httpapi.Config{Auth: staticAuth(f), AccessLog: memAccessLog(f), WaitTimeout: time.Millisecond, Logger: slog.New(slog.DiscardHandler)},
		fx.store, fx.hist, parked)
	if err != nil {
		f.Fatal(err)
	}

	for _, s := range []struct {
		method, target, header string
		auth                   bool
	}{
		{"GET", "/.#", "", true},
		{"GET", "/.", "", true},
		{"GET", "//prescriptions", "", true},
		{"GET", "/prescriptions/stats", "", true},
		{"GET", "/prescriptions/urn:rx:a%C2%A0b", "", true},
		{"GET", "/prescriptions/urn:rx:1/history?asOf=garbage", "", true},
		{"GET", "/prescriptions?limit=-1&cursor=%ff", "", true},
		{"GET", "/prescriptions/urn:rx:\xff\xfe", "", true},
		{"GET", "/\xc3\x28", "", true},
		{"GET", "/prescriptions?patientId=\xff", "", true},
		{"GET", "/prescriptions/" + strings.Repeat("a", 10000), "", true},
		{"GET", "/prescriptions/urn:rx:" + strings.Repeat("9", 5000) + "/history", "", true},
		{"GET", "/" + strings.Repeat("x/", 3000), "", true},
		{"GET", "/prescriptions/" + strings.Repeat("%2F", 1000), "", true},
		{"GET", "/prescriptions/../effects/parked", "", true},
		{"GET", "/prescriptions/%2E%2E", "", true},
		{"GET", "/prescriptions/stats/", "", true},
		{"GET", "/prescriptions/urn:rx:stats", "", true},
		{"GET", "/prescriptions/stats/history", "", true},
		{"GET", "/prescriptions/URN:rx:1", "", true},
		{"GET", "/prescriptions/urn:rx:a%E2%80%8Bb", "", true},
		{"GET", "/prescriptions/urn:rx:a%00b", "", true},
		{"GET", "/prescriptions/urn:rx:a%2Fb/history", "", true},
		{"GET", "/prescriptions/urn:rx:unprojected/history?asOf=0", "", true},
		{"GET", "/prescriptions/urn:rx:1/history?asOf=2025-03-01T09:01:30%2B00:00", "", true},
		{"GET", "/prescriptions/urn:rx:1?minPosition=18446744073709551615&timeout=1ns", "", true},
		{"GET", "/prescriptions?status=requested&patientId=pat-2&pharmacyId=ph-1&limit=1&cursor=dXJuOnJ4OjE", "", true},
		{"GET", "/prescriptions?patientId=%00&pharmacyId=%C2%A0", "", true},
		{"GET", "/prescriptions?cursor=AA", "", true},
		{"GET", "/prescriptions?cursor=_w&limit=500", "", true},
		{"GET", "/prescriptions?cursor=" + strings.Repeat("dXJu", 2000), "", true},
		{"GET", "/prescriptions?%zz", "", true},
		{"GET", "/prescriptions;x", "", true},
		{"GET", "/effects/parked", "", true},
		{"GET", "/effects/parked?x=1", "", true},
		{"GET", "http://127.0.0.1//prescriptions", "", true},
		{"POST", "/prescriptions", "Content-Length: 2\r\n\r\n{}", true},
		{"HEAD", "/prescriptions/stats", "", true},
		{"OPTIONS", "*", "", true},
		{"CONNECT", "127.0.0.1:443", "", true},
		{"GET", "/prescriptions/stats", "", false},
		{"GET", "//prescriptions", "", false},
		{"GET", "/prescriptions/stats", "Authorization: Bearer " + token, false},
		{"GET", "/prescriptions/stats", "Authorization: Basic " + token, true},
		{"GET", "/prescriptions/stats", "Authorization: Bearer " + token + "\xff", false},
		{"GET", "/prescriptions/stats", "X-Forwarded-Prefix: //x\r\nAccept: text/html", true},
	} {
		f.Add(s.method, s.target, s.header, s.auth)
	}

	f.Fuzz(func(t *testing.T, method, target, header string, auth bool) {
		raw := method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n"
		if auth {
			raw += "Authorization: Bearer " + token + "\r\n"
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
