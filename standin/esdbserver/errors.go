package esdbserver

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strconv"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// rpcError is an error as EventStoreDB reports it: a gRPC status plus
// trailers (see RpcExceptions.cs and Constants.cs in EventStoreDB).
type rpcError struct {
	code     codes.Code
	msg      string
	trailers metadata.MD
}

func (e *rpcError) Error() string { return e.msg }

// GRPCStatus lets status.FromError see the code even without the trailers.
func (e *rpcError) GRPCStatus() *status.Status { return status.New(e.code, e.msg) }

func invalidArgument(format string, args ...any) error {
	return &rpcError{code: codes.InvalidArgument, msg: fmt.Sprintf(format, args...)}
}

func streamDeletedError(stream string) error {
	return &rpcError{
		code:     codes.FailedPrecondition,
		msg:      fmt.Sprintf("Event stream '%s' is deleted.", stream),
		trailers: metadata.Pairs("exception", "stream-deleted", "stream-name", stream),
	}
}

// wrongExpectedVersionError is how Delete and Tombstone report a failed
// concurrency check (Append uses a response message instead).
func wrongExpectedVersionError(op, stream string, expected, actual int64) error {
	return &rpcError{
		code: codes.FailedPrecondition,
		msg: fmt.Sprintf("%s failed due to WrongExpectedVersion. Stream: %s, Expected version: %d, Actual version: %d",
			op, stream, expected, actual),
		trailers: metadata.Pairs(
			"exception", "wrong-expected-version",
			"stream-name", stream,
			"expected-version", strconv.FormatInt(expected, 10),
			"actual-version", strconv.FormatInt(actual, 10)),
	}
}

func maxAppendSizeError(limit int) error {
	return &rpcError{
		code:     codes.InvalidArgument,
		msg:      fmt.Sprintf("Maximum Append Size of %d Exceeded.", limit),
		trailers: metadata.Pairs("exception", "maximum-append-size-exceeded", "maximum-append-size", strconv.Itoa(limit)),
	}
}

func missingMetadataError(property string) error {
	return &rpcError{
		code:     codes.InvalidArgument,
		msg:      fmt.Sprintf("Required Metadata Property '%s' is missing", property),
		trailers: metadata.Pairs("exception", "missing-required-metadata-property", "required-metadata-properties", "type,content-type"),
	}
}

var errShuttingDown = &rpcError{code: codes.Unavailable, msg: "Server is shutting down"}

// toStatus turns an rpcError into a status error, setting its trailers.
func toStatus(ctx context.Context, err error) error {
	e, ok := err.(*rpcError)
	if !ok {
		return err
	}
	if len(e.trailers) > 0 {
		_ = grpc.SetTrailer(ctx, e.trailers)
	}
	return status.Error(e.code, e.msg)
}

// unaryInterceptor converts errors and turns a handler panic into Internal.
func unaryInterceptor(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
		defer recoverTo(log, info.FullMethod, &err)
		resp, err = handler(ctx, req)
		return resp, toStatus(ctx, err)
	}
}

func streamInterceptor(log *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
		defer recoverTo(log, info.FullMethod, &err)
		return toStatus(ss.Context(), handler(srv, ss))
	}
}

func recoverTo(log *slog.Logger, method string, err *error) {
	if r := recover(); r != nil {
		log.Error("esdbserver: handler panic", "method", method, "panic", r, "stack", string(debug.Stack()))
		*err = status.Error(codes.Internal, "internal error")
	}
}
