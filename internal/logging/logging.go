// Package logging builds the process logger from --log-level and
// --log-as-json, with the fields Dapr's logs carry on every line (time,
// level, msg, scope, type, instance, ver, and app_id once the runtime adds
// it) so existing log pipelines keep working.
package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/mecha-dev/mecha/internal/version"
)

// Options select the log format.
type Options struct {
	Level  string // debug, info, warn, error (default info)
	JSON   bool
	Scope  string // e.g. "mecha.runtime"
	Output io.Writer
}

// ParseLevel maps Dapr's level names to slog levels.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "", "info":
		return slog.LevelInfo, nil
	case "debug":
		return slog.LevelDebug, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error", "fatal":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("--log-level %q is not one of debug, info, warn, error", s)
}

// Dapr's log fields that every line carries once, whatever sets them.
const (
	// KeyScope names the component that logs, e.g. "mecha.runtime.pubsub";
	// a narrower scope set with With replaces the wider one.
	KeyScope = "scope"
	// KeyType is "log", or "request" for API logs.
	KeyType = "type"
	// KeyAppID is the sidecar's app id.
	KeyAppID = "app_id"
	// KeyInstance is the host name.
	KeyInstance = "instance"
	// KeyVersion is the Mecha version.
	KeyVersion = "ver"
)

// TypeLog and TypeRequest are the values of the type field (dapr/kit's
// LogTypeLog and LogTypeRequest).
const (
	TypeLog     = "log"
	TypeRequest = "request"
)

// levelNames are the level values as Dapr (logrus) writes them.
var levelNames = map[slog.Level]string{
	slog.LevelDebug: "debug",
	slog.LevelInfo:  "info",
	slog.LevelWarn:  "warning",
	slog.LevelError: "error",
}

// New returns the logger described by o.
func New(o Options) (*slog.Logger, error) {
	lvl, err := ParseLevel(o.Level)
	if err != nil {
		return nil, err
	}
	ho := &slog.HandlerOptions{
		Level: lvl,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.LevelKey {
				l, _ := a.Value.Any().(slog.Level)
				if name, ok := levelNames[l]; ok {
					return slog.String(slog.LevelKey, name)
				}
				return slog.String(slog.LevelKey, strings.ToLower(l.String()))
			}
			return a
		},
	}
	var h slog.Handler
	if o.JSON {
		h = slog.NewJSONHandler(o.Output, ho)
	} else {
		h = slog.NewTextHandler(o.Output, ho)
	}
	host, _ := os.Hostname()
	return slog.New(&daprHandler{inner: h, fields: fields{
		scope: o.Scope, typ: TypeLog, instance: host, ver: version.Version,
	}}), nil
}

// fields are the Dapr fields of a logger.
type fields struct {
	scope, typ, appID, instance, ver string
}

// apply takes a top-level attribute: a Dapr field updates f and is
// consumed; an attribute that uses a Dapr field's key with another meaning
// (an actor or subscription "type", a target app's "app_id" on one line)
// comes back renamed "attr.<key>", so that the key stays unique on the
// line; anything else comes back as it is. logger says the attribute comes
// from With (it describes the logger) rather than from one record.
func (f *fields) apply(a slog.Attr, logger bool) (slog.Attr, bool) {
	v := func() string { return a.Value.Resolve().String() }
	switch a.Key {
	case KeyScope:
		f.scope = v()
		return a, false
	case KeyType:
		if t := v(); t == TypeLog || t == TypeRequest {
			f.typ = t
			return a, false
		}
	case KeyAppID, KeyInstance, KeyVersion:
		if logger {
			switch a.Key {
			case KeyAppID:
				f.appID = v()
			case KeyInstance:
				f.instance = v()
			default:
				f.ver = v()
			}
			return a, false
		}
	default:
		return a, true
	}
	return slog.Attr{Key: "attr." + a.Key, Value: a.Value}, true
}

func (f *fields) attrs() []slog.Attr {
	out := make([]slog.Attr, 0, 5)
	for _, kv := range [...]struct{ k, v string }{
		{KeyAppID, f.appID}, {KeyInstance, f.instance}, {KeyScope, f.scope}, {KeyType, f.typ}, {KeyVersion, f.ver},
	} {
		if kv.v != "" {
			out = append(out, slog.String(kv.k, kv.v))
		}
	}
	return out
}

// daprHandler keeps Dapr's fields apart from other attributes so that each
// appears once per line with its latest value: a logger narrowed with
// With("scope", …) or a record carrying type=request replaces the value
// instead of repeating the key, as Dapr's logger does (see fields.apply).
// After WithGroup the fields are fixed (they stay at the top level).
type daprHandler struct {
	inner   slog.Handler
	fields  fields
	grouped bool
}

func (h *daprHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

func (h *daprHandler) Handle(ctx context.Context, r slog.Record) error {
	if h.grouped {
		return h.inner.Handle(ctx, r)
	}
	f := h.fields
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	var rest []slog.Attr
	r.Attrs(func(a slog.Attr) bool {
		if a, keep := f.apply(a, false); keep {
			rest = append(rest, a)
		}
		return true
	})
	out.AddAttrs(f.attrs()...)
	out.AddAttrs(rest...)
	return h.inner.Handle(ctx, out)
}

func (h *daprHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	if c.grouped {
		c.inner = c.inner.WithAttrs(attrs)
		return &c
	}
	var rest []slog.Attr
	for _, a := range attrs {
		if a, keep := c.fields.apply(a, true); keep {
			rest = append(rest, a)
		}
	}
	if len(rest) > 0 {
		c.inner = c.inner.WithAttrs(rest)
	}
	return &c
}

func (h *daprHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	c := *h
	if !c.grouped {
		c.inner = c.inner.WithAttrs(c.fields.attrs())
		c.grouped = true
	}
	c.inner = c.inner.WithGroup(name)
	return &c
}
