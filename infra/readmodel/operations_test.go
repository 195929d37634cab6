package readmodel_test

import (
	"path/filepath"
	"testing"

	"rxflow/infra/opstest"
	"rxflow/infra/readmodel"
)

// The operations store's suite on SQLite: each instance opens the same file.
func TestOperations(t *testing.T) {
	opstest.RunOperations(t, func(t *testing.T) func() opstest.Operations {
		path := filepath.Join(t.TempDir(), "operations.db")
		return func() opstest.Operations {
			o, err := readmodel.OpenOperations(path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = o.Close() })
			return o
		}
	})
}
