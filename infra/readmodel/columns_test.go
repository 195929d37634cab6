package readmodel

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"rxflow/projections"
)

// The table the migrations build is the declared one, column by column.
func TestSchemaMatchesColumns(t *testing.T) {
	s := openInternal(t)
	rows, err := s.db.Query("SELECT name, type, \"notnull\", pk FROM pragma_table_info('prescriptions') ORDER BY cid")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var name, typ string
		var notNull, pk bool
		if err := rows.Scan(&name, &typ, &notNull, &pk); err != nil {
			t.Fatal(err)
		}
		if notNull {
			typ += " NOT NULL"
		}
		if pk {
			typ += " PRIMARY KEY"
		}
		got = append(got, name+" "+typ)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, c := range prescriptionColumns {
		want = append(want, c.name+" "+c.typ)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("table prescriptions\n got %s\nwant %s", strings.Join(got, ", "), strings.Join(want, ", "))
	}
}

// Every field of a Row, each with a value of its own, is written by the
// upsert and by the bulk INSERT and comes back from the SELECT unchanged: a
// Row field without a column, or a column read into the wrong field, fails.
func TestEveryColumnRoundTrips(t *testing.T) {
	ctx := context.Background()
	var want projections.Row
	n := 1
	fill(t, reflect.ValueOf(&want).Elem(), &n)

	s := openInternal(t)
	args, err := appendRowArgs(nil, &want)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // insert, then update
		if _, err := s.upsert.ExecContext(ctx, args...); err != nil {
			t.Fatal(err)
		}
		if got, err := s.Get(ctx, want.URN); err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("after upsert, Get = %+v, %v\nwant %+v", got, err, want)
		}
	}

	bulk := openInternal(t)
	if err := bulk.BulkLoad(ctx, []projections.Row{want}, nil, 1); err != nil {
		t.Fatal(err)
	}
	page, err := bulk.List(ctx, projections.Filter{})
	if err != nil || len(page.Rows) != 1 || !reflect.DeepEqual(page.Rows[0], want) {
		t.Fatalf("after bulk load, List = %+v, %v\nwant %+v", page.Rows, err, want)
	}
}

// fill sets every field below v to a value no other field has.
func fill(t *testing.T, v reflect.Value, n *int) {
	t.Helper()
	if v.Type() == reflect.TypeFor[time.Time]() {
		*n++
		v.Set(reflect.ValueOf(time.Date(2026, 1, 1, 0, 0, *n, *n, time.UTC)))
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		for i := range v.NumField() {
			fill(t, v.Field(i), n)
		}
		return
	case reflect.String:
		v.SetString(fmt.Sprintf("value-%d", *n))
	case reflect.Int:
		v.SetInt(int64(*n))
	case reflect.Uint64:
		v.SetUint(uint64(*n))
	default:
		t.Fatalf("fill: no value for a field of kind %s", v.Kind())
	}
	*n++
}

func openInternal(t *testing.T) *Store {
	t.Helper()
	s, err := Open("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
