package partners

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
)

// bodyKind records the type of the body the inner transport receives.
type bodyKind struct{ got []string }

func (b *bodyKind) RoundTrip(r *http.Request) (*http.Response, error) {
	b.got = append(b.got, fmt.Sprintf("%T/%d", r.Body, r.ContentLength))
	return &http.Response{StatusCode: http.StatusOK, Body: http.NoBody, Request: r}, nil
}

// Behind otelhttp's transport, the request still reaches net/http with an
// in-memory body of known length, so headers and body leave in one write.
func TestTracedTransportKeepsTheBodyInMemory(t *testing.T) {
	rec := &bodyKind{}
	client := &http.Client{Transport: otelhttp.NewTransport(inMemoryBody{rec})}
	req, _ := http.NewRequest(http.MethodPost, "http://partner.invalid/v1", strings.NewReader(`{"a":1}`))
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if len(rec.got) != 1 || rec.got[0] != "io.nopCloserWriterTo/7" {
		t.Fatalf("inner transport got bodies %v, want one in-memory body of 7 bytes", rec.got)
	}
}
