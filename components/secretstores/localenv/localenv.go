// Package localenv is the secretstores.local.env component: the process's
// environment variables as secrets, each {name: value}. It lets a
// development setup or a container platform that injects secrets as
// environment variables feed secretKeyRef and the secrets API without a
// secret server.
//
// As in Dapr, metadata "prefix" limits the store to variables starting with
// it (case-sensitive, except on Windows) and strips it from secret names,
// and variables the sidecar itself is configured with (DAPR_* and
// APP_API_TOKEN) are never exposed. Unlike Dapr, which answers an unset
// variable with an empty value, Get of an unset (or withheld) variable
// fails with ErrNotFound, so a secretKeyRef to a typo cannot silently
// resolve to "".
package localenv

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strings"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/secretstores"
)

// Store is the environment variable secret store.
type Store struct {
	log    *slog.Logger
	prefix string
}

var _ secretstores.Store = (*Store)(nil)

// New returns an uninitialised store.
func New(deps components.Deps) secretstores.Store {
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Store{log: log}
}

// Init reads metadata prefix (optional).
func (s *Store) Init(_ context.Context, md components.Metadata) error {
	s.prefix, _ = md.Get("prefix")
	return nil
}

// Features is empty: every secret holds one value.
func (s *Store) Features() []secretstores.Feature { return nil }

// Get returns {name: value} for the variable prefix+name.
func (s *Store) Get(_ context.Context, req secretstores.GetRequest) (map[string]string, error) {
	if req.Name == "" {
		return nil, fmt.Errorf("empty secret name: %w", secretstores.ErrNotFound)
	}
	v := s.prefix + req.Name
	if reserved(v) {
		s.log.Warn("access to a reserved environment variable refused", "name", v)
		return nil, fmt.Errorf("environment variable %s is reserved for the sidecar and not exposed: %w", v, secretstores.ErrNotFound)
	}
	val, ok := os.LookupEnv(v)
	if !ok {
		return nil, fmt.Errorf("environment variable %s is not set: %w", v, secretstores.ErrNotFound)
	}
	return map[string]string{req.Name: val}, nil
}

// BulkGet returns every exposed variable with the prefix, by name without
// the prefix.
func (s *Store) BulkGet(context.Context, secretstores.BulkGetRequest) (map[string]map[string]string, error) {
	env := os.Environ()
	out := make(map[string]map[string]string, len(env))
	for _, kv := range env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			continue // Windows keeps "=C:=C:\\" style entries
		}
		name, ok := s.strip(k)
		if !ok || reserved(k) {
			continue
		}
		out[name] = map[string]string{name: v}
	}
	return out, nil
}

// strip removes the prefix from the variable name k; ok is false when k
// does not have it or is nothing but the prefix.
func (s *Store) strip(k string) (string, bool) {
	if s.prefix == "" {
		return k, true
	}
	if len(k) <= len(s.prefix) {
		return "", false
	}
	head := k[:len(s.prefix)]
	if head == s.prefix || (runtime.GOOS == "windows" && strings.EqualFold(head, s.prefix)) {
		return k[len(s.prefix):], true
	}
	return "", false
}

// reserved reports whether a variable belongs to the sidecar's own
// configuration and must not be readable through the API.
func reserved(name string) bool {
	u := strings.ToUpper(name)
	return u == "APP_API_TOKEN" || strings.HasPrefix(u, "DAPR_")
}

// Close does nothing.
func (s *Store) Close() error { return nil }
