//go:build tools

// Package tools pins the project's chosen dependencies before every package uses them.
package tools

import (
	_ "github.com/EventStore/EventStore-Client-Go/v4/esdb"
	_ "github.com/IBM/sarama"
	_ "github.com/ThreeDotsLabs/watermill"
	_ "github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	_ "github.com/google/uuid"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/twmb/franz-go/pkg/kfake"
	_ "go.etcd.io/bbolt"
	_ "google.golang.org/grpc"
	_ "modernc.org/sqlite"
)
