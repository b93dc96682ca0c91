package runtime

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/mecha-dev/mecha/components"
	cstate "github.com/mecha-dev/mecha/components/state"
	"github.com/mecha-dev/mecha/internal/blocks/metadata"
	"github.com/mecha-dev/mecha/internal/config"
)

// initComponents initialises every loaded component concurrently, each with
// its own timeout. A component that fails is logged, recorded in the metadata
// API and skipped; the sidecar keeps running without it.
func (r *Runtime) initComponents(ctx context.Context, comps []config.Component) {
	var wg sync.WaitGroup
	for _, c := range comps {
		wg.Go(func() {
			start := time.Now()
			if err := r.initComponent(ctx, c); err != nil {
				r.log.Error("component failed to initialise and was skipped", "component", c.Name, "type", c.Spec.Type, "file", c.File, "error", err)
				r.meta.AddResourceError(metadata.ResourceError{File: c.File, Kind: "Component", Name: c.Name, Message: err.Error()})
				return
			}
			r.log.Info("component loaded", "component", c.Name, "type", c.Spec.Type, "version", c.Version(), "elapsed", time.Since(start).Round(time.Microsecond))
		})
	}
	wg.Wait()
}

func (r *Runtime) initComponent(ctx context.Context, c config.Component) error {
	md, err := r.componentMetadata(c)
	if err != nil {
		return err
	}
	timeout, err := c.InitTimeout(r.opts.ComponentInitTimeout)
	if err != nil {
		return err
	}
	deps := components.Deps{
		Logger:  r.log.With(slog.String("component", c.Name), slog.String("type", c.Spec.Type)),
		DataDir: r.opts.DataDir,
	}
	ictx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	switch c.Kind() {
	case "state":
		s, err := r.opts.Registries.State.Create(c.Spec.Type, c.Version(), deps)
		if err != nil {
			return err
		}
		if err := initStore(ictx, s, md); err != nil {
			if ictx.Err() != nil && ctx.Err() == nil {
				return fmt.Errorf("init did not finish within %v (spec.initTimeout): %w", timeout, err)
			}
			return fmt.Errorf("init: %w", err)
		}
		st, err := r.state.Add(c.Name, s, md)
		if err != nil {
			s.Close()
			return err
		}
		caps := make([]string, len(st.Features))
		for i, f := range st.Features {
			caps[i] = string(f)
		}
		r.meta.AddComponent(metadata.Component{Name: c.Name, Type: c.Spec.Type, Version: c.Version(), Capabilities: caps})
		return nil
	default:
		return fmt.Errorf("component kind %q (type %s) is not supported by this build", c.Kind(), c.Spec.Type)
	}
}

// initStore runs s.Init bounded by ctx and closes s when Init fails. Init
// should honour ctx; when it does not, it is abandoned once ctx ends, as
// daprd does, so that one stuck component cannot hold up the sidecar, and the
// store is closed when Init finally returns.
func initStore(ctx context.Context, s cstate.Store, md components.Metadata) error {
	done := make(chan error, 1)
	go func() { done <- s.Init(ctx, md) }()
	select {
	case err := <-done:
		if err != nil {
			s.Close()
		}
		return err
	case <-ctx.Done():
		go func() {
			<-done
			s.Close()
		}()
		return ctx.Err()
	}
}

// componentMetadata resolves spec.metadata: literal values with Dapr's
// templates ({uuid}, {podName}, {namespace}, {appID}), envRef, and
// secretKeyRef.
func (r *Runtime) componentMetadata(c config.Component) (components.Metadata, error) {
	md := components.Metadata{Name: c.Name, Type: c.Spec.Type, Version: c.Version(), Properties: make(map[string]string, len(c.Spec.Metadata))}
	for _, m := range c.Spec.Metadata {
		switch {
		case m.SecretKeyRef.Name != "":
			store := c.Auth.SecretStore
			if store == "" {
				store = "(none: set auth.secretStore)"
			}
			return md, fmt.Errorf("metadata %q uses secretKeyRef %q, but secret store %s is not available", m.Name, m.SecretKeyRef.Name, store)
		case m.EnvRef != "":
			md.Properties[m.Name] = os.Getenv(m.EnvRef)
		default:
			md.Properties[m.Name] = r.expandTemplates(m.Value.String)
		}
	}
	return md, nil
}

func (r *Runtime) expandTemplates(v string) string {
	if !strings.Contains(v, "{") {
		return v
	}
	host, _ := os.Hostname()
	return strings.NewReplacer(
		"{uuid}", uuid.NewString(),
		"{podName}", envOr("POD_NAME", host),
		"{namespace}", r.opts.Namespace+"."+r.opts.AppID,
		"{appID}", r.opts.AppID,
	).Replace(v)
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
