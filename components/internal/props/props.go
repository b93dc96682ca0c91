// Package props reads a component's metadata properties into typed values
// by the rules every built-in component follows, so that they follow them
// the same way: Dapr's property names matched case-insensitively, aliases
// tried in order (maxRetries, then redisMaxRetries), a blank value taken as
// unset, durations as Go durations or bare numbers in the component's unit
// (Redis reads milliseconds, the SQL stores seconds), and every invalid
// property reported at once, each error naming its property.
package props

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/mecha-dev/mecha/components"
)

// Reader reads the properties of one metadata and collects the errors.
type Reader struct {
	md   components.Metadata
	unit time.Duration
	errs []error
}

// New returns a reader of md whose bare-number durations are in unit.
func New(md components.Metadata, unit time.Duration) *Reader {
	return &Reader{md: md, unit: unit}
}

// Name returns the first of names that is set to a non-blank value, or ""
// when none is.
func (r *Reader) Name(names ...string) string {
	for _, n := range names {
		if v, ok := r.md.Get(n); ok && strings.TrimSpace(v) != "" {
			return n
		}
	}
	return ""
}

// String returns the value of the first of names that is set, as written,
// or "".
func (r *Reader) String(names ...string) string {
	n := r.Name(names...)
	if n == "" {
		return ""
	}
	v, _ := r.md.Get(n)
	return v
}

// Int returns the first of names that is set as an integer, or def.
func (r *Reader) Int(def int, names ...string) int {
	n := r.Name(names...)
	if n == "" {
		return def
	}
	v, err := r.md.Int(n, def)
	if err != nil {
		r.Add(err)
		return def
	}
	return v
}

// Bool returns the first of names that is set as a boolean, or false.
func (r *Reader) Bool(names ...string) bool {
	n := r.Name(names...)
	if n == "" {
		return false
	}
	v, err := r.md.Bool(n, false)
	if err != nil {
		r.Add(err)
	}
	return v
}

// Duration returns the first of names that is set as a duration, or def.
// Negative values are returned as they are: what they mean is the caller's
// business.
func (r *Reader) Duration(def time.Duration, names ...string) time.Duration {
	n := r.Name(names...)
	if n == "" {
		return def
	}
	v, err := r.md.Duration(n, r.unit, def)
	if err != nil {
		r.Add(err)
		return def
	}
	return v
}

// Fail records that property name is invalid: `metadata "name": msg`.
func (r *Reader) Fail(name, msg string) {
	r.Add(fmt.Errorf("metadata %q: %s", name, msg))
}

// Add records err, which should name the property it is about.
func (r *Reader) Add(err error) {
	r.errs = append(r.errs, err)
}

// Err joins the errors recorded so far; nil when there are none.
func (r *Reader) Err() error {
	return errors.Join(r.errs...)
}

// Unknown returns a warning for each property of md, in name order, whose
// name is not one of known (case-insensitive). Dapr users' manifests often
// carry properties meant for other components or versions, so an unknown
// name is a warning, not an error; but a typo deserves a visible hint.
func Unknown(md components.Metadata, known ...string) []string {
	var warnings []string
	for name := range md.Properties {
		if !slices.ContainsFunc(known, func(k string) bool { return strings.EqualFold(k, name) }) {
			warnings = append(warnings, fmt.Sprintf("ignoring unknown metadata property %q", name))
		}
	}
	slices.Sort(warnings)
	return warnings
}
