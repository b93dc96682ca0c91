// Package trip compiles and evaluates the trip expression of a circuit
// breaker (spec.policies.circuitBreakers.*.trip in a Resiliency resource),
// a CEL expression over the breaker's counts, e.g.
// "consecutiveFailures > 5".
//
// It is its own small package so that the resource loader (internal/config)
// can reject an expression that does not compile when the file is read,
// and the breakers (internal/resiliency) can evaluate the very same
// program, without either depending on the other.
package trip

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"cel.dev/cel-go/cel"
)

// The variables an expression may use, as daprd names them. They count the
// requests of the breaker's current generation (closed state, reset every
// interval, or a half-open trial).
const (
	Requests             = "requests"
	TotalSuccesses       = "totalSuccesses"
	TotalFailures        = "totalFailures"
	ConsecutiveSuccesses = "consecutiveSuccesses"
	ConsecutiveFailures  = "consecutiveFailures"
)

// Default is the trip expression of a breaker that gives none (daprd's,
// and its circuit breaker library's, default).
const Default = ConsecutiveFailures + " > 5"

// Counts are the values the expression sees.
type Counts struct {
	Requests             uint32
	TotalSuccesses       uint32
	TotalFailures        uint32
	ConsecutiveSuccesses uint32
	ConsecutiveFailures  uint32
}

// Expr is a compiled trip expression; it is safe for concurrent use.
type Expr struct {
	src string
	prg cel.Program
}

// env declares the five counters as ints. daprd declares any identifier
// it meets as dynamic, so a misspelt counter compiles there and the
// breaker then never trips; here it is an error when the resource loads.
var env = sync.OnceValues(func() (*cel.Env, error) {
	return cel.NewEnv(
		cel.Variable(Requests, cel.IntType),
		cel.Variable(TotalSuccesses, cel.IntType),
		cel.Variable(TotalFailures, cel.IntType),
		cel.Variable(ConsecutiveSuccesses, cel.IntType),
		cel.Variable(ConsecutiveFailures, cel.IntType),
	)
})

// compiled caches compiled expressions by source: resources repeat the
// same few expressions, and a source always yields the same *Expr.
var compiled sync.Map // string -> *Expr

// maxCached bounds the cache; further expressions are compiled each time.
const maxCached = 1024

var cachedCount atomic.Int32

// Compile checks and compiles src, which must be a boolean expression over
// the counters.
func Compile(src string) (*Expr, error) {
	src = strings.TrimSpace(src)
	if src == "" {
		return nil, fmt.Errorf("empty expression")
	}
	if e, ok := compiled.Load(src); ok {
		return e.(*Expr), nil
	}
	e, err := compile(src)
	if err != nil {
		return nil, err
	}
	if cachedCount.Load() < maxCached {
		if actual, loaded := compiled.LoadOrStore(src, e); loaded {
			return actual.(*Expr), nil
		}
		cachedCount.Add(1)
	}
	return e, nil
}

func compile(src string) (*Expr, error) {
	e, err := env()
	if err != nil {
		return nil, fmt.Errorf("CEL environment: %w", err)
	}
	ast, iss := e.Compile(src)
	if iss.Err() != nil {
		return nil, fmt.Errorf("%q does not compile (the variables are %s, %s, %s, %s and %s): %w",
			src, Requests, TotalSuccesses, TotalFailures, ConsecutiveSuccesses, ConsecutiveFailures, iss.Err())
	}
	if ast.OutputType() != cel.BoolType {
		return nil, fmt.Errorf("%q is of type %s, not bool", src, ast.OutputType())
	}
	prg, err := e.Program(ast)
	if err != nil {
		return nil, fmt.Errorf("%q: %w", src, err)
	}
	return &Expr{src: src, prg: prg}, nil
}

// MustCompile is Compile for expressions known to be valid (Default).
func MustCompile(src string) *Expr {
	e, err := Compile(src)
	if err != nil {
		panic(err)
	}
	return e
}

// String is the expression's source.
func (e *Expr) String() string { return e.src }

// Eval reports whether the breaker must open. An evaluation error (an
// integer overflow, a division by zero) does not trip it: it is reported,
// and the breaker stays closed, as in daprd.
func (e *Expr) Eval(c Counts) (bool, error) {
	out, _, err := e.prg.Eval(map[string]any{
		Requests:             int64(c.Requests),
		TotalSuccesses:       int64(c.TotalSuccesses),
		TotalFailures:        int64(c.TotalFailures),
		ConsecutiveSuccesses: int64(c.ConsecutiveSuccesses),
		ConsecutiveFailures:  int64(c.ConsecutiveFailures),
	})
	if err != nil {
		return false, fmt.Errorf("evaluating %q: %w", e.src, err)
	}
	b, ok := out.Value().(bool)
	if !ok {
		return false, fmt.Errorf("%q did not evaluate to a boolean", e.src)
	}
	return b, nil
}
