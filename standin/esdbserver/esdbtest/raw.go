package esdbtest

import (
	"context"
	"encoding/base64"
	"errors"
	"io"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/shared"
	api "github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// basicAuth sends HTTP basic credentials with every raw call.
type basicAuth struct{ user, password string }

func (b basicAuth) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	token := base64.StdEncoding.EncodeToString([]byte(b.user + ":" + b.password))
	return map[string]string{"authorization": "Basic " + token}, nil
}

func (basicAuth) RequireTransportSecurity() bool { return true }

// rawAppend sends msgs as one Append call and returns the response, the
// trailers and the call's error. A server may end the call before all
// messages are sent; the status then comes from the final receive.
func (s *suite) rawAppend(ctx context.Context, msgs ...*api.AppendReq) (*api.AppendResp, metadata.MD, error) {
	var trailer metadata.MD
	call, err := api.NewStreamsClient(s.raw).Append(ctx, grpc.Trailer(&trailer))
	if err != nil {
		return nil, trailer, err
	}
	for _, m := range msgs {
		if err := call.Send(m); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, trailer, err
		}
	}
	resp, err := call.CloseAndRecv()
	return resp, trailer, err
}

// rawRead runs a Read call to its end and returns the messages received,
// the trailers and the error it ended with (nil for a clean end).
func (s *suite) rawRead(ctx context.Context, req *api.ReadReq) ([]*api.ReadResp, metadata.MD, error) {
	var trailer metadata.MD
	call, err := api.NewStreamsClient(s.raw).Read(ctx, req, grpc.Trailer(&trailer))
	if err != nil {
		return nil, trailer, err
	}
	var out []*api.ReadResp
	for {
		m, err := call.Recv()
		if errors.Is(err, io.EOF) {
			return out, trailer, nil
		}
		if err != nil {
			return out, trailer, err
		}
		out = append(out, m)
	}
}

func appendHeader(stream string) *api.AppendReq {
	return &api.AppendReq{Content: &api.AppendReq_Options_{Options: &api.AppendReq_Options{
		StreamIdentifier:       &shared.StreamIdentifier{StreamName: []byte(stream)},
		ExpectedStreamRevision: &api.AppendReq_Options_Any{Any: &shared.Empty{}},
	}}}
}

// proposed builds a proposed message carrying the given system metadata.
func proposed(id uuid.UUID, systemMetadata map[string]string, data []byte) *api.AppendReq {
	most, least := esdb.UUIDAsInt64(id)
	return &api.AppendReq{Content: &api.AppendReq_ProposedMessage_{ProposedMessage: &api.AppendReq_ProposedMessage{
		Id: &shared.UUID{Value: &shared.UUID_Structured_{Structured: &shared.UUID_Structured{
			MostSignificantBits: most, LeastSignificantBits: least,
		}}},
		Metadata:       systemMetadata,
		Data:           data,
		CustomMetadata: []byte{},
	}}}
}

// streamSubscriptionRequest asks for a subscription to stream from its start.
func streamSubscriptionRequest(stream string) *api.ReadReq {
	return &api.ReadReq{Options: &api.ReadReq_Options{
		StreamOption: &api.ReadReq_Options_Stream{Stream: &api.ReadReq_Options_StreamOptions{
			StreamIdentifier: &shared.StreamIdentifier{StreamName: []byte(stream)},
			RevisionOption:   &api.ReadReq_Options_StreamOptions_Start{Start: &shared.Empty{}},
		}},
		ReadDirection: api.ReadReq_Options_Forwards,
		CountOption:   &api.ReadReq_Options_Subscription{Subscription: &api.ReadReq_Options_SubscriptionOptions{}},
		FilterOption:  &api.ReadReq_Options_NoFilter{NoFilter: &shared.Empty{}},
		UuidOption:    &api.ReadReq_Options_UUIDOption{Content: &api.ReadReq_Options_UUIDOption_Structured{Structured: &shared.Empty{}}},
	}}
}
