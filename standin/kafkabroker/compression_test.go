package kafkabroker_test

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"rxflow/standin/kafkabroker"
)

// TestKcatCompression produces with kcat (librdkafka) in each codec and
// checks the broker stored the batch with that codec. Before the broker
// listed Produce v0, librdkafka before 2.10 fell back to no compression
// for gzip, snappy and lz4. kcat must be installed (.ci/run installs it).
func TestKcatCompression(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Skip("kcat is not installed (apt-get install kcat); .ci/run installs it")
	}
	b := start(t, kafkabroker.Config{Addr: "127.0.0.1:0", Partitions: 1})
	codecs := map[string]uint8{"gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
	value := strings.Repeat("compressible rxflow payload ", 200)
	for name, want := range codecs {
		topic := "kcat-" + name
		cmd := exec.Command(kcat, "-P", "-b", b.Addrs()[0], "-t", topic, "-z", name, "-d", "msg")
		cmd.Stdin = strings.NewReader(value + "\n")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("kcat -z %s: %v\n%s", name, err, out)
		}
		if strings.Contains(string(out), "does not support compression") {
			t.Errorf("kcat -z %s: %s", name, out)
		}
		if got := storedCodec(t, b.Addrs(), topic); got != want {
			t.Errorf("kcat -z %s: stored with codec %d, want %d", name, got, want)
		}
	}
}

// TestApiVersionsListsProduceV0 checks the advertised range on the wire,
// for the ApiVersions versions librdkafka and older clients send.
func TestApiVersionsListsProduceV0(t *testing.T) {
	b := start(t, kafkabroker.Config{Addr: "127.0.0.1:0"})
	for _, v := range []int16{0, 3, 4} {
		req := kmsg.NewPtrApiVersionsRequest()
		req.Version = v
		req.ClientSoftwareName, req.ClientSoftwareVersion = "test", "1"
		resp := apiVersions(t, b.Addrs()[0], req)
		found := false
		for _, k := range resp.ApiKeys {
			if k.ApiKey == int16(kmsg.Produce) {
				found = true
				if k.MinVersion != 0 || k.MaxVersion < 7 {
					t.Errorf("ApiVersions v%d: Produce %d..%d, want 0..(7 or more)", v, k.MinVersion, k.MaxVersion)
				}
			}
		}
		if !found || len(resp.ApiKeys) < 20 {
			t.Errorf("ApiVersions v%d: %d keys, Produce listed %v", v, len(resp.ApiKeys), found)
		}
		if v >= 3 && len(resp.SupportedFeatures) == 0 {
			t.Errorf("ApiVersions v%d: no supported features", v)
		}
	}
}

// apiVersions sends req on a new connection and returns the answer.
func apiVersions(t *testing.T, addr string, req *kmsg.ApiVersionsRequest) *kmsg.ApiVersionsResponse {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write(kmsg.NewRequestFormatter(kmsg.FormatterClientID("test")).AppendRequest(nil, req, 7)); err != nil {
		t.Fatal(err)
	}
	var size [4]byte
	if _, err := io.ReadFull(conn, size[:]); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, binary.BigEndian.Uint32(size[:]))
	if _, err := io.ReadFull(conn, body); err != nil || len(body) < 4 {
		t.Fatalf("ApiVersions v%d response: %v (%d bytes)", req.Version, err, len(body))
	}
	resp := req.ResponseKind().(*kmsg.ApiVersionsResponse)
	if err := resp.ReadFrom(body[4:]); err != nil {
		t.Fatalf("ApiVersions v%d response: %v", req.Version, err)
	}
	if resp.ErrorCode != 0 {
		t.Fatalf("ApiVersions v%d: error code %d", req.Version, resp.ErrorCode)
	}
	return resp
}

// storedCodec fetches the topic's first record and returns its batch codec.
func storedCodec(t *testing.T, brokers []string, topic string) uint8 {
	t.Helper()
	c, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		fs := c.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("no record on %s: %v", topic, err)
		}
		var codec uint8
		got := false
		fs.EachRecord(func(r *kgo.Record) {
			if !got {
				codec, got = r.Attrs.CompressionType(), true
			}
		})
		if got {
			return codec
		}
	}
}
