package kafkabroker

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"regexp"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// advertiseProduceV0 makes ApiVersions list Produce from version 0, as
// Apache Kafka 4 does (KAFKA-18659) although it refuses Produce v0-v2.
// librdkafka before 2.10 (kcat 1.7.1 in Debian uses 2.0.2) compresses with
// gzip, snappy or lz4 only when the broker lists Produce v0; otherwise it
// logs "Broker does not support compression type gzip" and sends the batch
// uncompressed (librdkafka issue 4956). kfake lists Produce from v3 and has
// no option for the range, so ApiVersions requests up to v4 get kfake's own
// answer, fetched over a side connection, with that one range widened.
// Requests kfake answers with an error (a version above its range, a bad
// client software name) keep kfake's answer.
func advertiseProduceV0(c *kfake.Cluster, addr string) {
	c.ControlKey(int16(kmsg.ApiVersions), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		req, ok := kreq.(*kmsg.ApiVersionsRequest)
		if !ok || req.ClientSoftwareName == probeName || req.Version > 4 ||
			req.Version >= 3 && !(softwareName.MatchString(req.ClientSoftwareName) && softwareName.MatchString(req.ClientSoftwareVersion)) {
			return nil, nil, false
		}
		var own *kmsg.ApiVersionsResponse
		var err error
		// Sleeping lets the cluster serve the side connection meanwhile.
		c.SleepControl(func() { own, err = probeAPIVersions(addr) })
		if err != nil || own.ErrorCode != 0 {
			return nil, nil, false
		}
		resp := req.ResponseKind().(*kmsg.ApiVersionsResponse)
		resp.ApiKeys = own.ApiKeys
		for i := range resp.ApiKeys {
			if resp.ApiKeys[i].ApiKey == int16(kmsg.Produce) {
				resp.ApiKeys[i].MinVersion = 0
			}
		}
		resp.ThrottleMillis = own.ThrottleMillis
		resp.SupportedFeatures = own.SupportedFeatures
		resp.FinalizedFeaturesEpoch = own.FinalizedFeaturesEpoch
		resp.FinalizedFeatures = own.FinalizedFeatures
		resp.ZkMigrationReady = own.ZkMigrationReady
		return resp, nil, true
	})
}

// probeName marks the side connection's request, which kfake answers.
const probeName = "rxflow-embedded-probe"

// softwareName is what Kafka accepts as a client software name or version.
var softwareName = regexp.MustCompile(`^[a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?$`)

// probeAPIVersions sends ApiVersions v3 to addr and returns the answer.
func probeAPIVersions(addr string) (*kmsg.ApiVersionsResponse, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	req := kmsg.NewPtrApiVersionsRequest()
	req.Version = 3
	req.ClientSoftwareName, req.ClientSoftwareVersion = probeName, "1"
	if _, err := conn.Write(kmsg.NewRequestFormatter(kmsg.FormatterClientID(probeName)).AppendRequest(nil, req, 1)); err != nil {
		return nil, err
	}
	var size [4]byte
	if _, err := io.ReadFull(conn, size[:]); err != nil {
		return nil, err
	}
	body := make([]byte, binary.BigEndian.Uint32(size[:]))
	if _, err := io.ReadFull(conn, body); err != nil {
		return nil, err
	}
	if len(body) < 4 {
		return nil, fmt.Errorf("short ApiVersions response")
	}
	// The ApiVersions response header is only the correlation id.
	resp := req.ResponseKind().(*kmsg.ApiVersionsResponse)
	if err := resp.ReadFrom(body[4:]); err != nil {
		return nil, err
	}
	return resp, nil
}
