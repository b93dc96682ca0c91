// Package selfhosted owns Mecha's per-user home (~/.mecha, or $MECHA_HOME):
// the default resources that make `mecha run` work with zero infrastructure,
// the data directory of embedded components, and the local control plane
// that hosts the embedded broker behind the default pub/sub (start, find,
// stop: controlplane.go).
package selfhosted

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Home returns Mecha's home directory: $MECHA_HOME, else ~/.mecha.
func Home() (string, error) {
	if h := os.Getenv("MECHA_HOME"); h != "" {
		return h, nil
	}
	u, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("cannot find the home directory (set MECHA_HOME): %w", err)
	}
	return filepath.Join(u, ".mecha"), nil
}

// RegistryFile is the name resolution registry every sidecar of this user
// on the host shares (nameresolution.sqlite): <home>/nameresolution.db. It
// is used even with --resources-path, since apps must find each other
// whatever their resources; the resolver creates the directory.
func RegistryFile() (string, error) {
	home, err := Home()
	if err != nil {
		return "", err
	}
	return filepath.Join(home, "nameresolution.db"), nil
}

// Layout is where the defaults live under a home directory.
type Layout struct {
	Home       string
	Components string
	Data       string
	// Logs holds the logs of background processes (the local control
	// plane).
	Logs string
}

// LayoutAt returns the layout under home.
func LayoutAt(home string) Layout {
	return Layout{
		Home:       home,
		Components: filepath.Join(home, "components"),
		Data:       filepath.Join(home, "data"),
		Logs:       filepath.Join(home, "logs"),
	}
}

// File is one default file and whether EnsureDefaults created it.
type File struct {
	Path    string
	Created bool
	What    string
}

// EnsureDefaults creates the home layout and the default component files
// that are missing; existing files are never overwritten. The default
// "pubsub" points at the local control plane's broker (BrokerURL): call
// EnsureControlPlane first, so that a new home records the port its
// broker actually got.
func EnsureDefaults(l Layout) ([]File, error) {
	for _, d := range []string{l.Home, l.Components, l.Data} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	defaults := []struct {
		name, what, body string
	}{{
		name: "statestore.yaml",
		what: "state store \"statestore\" (state.sqlite, embedded, actor state store)",
		body: fmt.Sprintf(`# Created by mecha: the default state store, an embedded SQLite file.
# Point the same name at state.redis or state.postgresql to use a server.
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: statestore
spec:
  type: state.sqlite
  version: v1
  metadata:
  - name: connectionString
    value: %q
  - name: actorStateStore
    value: "true"
`, filepath.Join(l.Data, "state.db")),
	}}
	defaults = append(defaults, struct {
		name, what, body string
	}{
		name: "lockstore.yaml",
		what: "lock store \"lockstore\" (lock.sqlite, embedded)",
		body: fmt.Sprintf(`# Created by mecha: the default distributed lock store, an embedded SQLite file.
# Point the same name at lock.redis or lock.postgresql to share locks across hosts.
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: lockstore
spec:
  type: lock.sqlite
  version: v1
  metadata:
  - name: connectionString
    value: %q
`, filepath.Join(l.Data, "lock.db")),
	}, struct {
		name, what, body string
	}{
		name: "configstore.yaml",
		what: "configuration store \"configstore\" (configuration.sqlite, embedded)",
		body: fmt.Sprintf(`# Created by mecha: the default configuration store, an embedded SQLite file.
# Items live in its "configuration" table (key, value, version, metadata);
# point the same name at configuration.redis or configuration.postgresql to use a server.
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: configstore
spec:
  type: configuration.sqlite
  version: v1
  metadata:
  - name: connectionString
    value: %q
`, filepath.Join(l.Data, "configuration.db")),
	}, struct {
		name, what, body string
	}{
		name: "pubsub.yaml",
		what: fmt.Sprintf("pub/sub \"pubsub\" (pubsub.jetstream, the local control plane's embedded broker at %s)", BrokerURL(l)),
		body: fmt.Sprintf(`# Created by mecha: the default pub/sub, NATS JetStream embedded in the local
# control plane (mecha control-plane --local), which mecha run and mecha init
# start in the background when it is not running; its data is in %s.
# Point the same name at pubsub.redis, or at a NATS server of your own, to use a server.
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: pubsub
spec:
  type: pubsub.jetstream
  version: v1
  metadata:
  - name: natsURL
    value: %q
`, l.JetStreamDir(), BrokerURL(l)),
	})
	var out []File
	for _, d := range defaults {
		p := filepath.Join(l.Components, d.name)
		f := File{Path: p, What: d.what}
		if _, err := os.Stat(p); err == nil {
			out = append(out, f)
			continue
		} else if !errors.Is(err, fs.ErrNotExist) {
			return out, err
		}
		if err := os.WriteFile(p, []byte(d.body), 0o644); err != nil {
			return out, err
		}
		f.Created = true
		out = append(out, f)
	}
	return out, nil
}
