// Package kafkabroker is a stand-in for Apache Kafka, for tests and local
// runs only, never in a production path: an in-process, single-node broker
// (franz-go's kfake) that speaks the real Kafka protocol. Like the CI
// broker, it creates unknown topics on first use with Config.Partitions
// partitions.
package kafkabroker

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
)

// Config configures an embedded broker.
type Config struct {
	// Addr is the host:port to listen on; a port of 0 picks a free one (see
	// Broker.Addrs). Default "127.0.0.1:9092".
	Addr string
	// DataDir keeps topics, records and committed consumer-group offsets
	// across restarts; "" keeps everything in memory.
	DataDir string
	// Partitions is the partition count of seeded and auto-created topics.
	// Default 8.
	Partitions int32
	// Topics are created at start when missing.
	Topics []string
	// TLS, when set, makes the one listener speak TLS only, with this
	// server configuration (its certificate; ClientAuth and ClientCAs to
	// require client certificates).
	TLS *tls.Config
	// Users, when any, turn SASL on: every client must authenticate as one
	// of them before anything else. No ACLs apply.
	Users []User
}

// User is a SASL user of the broker.
type User struct {
	// Mechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; a user name may
	// appear once per mechanism.
	Mechanism      string
	Name, Password string
}

// Broker is a running embedded broker.
type Broker struct {
	cluster *kfake.Cluster
}

// Start starts a broker listening on cfg.Addr.
func Start(cfg Config) (*Broker, error) {
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:9092"
	}
	if cfg.Partitions == 0 {
		cfg.Partitions = 8
	}
	if cfg.Partitions < 0 {
		return nil, fmt.Errorf("embedded kafka: negative partition count %d", cfg.Partitions)
	}
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		// kfake always listens on 127.0.0.1; this honours the host of Addr too.
		kfake.ListenFn(func(network, _ string) (net.Listener, error) {
			return net.Listen(network, cfg.Addr)
		}),
		kfake.AllowAutoTopicCreation(),
		kfake.DefaultNumPartitions(int(cfg.Partitions)),
	}
	if cfg.DataDir != "" {
		opts = append(opts, kfake.DataDir(cfg.DataDir))
	}
	if cfg.TLS != nil {
		opts = append(opts, kfake.TLS(cfg.TLS))
	}
	if len(cfg.Users) > 0 {
		opts = append(opts, kfake.EnableSASL())
	}
	for _, u := range cfg.Users {
		opts = append(opts, kfake.User(u.Mechanism, u.Name, u.Password))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("embedded kafka on %s: %w", cfg.Addr, err)
	}
	if cfg.TLS == nil && len(cfg.Users) == 0 {
		// Its side connection speaks neither TLS nor SASL; it is for kcat
		// on the plaintext local stack.
		advertiseProduceV0(c, c.ListenAddrs()[0])
	}
	// Not kfake.SeedTopics: it is ignored when DataDir holds a cluster.
	for _, t := range cfg.Topics {
		if err := c.CreateTopic(t, cfg.Partitions, nil); err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			c.Close()
			return nil, fmt.Errorf("embedded kafka: create topic %q: %w", t, err)
		}
	}
	return &Broker{cluster: c}, nil
}

// Addrs returns the host:port the broker listens on, with the port chosen.
func (b *Broker) Addrs() []string { return b.cluster.ListenAddrs() }

// Close stops the broker and, with a DataDir, saves its state. It is safe to
// call more than once.
func (b *Broker) Close() { b.cluster.Close() }
