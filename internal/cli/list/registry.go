package list

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/nameresolution"
	nrsqlite "github.com/mecha-dev/mecha/components/nameresolution/sqlite"
	"github.com/mecha-dev/mecha/internal/selfhosted"
)

// Instances returns the live sidecars of the host's name resolution
// registry (~/.mecha/nameresolution.db, or under $MECHA_HOME): those whose
// heartbeat is younger than the registry's TTL, oldest first. The registry
// is only read: nothing registers and no heartbeat runs. A registry that
// does not exist yet means nothing runs; it is not created.
//
// `mecha stop` and `mecha invoke` find their targets here too.
func Instances(ctx context.Context) ([]nameresolution.Instance, error) {
	file, err := selfhosted.RegistryFile()
	if err != nil {
		return nil, err
	}
	return InstancesIn(ctx, file)
}

// InstancesIn is Instances for the registry in file.
func InstancesIn(ctx context.Context, file string) ([]nameresolution.Instance, error) {
	if _, err := os.Stat(file); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	r := nrsqlite.New(components.Deps{Logger: slog.New(slog.DiscardHandler)})
	defer r.Close() // without Register, Close deletes nothing
	md := components.Metadata{Name: "registry", Type: "nameresolution.sqlite", Properties: map[string]string{"connectionString": file}}
	if err := r.Init(ctx, md); err != nil {
		return nil, fmt.Errorf("reading the registry of running apps: %w", err)
	}
	l, ok := r.(nameresolution.Lister)
	if !ok {
		return nil, errors.New("nameresolution.sqlite cannot list its entries")
	}
	return l.List(ctx)
}

// ByAppID returns the instances serving appID.
func ByAppID(all []nameresolution.Instance, appID string) []nameresolution.Instance {
	var out []nameresolution.Instance
	for _, in := range all {
		if in.AppID == appID {
			out = append(out, in)
		}
	}
	return out
}

// HTTPPort returns the HTTP API port of a running sidecar of appID, for the
// verbs that act through an app's own sidecar (mecha invoke, mecha
// publish); what names the verb's way around (e.g. "to publish through
// another sidecar") ends the error when there is none.
func HTTPPort(ctx context.Context, appID, otherwise string) (int, error) {
	all, err := Instances(ctx)
	if err != nil {
		return 0, err
	}
	for _, in := range ByAppID(all, appID) {
		if in.HTTPPort > 0 {
			return in.HTTPPort, nil
		}
	}
	return 0, fmt.Errorf("no running app with id %q (see mecha list); %s, pass --dapr-http-port", appID, otherwise)
}
