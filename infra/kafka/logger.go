package kafka

import (
	"context"
	"log/slog"

	"github.com/ThreeDotsLabs/watermill"
)

// NewLogger returns Watermill's slog adapter for log, which first asks log
// whether Debug and Trace are enabled: Watermill's own adapter turns every
// message's fields into attributes before the level check, on each
// message Watermill's router and subscriber handle. A nil log logs to
// slog.Default().
func NewLogger(log *slog.Logger) watermill.LoggerAdapter {
	if log == nil {
		log = slog.Default()
	}
	return levelGate{LoggerAdapter: watermill.NewSlogLogger(log), log: log}
}

type levelGate struct {
	watermill.LoggerAdapter
	log *slog.Logger
}

func (g levelGate) Debug(msg string, fields watermill.LogFields) {
	if g.log.Enabled(context.Background(), slog.LevelDebug) {
		g.LoggerAdapter.Debug(msg, fields)
	}
}

func (g levelGate) Trace(msg string, fields watermill.LogFields) {
	if g.log.Enabled(context.Background(), watermill.LevelTrace) {
		g.LoggerAdapter.Trace(msg, fields)
	}
}

// With keeps the gate: fields do not change which levels log is enabled for.
func (g levelGate) With(fields watermill.LogFields) watermill.LoggerAdapter {
	return levelGate{LoggerAdapter: g.LoggerAdapter.With(fields), log: g.log}
}
