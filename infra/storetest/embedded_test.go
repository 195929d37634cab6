package storetest_test

import (
	"path/filepath"
	"testing"

	"rxflow/infra/ledger"
	"rxflow/infra/readmodel"
	"rxflow/infra/storetest"
	"rxflow/projections"
)

// The embedded stores: the SQLite read model (a file, as the projector
// keeps it) and the Pebble ledger, both the single Whole lease.
func TestEmbeddedReadModel(t *testing.T) {
	storetest.RunReadModel(t, func(t *testing.T) storetest.ReadModel {
		s, err := readmodel.Open(filepath.Join(t.TempDir(), "readmodel.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return storetest.ReadModel{Writer: s, Queries: s}
	})
}

func TestEmbeddedLedger(t *testing.T) {
	storetest.RunLedger(t, func(t *testing.T) projections.Ledger {
		l, err := ledger.Open(filepath.Join(t.TempDir(), "ledger"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		return l
	})
}
