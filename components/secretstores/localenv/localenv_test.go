package localenv_test

import (
	"context"
	"errors"
	"maps"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/secretstores"
	"github.com/mecha-dev/mecha/components/secretstores/localenv"
	"github.com/mecha-dev/mecha/components/secretstores/secretstorestest"
)

func newStore(t *testing.T, props map[string]string) secretstores.Store {
	t.Helper()
	s := localenv.New(components.Deps{})
	if err := s.Init(context.Background(), components.Metadata{Name: "envstore", Type: "secretstores.local.env", Properties: props}); err != nil {
		t.Fatalf("Init: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// uniquePrefix keeps this run's variables apart from the rest of the
// environment.
func uniquePrefix() string {
	return "MECHATEST" + strconv.FormatInt(time.Now().UnixNano(), 36) + "_"
}

func TestConformance(t *testing.T) {
	for _, withPrefix := range []bool{false, true} {
		t.Run("prefix="+strconv.FormatBool(withPrefix), func(t *testing.T) {
			secretstorestest.Run(t, func(t *testing.T, secrets secretstorestest.Secrets) secretstores.Store {
				prefix := ""
				props := map[string]string{}
				if withPrefix {
					prefix = uniquePrefix()
					props["prefix"] = prefix
				}
				for name, kv := range secrets {
					t.Setenv(prefix+name, kv[name])
				}
				return newStore(t, props)
			})
		})
	}
}

func TestPrefix(t *testing.T) {
	p := uniquePrefix()
	t.Setenv(p+"DB_PASSWORD", "pw")
	t.Setenv(p+"API_KEY", "k=v")
	t.Setenv(p, "only the prefix")
	t.Setenv("DB_PASSWORD", "unprefixed")
	s := newStore(t, map[string]string{"prefix": p})
	ctx := context.Background()

	all, err := s.BulkGet(ctx, secretstores.BulkGetRequest{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]map[string]string{
		"DB_PASSWORD": {"DB_PASSWORD": "pw"},
		"API_KEY":     {"API_KEY": "k=v"},
	}
	if !maps.EqualFunc(all, want, maps.Equal) {
		t.Fatalf("BulkGet = %v, want %v", all, want)
	}
	got, err := s.Get(ctx, secretstores.GetRequest{Name: "DB_PASSWORD"})
	if err != nil || !maps.Equal(got, map[string]string{"DB_PASSWORD": "pw"}) {
		t.Fatalf("Get(DB_PASSWORD) = %v, %v; want the prefixed variable", got, err)
	}
	if _, err := s.Get(ctx, secretstores.GetRequest{Name: p + "DB_PASSWORD"}); !errors.Is(err, secretstores.ErrNotFound) {
		t.Fatalf("Get(prefix+name) error = %v, want ErrNotFound (the prefix is added once)", err)
	}
}

func TestReservedVariablesAreHidden(t *testing.T) {
	t.Setenv("DAPR_API_TOKEN", "sidecar-token")
	t.Setenv("dapr_lowercase", "x")
	t.Setenv("APP_API_TOKEN", "app-token")
	t.Setenv("MECHATEST_VISIBLE", "yes")
	s := newStore(t, nil)
	ctx := context.Background()
	for _, name := range []string{"DAPR_API_TOKEN", "dapr_lowercase", "APP_API_TOKEN"} {
		if got, err := s.Get(ctx, secretstores.GetRequest{Name: name}); !errors.Is(err, secretstores.ErrNotFound) {
			t.Errorf("Get(%s) = %v, %v; want ErrNotFound", name, got, err)
		}
	}
	all, err := s.BulkGet(ctx, secretstores.BulkGetRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"DAPR_API_TOKEN", "dapr_lowercase", "APP_API_TOKEN"} {
		if _, ok := all[name]; ok {
			t.Errorf("BulkGet exposes %s", name)
		}
	}
	if all["MECHATEST_VISIBLE"]["MECHATEST_VISIBLE"] != "yes" {
		t.Errorf("BulkGet without prefix lacks MECHATEST_VISIBLE")
	}
	if len(all) < len(os.Environ())-3 {
		t.Errorf("BulkGet returned %d secrets for %d variables", len(all), len(os.Environ()))
	}
}

func TestEmptyName(t *testing.T) {
	s := newStore(t, nil)
	if _, err := s.Get(context.Background(), secretstores.GetRequest{}); !errors.Is(err, secretstores.ErrNotFound) {
		t.Fatalf("Get(\"\") error = %v, want ErrNotFound", err)
	}
}
