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
	"github.com/mecha-dev/mecha/components/bindings"
	"github.com/mecha-dev/mecha/components/configuration"
	"github.com/mecha-dev/mecha/components/lock"
	"github.com/mecha-dev/mecha/components/secretstores"
	cstate "github.com/mecha-dev/mecha/components/state"
	"github.com/mecha-dev/mecha/internal/blocks/metadata"
	"github.com/mecha-dev/mecha/internal/config"
)

// initComponents initialises every loaded component, each with its own
// timeout: secret stores first (other components' secretKeyRef values are
// read from them), then everything else concurrently. A component that fails
// is logged, recorded in the metadata API and skipped; the sidecar keeps
// running without it.
func (r *Runtime) initComponents(ctx context.Context, comps []config.Component) {
	var secretStores, others []config.Component
	for _, c := range comps {
		if c.Kind() == "secretstores" {
			secretStores = append(secretStores, c)
		} else {
			others = append(others, c)
		}
	}
	for _, phase := range [][]config.Component{secretStores, others} {
		var wg sync.WaitGroup
		for _, c := range phase {
			wg.Go(func() {
				start := time.Now()
				if err := r.initComponent(ctx, c); err != nil {
					r.log.Error("component failed to initialise and was skipped", "component", c.Name, "componentType", c.Spec.Type, "file", c.File, "error", err)
					r.mx.m.ComponentInitFailed(c.Spec.Type, failReason(err), c.Name)
					r.meta.AddResourceError(metadata.ResourceError{File: c.File, Kind: "Component", Name: c.Name, Message: err.Error()})
					return
				}
				r.mx.m.ComponentInitialized(c.Spec.Type)
				r.log.Info("component loaded", "component", c.Name, "componentType", c.Spec.Type, "version", c.Version(), "elapsed", time.Since(start).Round(time.Microsecond))
			})
		}
		wg.Wait()
	}
}

// initComponent creates, initialises and registers one component with its
// building block, and lists it in the metadata API.
func (r *Runtime) initComponent(ctx context.Context, c config.Component) error {
	md, err := r.componentMetadata(ctx, c)
	if err != nil {
		return err
	}
	timeout, err := c.InitTimeout(r.opts.ComponentInitTimeout)
	if err != nil {
		return err
	}
	deps := components.Deps{
		Logger:  r.log.With(slog.String("component", c.Name), slog.String("componentType", c.Spec.Type)),
		DataDir: r.opts.DataDir,
	}
	ictx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	initFn := func(comp initCloser) error {
		if err := initBounded(ictx, comp, md); err != nil {
			if ictx.Err() != nil && ctx.Err() == nil {
				return fmt.Errorf("init did not finish within %v (spec.initTimeout): %w", timeout, err)
			}
			return fmt.Errorf("init: %w", err)
		}
		return nil
	}
	var caps []string
	regs := r.opts.Registries
	switch c.Kind() {
	case "state":
		caps, err = addComponent(c, regs.State, deps, initFn, func(s cstate.Store) ([]string, error) {
			st, err := r.state.Add(c.Name, s, md)
			if err != nil {
				return nil, err
			}
			if cstate.Has(st.Features, cstate.FeatureActor) {
				r.actors.SetStateStore(c.Name, s)
			}
			caps := make([]string, len(st.Features))
			for i, f := range st.Features {
				caps[i] = string(f)
			}
			return caps, nil
		})
	case "secretstores":
		caps, err = addComponent(c, regs.SecretStores, deps, initFn, func(s secretstores.Store) ([]string, error) {
			return featureNames(s.Features()), r.secrets.Add(c.Name, s)
		})
	case "lock":
		caps, err = addComponent(c, regs.Lock, deps, initFn, func(s lock.Store) ([]string, error) {
			return nil, r.lock.AddWithMetadata(c.Name, s, md)
		})
	case "configuration":
		caps, err = addComponent(c, regs.Configuration, deps, initFn, func(s configuration.Store) ([]string, error) {
			return nil, r.configuration.Add(c.Name, s)
		})
	case "bindings":
		caps, err = r.addBinding(c, md, deps, initFn)
	case "pubsub":
		caps, err = r.addPubSub(c, md, deps, initFn)
	default:
		err = creationError{fmt.Errorf("component kind %q (type %s) is not supported by this build", c.Kind(), c.Spec.Type)}
	}
	if err != nil {
		return err
	}
	r.meta.AddComponent(metadata.Component{Name: c.Name, Type: c.Spec.Type, Version: c.Version(), Capabilities: caps})
	return nil
}

