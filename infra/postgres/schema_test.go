package postgres_test

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"rxflow/infra/readmodel"
)

// The prescriptions table the migrations build is the one infra/readmodel
// declares, column by column (name, type, NULL or not, primary key), so a
// column added there without its migration here fails.
func TestPrescriptionsTableMatchesTheDeclaredColumns(t *testing.T) {
	db := openDB(t)
	rows, err := db.Pool().Query(context.Background(), `SELECT c.column_name, upper(c.data_type), c.is_nullable = 'NO',
		EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
			WHERE i.indrelid = 'prescriptions'::regclass AND i.indisprimary AND a.attname = c.column_name),
		COALESCE(c.collation_name, '')
		FROM information_schema.columns c WHERE c.table_name = 'prescriptions' AND c.table_schema = current_schema()
		ORDER BY c.ordinal_position`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var name, typ, collation string
		var notNull, pk bool
		if err := rows.Scan(&name, &typ, &notNull, &pk, &collation); err != nil {
			t.Fatal(err)
		}
		switch {
		case pk:
			typ += " PRIMARY KEY"
			if collation != "C" {
				t.Errorf("the key %s sorts by collation %q, not bytewise (C) as in SQLite", name, collation)
			}
		case notNull:
			typ += " NOT NULL"
		}
		got = append(got, name+" "+typ)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, c := range readmodel.Columns() {
		want = append(want, c.Name+" "+c.Type)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("table prescriptions\n got %s\nwant %s", strings.Join(got, ", "), strings.Join(want, ", "))
	}
}
