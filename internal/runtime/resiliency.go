package runtime

import (
	"log/slog"

	"github.com/mecha-dev/mecha/internal/blocks/metadata"
	"github.com/mecha-dev/mecha/internal/config"
	"github.com/mecha-dev/mecha/internal/resiliency"
)

// initResiliency creates the resiliency provider, with only the built-in
// policies until loadResiliency, and hands it to the building blocks that
// exist by now; pub/sub, invocation and actors take it in their options. With
// metrics on, its counters go to the sidecar's registry.
func (r *Runtime) initResiliency() {
	log := r.log.With(slog.String("scope", "mecha.runtime.resiliency"))
	o := resiliency.Options{Logger: log, Namespace: r.opts.Namespace}
	if r.mx.m != nil {
		rec, err := resiliency.NewPrometheusRecorder(r.mx.m.Registry(), r.opts.AppID)
		if err != nil {
			log.Warn("resiliency metrics are not recorded", "error", err)
		} else {
			o.Recorder = rec
		}
	}
	r.resiliency = resiliency.New(o)
	r.state.SetResiliency(r.resiliency)
	r.secrets.SetResiliency(r.resiliency)
	r.lock.SetResiliency(r.resiliency)
	r.configuration.SetResiliency(r.resiliency)
	r.bindings.SetResiliency(r.resiliency)
}

// loadResiliency applies the Resiliency resources loaded for this app. A
// resource that failed to parse was reported with the other resource
// errors and is not among them: the built-in policies and the other
// resources stay in force. A target naming a policy no resource defines
// is reported the same way, without that reference.
func (r *Runtime) loadResiliency(res []config.Resiliency) {
	for _, e := range r.resiliency.Load(res) {
		r.log.Error("resiliency policy reference ignored", "file", e.File, "resiliency", e.Name, "error", e.Err)
		r.meta.AddResourceError(metadata.ResourceError{File: e.File, Kind: e.Kind, Name: e.Name, Message: e.Err})
	}
}
