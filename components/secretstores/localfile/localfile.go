// Package localfile is the secretstores.local.file component: secrets read
// once, at Init, from a JSON file. It is meant for development, where a
// secret store without infrastructure lets the same Component YAML (with
// secretKeyRef and auth.secretStore) run on a laptop and in production.
//
// The file is read as Dapr reads it, so existing secrets files keep working:
//
//   - multiValued=false (default): the whole document is flattened; nested
//     objects and arrays become keys joined by nestedSeparator (default ":"),
//     e.g. {"db": {"user": "u"}} is the secret "db:user" = {"db:user": "u"}.
//   - multiValued=true: each top-level key is one secret; an object value
//     becomes the secret's key/value pairs (flattened below the first
//     level), a scalar value becomes {name: value}.
//
// Numbers keep their JSON spelling, booleans are "true"/"false" and null is
// the empty string. Unlike Dapr, two JSON paths that flatten to the same key
// are an Init error rather than a silent overwrite.
package localfile

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/secretstores"
)

// Store is the local file secret store.
type Store struct {
	log      *slog.Logger
	features []secretstores.Feature
	// secrets is built in Init and read-only afterwards, so reads need no
	// lock.
	secrets map[string]map[string]string
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

// metadata is the component configuration.
type metadata struct {
	// SecretsFile is the path of the JSON file (required).
	SecretsFile string
	// NestedSeparator joins the keys of nested objects (default ":").
	NestedSeparator string
	// MultiValued makes each top-level key one secret with several
	// key/value pairs.
	MultiValued bool
}

func parseMetadata(md components.Metadata) (metadata, error) {
	m := metadata{
		SecretsFile:     md.String("secretsFile", ""),
		NestedSeparator: md.String("nestedSeparator", ":"),
	}
	if m.SecretsFile == "" {
		return m, errors.New("metadata secretsFile is required: the path of a JSON file holding the secrets")
	}
	var err error
	if m.MultiValued, err = md.Bool("multiValued", false); err != nil {
		return m, err
	}
	return m, nil
}

// Init reads and flattens the secrets file.
func (s *Store) Init(_ context.Context, md components.Metadata) error {
	m, err := parseMetadata(md)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(m.SecretsFile)
	if err != nil {
		return fmt.Errorf("reading secretsFile: %w", err)
	}
	secrets, err := Parse(data, m.NestedSeparator, m.MultiValued)
	if err != nil {
		return fmt.Errorf("secretsFile %s: %w", m.SecretsFile, err)
	}
	s.secrets = secrets
	s.features = nil
	if m.MultiValued {
		s.features = []secretstores.Feature{secretstores.FeatureMultipleKeyValues}
	}
	s.log.Debug("secrets file loaded", "file", m.SecretsFile, "secrets", len(secrets), "multiValued", m.MultiValued)
	return nil
}

// Features reports FeatureMultipleKeyValues when multiValued is set.
func (s *Store) Features() []secretstores.Feature { return s.features }

// Get returns a copy of the secret name.
func (s *Store) Get(_ context.Context, req secretstores.GetRequest) (map[string]string, error) {
	kv, ok := s.secrets[req.Name]
	if !ok {
		return nil, fmt.Errorf("secret %s: %w", req.Name, secretstores.ErrNotFound)
	}
	return copyMap(kv), nil
}

// BulkGet returns a copy of every secret.
func (s *Store) BulkGet(context.Context, secretstores.BulkGetRequest) (map[string]map[string]string, error) {
	out := make(map[string]map[string]string, len(s.secrets))
	for n, kv := range s.secrets {
		out[n] = copyMap(kv)
	}
	return out, nil
}

// Close does nothing: the file is not kept open.
func (s *Store) Close() error { return nil }

func copyMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Parse turns a secrets file into secrets by name, with Dapr's flattening
// rules (see the package documentation).
func Parse(data []byte, sep string, multiValued bool) (map[string]map[string]string, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("invalid JSON (want an object at the top level): %w", err)
	}
	if doc == nil {
		return nil, errors.New("invalid JSON: want an object at the top level, got null")
	}
	if dec.More() {
		return nil, errors.New("invalid JSON: more than one value in the file")
	}
	out := make(map[string]map[string]string, len(doc))
	if !multiValued {
		flat := map[string]string{}
		if err := flatten(flat, "", sep, doc); err != nil {
			return nil, err
		}
		for k, v := range flat {
			out[k] = map[string]string{k: v}
		}
		return out, nil
	}
	for name, v := range doc {
		switch v := v.(type) {
		case map[string]any:
			kv := map[string]string{}
			if err := flatten(kv, "", sep, v); err != nil {
				return nil, fmt.Errorf("secret %q: %w", name, err)
			}
			out[name] = kv
		case []any:
			kv := map[string]string{}
			if err := flatten(kv, "", sep, v); err != nil {
				return nil, fmt.Errorf("secret %q: %w", name, err)
			}
			out[name] = kv
		default:
			out[name] = map[string]string{name: scalar(v)}
		}
	}
	return out, nil
}

// flatten adds the leaves of v to dst under keys joined by sep.
func flatten(dst map[string]string, path, sep string, v any) error {
	join := func(k string) string {
		if path == "" {
			return k
		}
		return path + sep + k
	}
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			if err := flatten(dst, join(k), sep, e); err != nil {
				return err
			}
		}
	case []any:
		for i, e := range v {
			if err := flatten(dst, join(strconv.Itoa(i)), sep, e); err != nil {
				return err
			}
		}
	default:
		if _, dup := dst[path]; dup {
			return fmt.Errorf("two values flatten to the key %q (nestedSeparator %q)", path, sep)
		}
		dst[path] = scalar(v)
	}
	return nil
}

// scalar renders a JSON leaf as a secret value.
func scalar(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case json.Number:
		return v.String()
	case bool:
		return strconv.FormatBool(v)
	case nil:
		return ""
	}
	return strings.TrimSpace(fmt.Sprint(v))
}
