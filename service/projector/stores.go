package projector

import (
	"context"
	"errors"
	"path/filepath"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"rxflow/infra/ledger"
	"rxflow/infra/postgres"
	"rxflow/infra/readmodel"
	"rxflow/projections"
)

// openEmbedded opens the stores of one instance in dir: the read model,
// the operations store and the access log in SQLite, the ledger in Pebble,
// all written under projections.Whole.
func openEmbedded(dir string) (st stores, err error) {
	var closers []func() error
	st.close = func() error {
		var errs []error
		for _, c := range closers {
			errs = append(errs, c())
		}
		return errors.Join(errs...)
	}
	defer func() {
		if err != nil {
			_ = st.close()
		}
	}()
	led, err := ledger.Open(filepath.Join(dir, "ledger"))
	if err != nil {
		return st, err
	}
	closers = append(closers, led.Close)
	rm, err := readmodel.Open(filepath.Join(dir, "readmodel.db"))
	if err != nil {
		return st, err
	}
	closers = append(closers, rm.Close)
	access, err := readmodel.OpenAccessLog(filepath.Join(dir, readmodel.AccessLogFile))
	if err != nil {
		return st, err
	}
	closers = append(closers, access.Close)
	ops, err := readmodel.OpenOperations(filepath.Join(dir, "operations.db"))
	if err != nil {
		return st, err
	}
	closers = append(closers, ops.Close)
	st.queries, st.ledger, st.ops, st.accessLog = rm, led, ops, access
	st.bound = func(projections.Lease) (projections.ReadModel, projections.Ledger) { return rm, led }
	return st, nil
}

// openPostgres opens the stores the instances share on cfg.Database, and
// this instance's segment leases. The schema is migrated first (once, by
// whichever instance comes first); a database of another segment count is
// refused.
func openPostgres(cfg Segments) (stores, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db, err := postgres.Open(ctx, cfg.Database, postgres.IdleInTransactionTimeout(cfg.LeaseTTL/2))
	if err != nil {
		return stores{}, err
	}
	leases, err := db.Leases(ctx, cfg.InstanceID, cfg.Count, cfg.LeaseTTL)
	if err != nil {
		db.Close()
		return stores{}, err
	}
	access := db.AccessLog()
	return stores{
		queries: db.Queries(), ledger: db.Ledger(projections.Whole), ops: db.Operations(), accessLog: access,
		bound: func(l projections.Lease) (projections.ReadModel, projections.Ledger) {
			return db.ReadModel(l), db.Ledger(l)
		},
		leases: leases, lowestCheckpoint: db.LowestCheckpoint,
		close: func() error {
			err := access.Close()
			db.Close()
			return err
		},
	}, nil
}

// registerSegmentMetrics exports, per segment, whether this instance holds
// it and how far its projectors are behind, and the lease renewals and
// takeovers of this instance.
func (s *Service) registerSegmentMetrics(reg prometheus.Registerer) {
	for seg := range s.cfg.Segments.Count {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "rxflow_segment_owned",
			ConstLabels: prometheus.Labels{"segment": strconv.Itoa(seg)},
			Help:        "1 while this instance holds the segment's lease."},
			func() float64 {
				if s.coord.Holds(seg) {
					return 1
				}
				return 0
			}))
	}
	reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "rxflow_segment_lease_renewals_total",
			Help: "Segment leases renewed by this instance."}, func() float64 { return float64(s.coord.Renewals()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "rxflow_segment_takeovers_total",
			Help: "Segments this instance claimed from an instance whose lease had expired."}, func() float64 { return float64(s.coord.Takeovers()) }),
		segmentLag{s},
	)
}

var (
	segmentLagEvents = prometheus.NewDesc("rxflow_segment_lag_events",
		"Events stored after the position of the segment's slowest projector (those of every segment: it reads them all), for the segments this instance holds.",
		[]string{"segment"}, nil)
	segmentLagSeconds = prometheus.NewDesc("rxflow_segment_lag_seconds",
		"Age of the oldest event the segment's slowest projector has not passed, for the segments this instance holds.",
		[]string{"segment"}, nil)
)

// segmentLag collects the lag of each segment held, at scrape time.
type segmentLag struct{ s *Service }

func (c segmentLag) Describe(ch chan<- *prometheus.Desc) {
	ch <- segmentLagEvents
	ch <- segmentLagSeconds
}

func (c segmentLag) Collect(ch chan<- prometheus.Metric) {
	for _, l := range c.s.coord.Held() {
		var behind int
		var age float64
		for _, r := range c.s.coord.Runners(l.Segment) {
			n, a := c.s.lag.Lag(r.Name())
			behind, age = max(behind, n), max(age, a.Seconds())
		}
		seg := strconv.Itoa(l.Segment)
		ch <- prometheus.MustNewConstMetric(segmentLagEvents, prometheus.GaugeValue, float64(behind), seg)
		ch <- prometheus.MustNewConstMetric(segmentLagSeconds, prometheus.GaugeValue, age, seg)
	}
}
