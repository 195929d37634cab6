// Package esdbserver is a stand-in for EventStoreDB, for tests and local
// runs only, never in a production path: an embedded server that serves the
// EventStoreDB gRPC contract (Streams and ServerFeatures, as the official
// client v4.2.0 uses them) from an in-memory index backed by Pebble, so
// tests and local runs can point the official client at an in-process server.
//
// It follows KurrentDB 25.0.1 (the version it advertises) where a client
// can tell:
//   - A soft delete writes {"$tb": MaxInt64} to $$stream; the next append
//     rewrites $tb to its first revision, so revisions carry on. A tombstone
//     is a $streamDeleted event at revision MaxInt64. These system events
//     appear in $all, and, as until a scavenge, so do the events of
//     soft-deleted streams.
//   - Metadata events ($$stream) apply $tb, $maxCount and $maxAge to reads;
//     metastreams keep only their latest event.
//   - $all filter regexes are .NET regexes (regexp2); resolve_links resolves
//     "$>" link events on reads and subscriptions.
//   - CaughtUp and Checkpoint carry the server time and a checkpoint;
//     FellBehind is never sent.
//
// Not implemented (Unimplemented): persistent subscriptions, projections,
// users, operations, gossip, monitoring, multi-stream append; also ACLs,
// clustering, client certificates. TLS is optional (Config.TLSCertFile).
// See docs/esdbserver.md for the remaining differences.
package esdbserver

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
)

const (
	// DefaultAddr is where EventStoreDB listens by default.
	DefaultAddr = "127.0.0.1:2113"
	// DefaultMaxAppendSize is EventStoreDB's default MaxAppendSize (1 MiB).
	DefaultMaxAppendSize = 1 << 20
	// maxAppendSizeLimit mirrors EventStoreDB's cap: an append must fit in one
	// 16 MiB log record.
	maxAppendSizeLimit = 16 << 20
)

// Config configures a Server. The zero value is valid: it listens on
// DefaultAddr and keeps everything in memory.
type Config struct {
	Addr          string       // e.g. "127.0.0.1:0"; default "127.0.0.1:2113"
	DataDir       string       // "" = in memory; otherwise a Pebble store in this dir
	MaxAppendSize int          // bytes; default 1 MiB (1<<20), like EventStoreDB
	Logger        *slog.Logger // default slog.Default()

	// TLSCertFile and TLSKeyFile, both or neither, are the PEM certificate
	// (chain) and private key of the server. With them the listener speaks
	// TLS only (TLS 1.2 at least), as KurrentDB in secure mode does, and
	// clients connect with "tls=true&tlsCAFile=<the CA that signed it>";
	// without them it speaks plaintext, as KurrentDB with --insecure. The
	// files are read once, by Start.
	TLSCertFile, TLSKeyFile string
}

// Validate reports every problem with the configuration at once.
func (c *Config) Validate() error {
	var errs []error
	if c.Addr != "" {
		if _, _, err := net.SplitHostPort(c.Addr); err != nil {
			errs = append(errs, fmt.Errorf("addr %q: %w", c.Addr, err))
		}
	}
	if c.MaxAppendSize < 0 {
		errs = append(errs, fmt.Errorf("max append size %d: must not be negative", c.MaxAppendSize))
	}
	if c.MaxAppendSize > maxAppendSizeLimit {
		errs = append(errs, fmt.Errorf("max append size %d: must not exceed %d", c.MaxAppendSize, maxAppendSizeLimit))
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		errs = append(errs, fmt.Errorf("TLS certificate file %q and key file %q: give both or neither", c.TLSCertFile, c.TLSKeyFile))
	}
	if c.DataDir != "" {
		if fi, err := os.Stat(c.DataDir); err == nil && !fi.IsDir() {
			errs = append(errs, fmt.Errorf("data dir %q: not a directory", c.DataDir))
		}
	}
	return errors.Join(errs...)
}

// withDefaults returns the configuration with zero values replaced.
func (c Config) withDefaults() Config {
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.MaxAppendSize == 0 {
		c.MaxAppendSize = DefaultMaxAppendSize
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}
