package readmodel_test

import (
	"database/sql"
	"path/filepath"
	"testing"

	"rxflow/infra/opstest"
	"rxflow/infra/readmodel"
)

// The access log's suite on SQLite: each instance opens the same file.
func TestAccessLog(t *testing.T) {
	opstest.RunAccessLog(t, func(t *testing.T) opstest.AccessStorage {
		path := filepath.Join(t.TempDir(), readmodel.AccessLogFile)
		return opstest.AccessStorage{
			Open: func() opstest.AccessLog {
				l, err := readmodel.OpenAccessLog(path)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = l.Close() })
				return l
			},
			Exec: func(stmt string) error {
				db, err := sql.Open("sqlite", path)
				if err != nil {
					t.Fatal(err)
				}
				defer db.Close()
				_, err = db.Exec(stmt)
				return err
			},
		}
	})
}

func openAccessLog(t testing.TB, path string) *readmodel.AccessLog {
	t.Helper()
	l, err := readmodel.OpenAccessLog(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}
