package pubsub

import (
	"fmt"
	"strings"
	"sync"

	"cel.dev/cel-go/cel"
)

// rule is one routing rule: events for which match is true go to path. An
// empty match is the catch-all (the default route).
type rule struct {
	match string
	path  string
	prg   cel.Program
}

// celEnv is built on first use: a sidecar whose subscriptions have no
// match expressions never allocates the CEL environment.
var celEnv = sync.OnceValues(func() (*cel.Env, error) {
	return cel.NewEnv(
		// The event is the CloudEvent as decoded JSON: event.type,
		// event.source, event.data.x, ... as in daprd.
		cel.Variable("event", cel.DynType),
		// JSON numbers are doubles: let `event.data.size > 10` compare a
		// double with an int instead of failing with "no such overload".
		cel.CrossTypeNumericComparisons(true),
	)
})

// compileRule compiles a match expression once, at subscription load.
func compileRule(match, path string) (rule, error) {
	match = strings.TrimSpace(match)
	r := rule{match: match, path: path}
	if match == "" {
		return r, nil
	}
	env, err := celEnv()
	if err != nil {
		return r, fmt.Errorf("CEL environment: %w", err)
	}
	ast, iss := env.Compile(match)
	if iss.Err() != nil {
		return r, fmt.Errorf("invalid match expression %q: %w", match, iss.Err())
	}
	if t := ast.OutputType(); t != cel.BoolType && t != cel.DynType {
		return r, fmt.Errorf("match expression %q is of type %s, not bool", match, t)
	}
	if r.prg, err = env.Program(ast); err != nil {
		return r, fmt.Errorf("invalid match expression %q: %w", match, err)
	}
	return r, nil
}

// route returns the path of the first rule that matches the event, and
// false when none does. An expression that fails to evaluate (a missing
// field used without has(), a type mismatch) is an error, as in daprd: the
// event is then retried or dead-lettered.
func route(rules []rule, ce map[string]any) (string, bool, error) {
	var vars map[string]any
	for _, r := range rules {
		if r.prg == nil {
			return r.path, true, nil
		}
		if vars == nil {
			vars = map[string]any{"event": ce}
		}
		out, _, err := r.prg.Eval(vars)
		if err != nil {
			return "", false, fmt.Errorf("evaluating %q: %w", r.match, err)
		}
		b, ok := out.Value().(bool)
		if !ok {
			return "", false, fmt.Errorf("the result of match expression %s was not a boolean", r.match)
		}
		if b {
			return r.path, true, nil
		}
	}
	return "", false, nil
}
