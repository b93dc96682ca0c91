package localfile_test

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/secretstores"
	"github.com/mecha-dev/mecha/components/secretstores/localfile"
	"github.com/mecha-dev/mecha/components/secretstores/secretstorestest"
)

// writeFile writes content to a fresh file and returns its path.
func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "secrets.json")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func newStore(t *testing.T, props map[string]string) (secretstores.Store, error) {
	t.Helper()
	s := localfile.New(components.Deps{})
	err := s.Init(context.Background(), components.Metadata{Name: "secretstore", Type: "secretstores.local.file", Properties: props})
	if err == nil {
		t.Cleanup(func() { s.Close() })
	}
	return s, err
}

func TestConformance(t *testing.T) {
	for _, multi := range []bool{false, true} {
		t.Run("multiValued="+strconv.FormatBool(multi), func(t *testing.T) {
			secretstorestest.Run(t, func(t *testing.T, secrets secretstorestest.Secrets) secretstores.Store {
				doc := map[string]any{}
				for name, kv := range secrets {
					if v, ok := kv[name]; ok && len(kv) == 1 {
						doc[name] = v
					} else {
						doc[name] = kv
					}
				}
				b, err := json.Marshal(doc)
				if err != nil {
					t.Fatal(err)
				}
				s, err := newStore(t, map[string]string{"secretsFile": writeFile(t, string(b)), "multiValued": strconv.FormatBool(multi)})
				if err != nil {
					t.Fatalf("Init: %v", err)
				}
				return s
			})
		})
	}
}

const nested = `{
  "redisPassword": "your redis password",
  "connectionStrings": {
    "sql": "your sql connection string",
    "mysql": "your mysql connection string",
    "deep": {"a": "x"}
  },
  "hosts": ["h1", {"name": "h2"}],
  "port": 6379,
  "ratio": 1.5e3,
  "enabled": true,
  "nothing": null
}`

func TestFlattening(t *testing.T) {
	tests := []struct {
		name  string
		props map[string]string
		want  map[string]map[string]string
	}{
		{
			name:  "single-valued flattens with colon",
			props: map[string]string{},
			want: map[string]map[string]string{
				"redisPassword":           {"redisPassword": "your redis password"},
				"connectionStrings:sql":   {"connectionStrings:sql": "your sql connection string"},
				"connectionStrings:mysql": {"connectionStrings:mysql": "your mysql connection string"},
				"connectionStrings:deep:a": {
					"connectionStrings:deep:a": "x",
				},
				"hosts:0":      {"hosts:0": "h1"},
				"hosts:1:name": {"hosts:1:name": "h2"},
				"port":         {"port": "6379"},
				"ratio":        {"ratio": "1.5e3"},
				"enabled":      {"enabled": "true"},
				"nothing":      {"nothing": ""},
			},
		},
		{
			name:  "custom separator",
			props: map[string]string{"nestedSeparator": "."},
			want: map[string]map[string]string{
				"redisPassword":            {"redisPassword": "your redis password"},
				"connectionStrings.sql":    {"connectionStrings.sql": "your sql connection string"},
				"connectionStrings.mysql":  {"connectionStrings.mysql": "your mysql connection string"},
				"connectionStrings.deep.a": {"connectionStrings.deep.a": "x"},
				"hosts.0":                  {"hosts.0": "h1"},
				"hosts.1.name":             {"hosts.1.name": "h2"},
				"port":                     {"port": "6379"},
				"ratio":                    {"ratio": "1.5e3"},
				"enabled":                  {"enabled": "true"},
				"nothing":                  {"nothing": ""},
			},
		},
		{
			name:  "multi-valued keeps one level",
			props: map[string]string{"multiValued": "true"},
			want: map[string]map[string]string{
				"redisPassword": {"redisPassword": "your redis password"},
				"connectionStrings": {
					"sql":    "your sql connection string",
					"mysql":  "your mysql connection string",
					"deep:a": "x",
				},
				"hosts":   {"0": "h1", "1:name": "h2"},
				"port":    {"port": "6379"},
				"ratio":   {"ratio": "1.5e3"},
				"enabled": {"enabled": "true"},
				"nothing": {"nothing": ""},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			props := map[string]string{"secretsFile": writeFile(t, nested)}
			maps.Copy(props, tc.props)
			s, err := newStore(t, props)
			if err != nil {
				t.Fatalf("Init: %v", err)
			}
			all, err := s.BulkGet(context.Background(), secretstores.BulkGetRequest{})
			if err != nil {
				t.Fatal(err)
			}
			if !maps.EqualFunc(all, tc.want, maps.Equal) {
				t.Errorf("BulkGet =\n%v\nwant\n%v", all, tc.want)
			}
			for name, want := range tc.want {
				got, err := s.Get(context.Background(), secretstores.GetRequest{Name: name})
				if err != nil || !maps.Equal(got, want) {
					t.Errorf("Get(%q) = %v, %v; want %v", name, got, err, want)
				}
			}
			// The nested object itself is not a secret when flattened.
			if _, multi := tc.props["multiValued"]; !multi {
				if _, err := s.Get(context.Background(), secretstores.GetRequest{Name: "connectionStrings"}); !errors.Is(err, secretstores.ErrNotFound) {
					t.Errorf("Get(connectionStrings) error = %v, want ErrNotFound", err)
				}
			}
			wantMulti := tc.props["multiValued"] == "true"
			if got := secretstores.Has(s.Features(), secretstores.FeatureMultipleKeyValues); got != wantMulti {
				t.Errorf("Features() = %v, want multi-valued %v", s.Features(), wantMulti)
			}
		})
	}
}