// initCloser is the part of every component contract the runtime needs to
// initialise and dispose of a component.
type initCloser interface {
	Init(context.Context, components.Metadata) error
	Close() error
}

// addComponent creates a T from reg, initialises it and hands it to add;
// on any failure the component is closed.
func addComponent[T initCloser](c config.Component, reg *components.Registry[T], deps components.Deps, initFn func(initCloser) error, add func(T) ([]string, error)) ([]string, error) {
	comp, err := reg.Create(c.Spec.Type, c.Version(), deps)
	if err != nil {
		return nil, creationError{err}
	}
	if err := initFn(comp); err != nil {
		return nil, err
	}
	caps, err := add(comp)
	if err != nil {
		comp.Close()
		return nil, err
	}
	return caps, nil
}

// addBinding creates the input and/or output side of a bindings.* component,
// as its type is registered and its "direction" metadata allows.
func (r *Runtime) addBinding(c config.Component, md components.Metadata, deps components.Deps, initFn func(initCloser) error) ([]string, error) {
	regs := r.opts.Registries
	wantIn, wantOut := true, true
	if dir, ok := md.Get("direction"); ok && strings.TrimSpace(dir) != "" {
		wantIn, wantOut = false, false
		for _, d := range strings.Split(dir, ",") {
			switch strings.TrimSpace(strings.ToLower(d)) {
			case "input":
				wantIn = true
			case "output":
				wantOut = true
			default:
				return nil, fmt.Errorf("metadata direction %q: use input, output or \"input, output\"", dir)
			}
		}
	}
	hasIn, hasOut := regs.InputBindings.Has(c.Spec.Type), regs.OutputBindings.Has(c.Spec.Type)
	if !hasIn && !hasOut {
		_, err := regs.OutputBindings.Create(c.Spec.Type, c.Version(), deps)
		return nil, creationError{err}
	}
	var caps []string
	if hasOut && wantOut {
		if _, err := addComponent(c, regs.OutputBindings, deps, initFn, func(o bindings.Output) ([]string, error) {
			return nil, r.bindings.AddOutput(c.Name, o)
		}); err != nil {
			return nil, err
		}
		caps = append(caps, "OUTPUT_BINDING")
	}
	if hasIn && wantIn {
		if _, err := addComponent(c, regs.InputBindings, deps, initFn, func(in bindings.Input) ([]string, error) {
			return nil, r.bindings.AddInput(c.Name, in, md)
		}); err != nil {
			return nil, err
		}
		caps = append(caps, "INPUT_BINDING")
	}
	if len(caps) == 0 {
		return nil, fmt.Errorf("binding type %s cannot be used in direction %q", c.Spec.Type, md.String("direction", ""))
	}
	return caps, nil
}

func featureNames[F ~string](fs []F) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = string(f)
	}
	return out
}

// initBounded runs comp.Init bounded by ctx and closes comp when Init fails.
// Init should honour ctx; when it does not, it is abandoned once ctx ends, as
// daprd does, so that one stuck component cannot hold up the sidecar, and the
// component is closed when Init finally returns.
func initBounded(ctx context.Context, comp initCloser, md components.Metadata) error {
	done := make(chan error, 1)
	go func() { done <- comp.Init(ctx, md) }()
	select {
	case err := <-done:
		if err != nil {
			comp.Close()
		}
		return err
	case <-ctx.Done():
		go func() {
			<-done
			comp.Close()
		}()
		return ctx.Err()
	}
}

// componentMetadata resolves spec.metadata: literal values with Dapr's
// templates ({uuid}, {podName}, {namespace}, {appID}), envRef, and
// secretKeyRef.
func (r *Runtime) componentMetadata(ctx context.Context, c config.Component) (components.Metadata, error) {
	md := components.Metadata{Name: c.Name, Type: c.Spec.Type, Version: c.Version(), Properties: make(map[string]string, len(c.Spec.Metadata))}
	for _, m := range c.Spec.Metadata {
		switch {
		case m.SecretKeyRef.Name != "":
			if c.Auth.SecretStore == "" {
				return md, fmt.Errorf("metadata %q uses secretKeyRef %q but the component sets no auth.secretStore", m.Name, m.SecretKeyRef.Name)
			}
			v, err := r.secrets.Resolve(ctx, c.Auth.SecretStore, m.SecretKeyRef.Name, m.SecretKeyRef.Key)
			if err != nil {
				return md, fmt.Errorf("metadata %q: %w", m.Name, err)
			}
			md.Properties[m.Name] = v
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
