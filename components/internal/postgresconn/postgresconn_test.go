package postgresconn

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/internal/props"
)

func reader(kv ...string) *props.Reader {
	p := map[string]string{}
	for i := 0; i < len(kv); i += 2 {
		p[kv[i]] = kv[i+1]
	}
	return props.New(components.Metadata{Properties: p}, Unit)
}

func TestParse(t *testing.T) {
	r := reader("url", " host=db ", "timeoutInSeconds", "5")
	s := Parse(r, "connectionString", "url")
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	if s.ConnectionString != "host=db" || s.Timeout != 5*time.Second {
		t.Fatalf("settings = %+v", s)
	}
	r = reader()
	if s := Parse(r); s.Timeout != DefaultTimeout {
		t.Errorf("default timeout = %v", s.Timeout)
	}
	for _, want := range []string{"metadata connectionString is required"} {
		if err := r.Err(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Err = %v, want %s", err, want)
		}
	}
	r = reader("connectionString", "host=x", "timeout", "0")
	Parse(r)
	if err := r.Err(); err == nil || !strings.Contains(err.Error(), "metadata timeout must be positive, got 0s") {
		t.Errorf("Err = %v", err)
	}
}

func TestTable(t *testing.T) {
	tests := []struct {
		name, want, err string
	}{
		{"State", `"state"`, ""},
		{"App.My_State", `"app"."my_state"`, ""},
		{"a.b.c", "", `metadata tableName "a.b.c": want table or schema.table`},
		{"x; drop table y", "", `metadata tableName "x; drop table y" is not a plain identifier`},
		{"s.1x", "", `metadata tableName "s.1x": "1x" is not a plain identifier`},
		{strings.Repeat("x", 64), "", "at most 63 bytes"},
	}
	for _, tt := range tests {
		r := reader("TABLENAME", tt.name)
		got := Table(r, "def", "tableName")
		err := r.Err()
		switch {
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("Table(%q) error = %v, want %s", tt.name, err, tt.err)
		case tt.err == "" && (err != nil || got.Sanitize() != tt.want):
			t.Errorf("Table(%q) = %s, %v; want %s", tt.name, got.Sanitize(), err, tt.want)
		}
	}
	if got := Table(reader(), "locks", "tableName"); got.Sanitize() != `"locks"` {
		t.Errorf("default table = %s", got.Sanitize())
	}
}

func TestOpenErrors(t *testing.T) {
	if _, err := (Settings{ConnectionString: "postgres://u:s3cret@host:notaport/db", Timeout: time.Second}).Connect(context.Background(), nil); err == nil ||
		!strings.Contains(err.Error(), "invalid connectionString") || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("Connect(unparsable) = %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	s := Settings{ConnectionString: "postgres://u:s3cret@" + dead + "/db?sslmode=disable", Timeout: 2 * time.Second}
	start := time.Now()
	_, err = s.Connect(context.Background(), nil)
	if err == nil || !strings.Contains(err.Error(), `cannot connect to `+dead+` as "u"`) || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("Connect(refused) = %v", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("Connect took %v with a 2s timeout", time.Since(start))
	}
}
