// Package secretstorestest is the conformance suite every secret store runs
// from its own tests:
//
//	func TestConformance(t *testing.T) {
//		secretstorestest.Run(t, func(t *testing.T, secrets secretstorestest.Secrets) secretstores.Store {
//			// write secrets into the backend, then:
//			return newInitialisedStore(t)
//		})
//	}
//
// Secret stores are read-only, so the suite cannot write its own fixtures:
// it hands the secrets it expects to the store's test, which seeds the
// backend (a JSON file, environment variables, a fake cluster) and returns
// an initialised store. The shapes it asks for follow the store's Features:
// every store gets single-valued secrets ({name: value}); stores declaring
// FeatureMultipleKeyValues are built a second time with multi-valued ones.
// Names are unique per run and use only lowercase letters and digits, which
// every backend accepts (environment variables, Kubernetes object names).
package secretstorestest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/mecha-dev/mecha/components/secretstores"
)

// Secrets are secrets by name, each a map of key to value.
type Secrets map[string]map[string]string

// NewFunc seeds the backend with secrets and returns an initialised store
// that holds them (and possibly others: bulk reads are checked for a
// superset). It should register its own cleanup (t.Cleanup) to close the
// store and remove what it seeded.
type NewFunc func(t *testing.T, secrets Secrets) secretstores.Store

// Run runs the whole suite against stores built by newStore.
func Run(t *testing.T, newStore NewFunc) {
	t.Helper()
	id := strconv.FormatInt(time.Now().UnixNano(), 36)
	name := func(s string) string { return "sst" + id + s }

	single := Secrets{
		name("plain"):   {name("plain"): "s3cr3t"},
		name("unicode"): {name("unicode"): "pässwörd ✓ 秘密"},
		name("symbols"): {name("symbols"): "a=b;c:d \"quoted\" \\ /path?x&y#z"},
		name("lines"):   {name("lines"): "line one\nline two\n"},
		name("empty"):   {name("empty"): ""},
	}
	s := newStore(t, single)
	features := s.Features()
	multi := secretstores.Has(features, secretstores.FeatureMultipleKeyValues)

	t.Run("get", func(t *testing.T) { testGet(t, s, single) })
	t.Run("missing secret", func(t *testing.T) { testMissing(t, s, name("nope")) })
	t.Run("bulk get", func(t *testing.T) { testBulk(t, s, single, multi) })
	t.Run("request metadata is accepted", func(t *testing.T) {
		n := name("plain")
		got, err := s.Get(ctx(t), secretstores.GetRequest{Name: n, Metadata: map[string]string{"unknownOption": "x"}})
		if err != nil {
			t.Fatalf("Get(%q) with unknown metadata: %v", n, err)
		}
		if !maps.Equal(got, single[n]) {
			t.Fatalf("Get(%q) = %v, want %v", n, got, single[n])
		}
	})
	t.Run("concurrent reads", func(t *testing.T) { testConcurrent(t, s, single) })
	if multi {
		t.Run("multiple key values", func(t *testing.T) {
			secrets := Secrets{
				name("db"):   {"username": "admin", "password": "pa:ss", "host": "db.local"},
				name("api"):  {"token": "t0k3n"},
				name("both"): {"user": "u", "password": "p"},
			}
			ms := newStore(t, secrets)
			testGet(t, ms, secrets)
			testBulk(t, ms, secrets, true)
			testMissing(t, ms, name("nope"))
		})
	}
	t.Run("close is idempotent", func(t *testing.T) {
		cs := newStore(t, Secrets{name("close"): {name("close"): "v"}})
		if err := cs.Close(); err != nil {
			t.Fatalf("first Close: %v", err)
		}
		if err := cs.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
	})
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func testGet(t *testing.T, s secretstores.Store, secrets Secrets) {
	t.Helper()
	for _, n := range sortedNames(secrets) {
		got, err := s.Get(ctx(t), secretstores.GetRequest{Name: n})
		if err != nil {
			t.Errorf("Get(%q): %v", n, err)
			continue
		}
		if !maps.Equal(got, secrets[n]) {
			t.Errorf("Get(%q) = %q, want %q", n, got, secrets[n])
		}
	}
}

func testMissing(t *testing.T, s secretstores.Store, name string) {
	t.Helper()
	got, err := s.Get(ctx(t), secretstores.GetRequest{Name: name})
	if !errors.Is(err, secretstores.ErrNotFound) {
		t.Fatalf("Get(%q) = %v, %v; want an error wrapping ErrNotFound", name, got, err)
	}
}

// testBulk checks that a bulk read holds every seeded secret with its exact
// data (the backend may hold others), and that a single-valued store only
// returns {name: value} shapes.
func testBulk(t *testing.T, s secretstores.Store, secrets Secrets, multi bool) {
	t.Helper()
	all, err := s.BulkGet(ctx(t), secretstores.BulkGetRequest{})
	if err != nil {
		t.Fatalf("BulkGet: %v", err)
	}
	for _, n := range sortedNames(secrets) {
		got, ok := all[n]
		if !ok {
			t.Errorf("BulkGet has no secret %q (%d secrets returned)", n, len(all))
			continue
		}
		if !maps.Equal(got, secrets[n]) {
			t.Errorf("BulkGet[%q] = %q, want %q", n, got, secrets[n])
		}
	}
	if multi {
		return
	}
	for n, kv := range all {
		if _, ok := kv[n]; len(kv) != 1 || !ok {
			t.Errorf("store without %s returned secret %q as %q, want exactly {%q: value}", secretstores.FeatureMultipleKeyValues, n, kv, n)
		}
	}
}

func testConcurrent(t *testing.T, s secretstores.Store, secrets Secrets) {
	t.Helper()
	names := sortedNames(secrets)
	errs := make(chan error, 8*len(names))
	for range 8 {
		for _, n := range names {
			go func() {
				got, err := s.Get(ctx(t), secretstores.GetRequest{Name: n})
				if err == nil && !maps.Equal(got, secrets[n]) {
					err = fmt.Errorf("Get(%q) = %q, want %q", n, got, secrets[n])
				}
				errs <- err
			}()
		}
	}
	for range 8 * len(names) {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

func sortedNames(s Secrets) []string {
	out := make([]string, 0, len(s))
	for n := range s {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
