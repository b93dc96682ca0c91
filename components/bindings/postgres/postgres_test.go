package postgres_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/bindings"
	"github.com/mecha-dev/mecha/components/bindings/bindingstest"
	"github.com/mecha-dev/mecha/components/bindings/postgres"
)

func newBinding(t *testing.T, dsn string) bindings.Output {
	t.Helper()
	b := postgres.New(components.Deps{})
	if err := b.Init(context.Background(), components.Metadata{Name: "db", Type: "bindings.postgresql", Properties: map[string]string{"connectionString": dsn}}); err != nil {
		t.Fatalf("Init: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func TestConformance(t *testing.T) {
	dsn := bindingstest.ServiceEnv(t, "PG_DSN")
	table := fmt.Sprintf("bindingstest_pg_%d", time.Now().UnixNano())
	t.Cleanup(func() {
		b := newBinding(t, dsn)
		if _, err := b.Invoke(context.Background(), &bindings.InvokeRequest{Operation: "exec", Metadata: map[string]string{"sql": "DROP TABLE IF EXISTS " + table}}); err != nil {
			t.Errorf("dropping %s: %v", table, err)
		}
	})
	sql := func(op bindings.Operation, stmt, params string) bindings.InvokeRequest {
		md := map[string]string{"sql": strings.ReplaceAll(stmt, "{t}", table)}
		if params != "" {
			md["params"] = params
		}
		return bindings.InvokeRequest{Operation: op, Metadata: md}
	}
	timing := func(t *testing.T, r *bindings.InvokeResponse) {
		for _, k := range []string{"start-time", "end-time"} {
			if _, err := time.Parse(time.RFC3339Nano, r.Metadata[k]); err != nil {
				t.Errorf("metadata %s = %q: %v", k, r.Metadata[k], err)
			}
		}
		if _, err := time.ParseDuration(r.Metadata["duration"]); err != nil {
			t.Errorf("metadata duration = %q: %v", r.Metadata["duration"], err)
		}
	}
	cases := []bindingstest.OutputCase{
		{
			Name:         "create table",
			Request:      sql("exec", "CREATE TABLE {t} (id int PRIMARY KEY, name text, ok bool, doc jsonb, n numeric)", ""),
			WantMetadata: map[string]string{"rows-affected": "0", "operation": "exec"},
			Check:        timing,
		},
		{
			Name:         "insert with params",
			Request:      sql("exec", "INSERT INTO {t} (id, name, ok, doc, n) VALUES ($1, $2, $3, $4, $5)", `[1, "demo", true, {"x": [1, 2]}, 12.5]`),
			WantMetadata: map[string]string{"rows-affected": "1"},
		},
		{
			Name:         "insert hostile text as data",
			Request:      sql("exec", "INSERT INTO {t} (id, name) VALUES ($1, $2)", `[2, "x'); DROP TABLE {t}; --"]`),
			WantMetadata: map[string]string{"rows-affected": "1"},
		},
		{
			Name:         "query rows",
			Request:      sql("query", "SELECT id, name, ok, doc FROM {t} WHERE id <= $1 ORDER BY id", `[2]`),
			WantData:     []byte(`[[1,"demo",true,{"x":[1,2]}],[2,"x'); DROP TABLE {t}; --",null,null]]`),
			WantMetadata: map[string]string{"operation": "query"},
			Check:        timing,
		},
		{Name: "query no rows", Request: sql("query", "SELECT id FROM {t} WHERE id > 100", ""), WantData: []byte(`[]`)},
		{Name: "update", Request: sql("exec", "UPDATE {t} SET ok = $1", `[false]`), WantMetadata: map[string]string{"rows-affected": "2"}},
		{Name: "close is harmless", Request: sql("close", "", ""), NoContent: true},
		{Name: "still usable after close", Request: sql("query", "SELECT count(*) FROM {t} WHERE NOT ok", ""), WantData: []byte(`[[2]]`)},
		{Name: "missing sql", Request: bindings.InvokeRequest{Operation: "query", Metadata: map[string]string{}}, WantErr: `"sql" is required`},
		{Name: "params not an array", Request: sql("exec", "SELECT 1", `{"a":1}`), WantErr: `"params" must be a JSON array`},
		{Name: "sql error", Request: sql("query", "SELECT nope FROM {t}", ""), WantErr: "error executing"},
		{Name: "wrong param count", Request: sql("exec", "INSERT INTO {t} (id) VALUES ($1)", `[]`), WantErr: "error executing"},
	}
	bindingstest.RunOutput(t, func(t *testing.T) bindings.Output { return newBinding(t, dsn) }, bindingstest.OutputOptions{
		Operations: []bindings.Operation{"exec", "query", "close"},
		Cases:      cases,
	})
}

func TestInitErrors(t *testing.T) {
	tests := []struct {
		name  string
		props map[string]string
		want  string
	}{
		{"missing", map[string]string{}, `"connectionString" is required`},
		{"invalid", map[string]string{"connectionString": "postgres://u:secretpw@[::1"}, `"connectionString" is not a valid`},
		{"refused", map[string]string{"url": "postgres://u:p@127.0.0.1:1/db?connect_timeout=1", "timeout": "2"}, "127.0.0.1:1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := postgres.New(components.Deps{})
			defer b.Close()
			err := b.Init(context.Background(), components.Metadata{Properties: tt.props})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Init error = %v, want it to contain %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "secretpw") {
				t.Errorf("Init error leaks the password: %v", err)
			}
		})
	}
}