func TestReturnedMapsAreCopies(t *testing.T) {
	s, err := newStore(t, map[string]string{"secretsFile": writeFile(t, `{"a":"1"}`)})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := s.Get(context.Background(), secretstores.GetRequest{Name: "a"})
	got["a"] = "changed"
	all, _ := s.BulkGet(context.Background(), secretstores.BulkGetRequest{})
	all["a"]["a"] = "changed"
	again, _ := s.Get(context.Background(), secretstores.GetRequest{Name: "a"})
	if again["a"] != "1" {
		t.Fatalf("store data changed through a returned map: %v", again)
	}
}

func TestInitErrors(t *testing.T) {
	tests := []struct {
		name    string
		props   map[string]string
		file    string // content written to secretsFile when set
		wantErr string
	}{
		{name: "no secretsFile", props: map[string]string{}, wantErr: "secretsFile is required"},
		{name: "missing file", props: map[string]string{"secretsFile": "/nonexistent/secrets.json"}, wantErr: "no such file"},
		{name: "not JSON", file: `not json`, wantErr: "invalid JSON"},
		{name: "array at top", file: `["a"]`, wantErr: "invalid JSON"},
		{name: "null at top", file: `null`, wantErr: "got null"},
		{name: "trailing data", file: `{"a":"1"} {"b":"2"}`, wantErr: "more than one value"},
		{name: "flattened duplicate", file: `{"a:b":"1","a":{"b":"2"}}`, wantErr: `flatten to the key "a:b"`},
		{name: "bad multiValued", file: `{}`, props: map[string]string{"multiValued": "maybe"}, wantErr: "not a boolean"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			props := map[string]string{}
			if tc.file != "" {
				props["secretsFile"] = writeFile(t, tc.file)
			}
			maps.Copy(props, tc.props)
			_, err := newStore(t, props)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Init error = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(nested), ":", false)
	f.Add([]byte(nested), ".", true)
	f.Add([]byte(`{"a":{"b":[1,2,{"c":null}]}}`), "::", true)
	f.Fuzz(func(t *testing.T, data []byte, sep string, multi bool) {
		secrets, err := localfile.Parse(data, sep, multi)
		if err != nil {
			return
		}
		for name, kv := range secrets {
			if !multi {
				if _, ok := kv[name]; !ok || len(kv) != 1 {
					t.Fatalf("single-valued secret %q = %v", name, kv)
				}
			}
		}
	})
}
