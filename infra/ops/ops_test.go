package ops_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"rxflow/infra/ops"
)

// Beside hands non-canonical paths to the app as they came: the app, not a
// mux, decides what they get.
func TestBesideLeavesAppPathsAlone(t *testing.T) {
	var got []string
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.URL.Path)
		ops.WriteJSON(w, http.StatusNotFound, map[string]string{"error": "not_found"})
	})
	srv := httptest.NewServer(ops.Beside(app, ops.NewRegistry(), func(context.Context) error { return nil }))
	defer srv.Close()
	paths := []string{"//prescriptions", "/prescriptions/../effects/parked", "/.", "/prescriptions/"}
	for _, p := range paths {
		status, body := rawGet(t, srv.Listener.Addr().String(), p)
		if status != "404" || !strings.Contains(body, `"error":"not_found"`) {
			t.Errorf("GET %s: status %s body %q, want the app's 404", p, status, body)
		}
	}
	if strings.Join(got, " ") != strings.Join(paths, " ") {
		t.Fatalf("the app saw %q, want %q", got, paths)
	}
	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		if status, _ := rawGet(t, srv.Listener.Addr().String(), p); status != "200" {
			t.Errorf("GET %s: status %s", p, status)
		}
	}
}

// rawGet sends the path exactly as given, which Go's client would clean.
func rawGet(t *testing.T, addr, path string) (status, body string) {
	t.Helper()
	return rawRequest(t, addr, "GET "+path)
}

// rawRequest sends the request line as given.
func rawRequest(t *testing.T, addr, line string) (status, body string) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, line+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(conn)
	if err != nil {
		t.Fatal(err)
	}
	resp := string(b)
	status = strings.Fields(resp)[1]
	if i := strings.Index(resp, "\r\n\r\n"); i >= 0 {
		body = resp[i+4:]
	}
	return status, body
}

// net/http would answer "OPTIONS *" itself, with an empty 200 and no token
// check; a server from Listen hands it to its handler.
func TestListenHandsOptionsStarToTheHandler(t *testing.T) {
	var seen string
	srv, err := ops.Listen("127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = r.URL.Path
		ops.WriteJSON(w, http.StatusNotFound, map[string]string{"error": "not_found"})
	}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
	defer func() { cancel(); <-done }()
	status, body := rawRequest(t, srv.Addr(), "OPTIONS *")
	if status != "404" || !strings.Contains(body, `"error":"not_found"`) || seen != "*" {
		t.Fatalf("OPTIONS * answered %s %q, handler saw %q", status, body, seen)
	}
}
