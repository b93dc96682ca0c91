package state

import (
	"context"
	"time"

	"github.com/mecha-dev/mecha/internal/telemetry/tracing"
)

// Observer is told about every operation of the state API on a store: the
// store, daprd's operation name (get, set, delete, bulk_get, bulk_delete,
// transaction), whether it succeeded (an ETag mismatch did not) and how
// long the store took, resiliency retries included (metrics).
type Observer func(store, op string, success bool, elapsed time.Duration)

// SetObserver sets the block's Observer. Call it before the block serves;
// nil (the default) observes nothing and reads no clock.
func (b *Block) SetObserver(o Observer) { b.observe = o }

// operation is one kind of state API call: its span's db.operation and
// daprd's operation label (a bulk delete is a "delete" span, as before,
// and a "bulk_delete" metric, as in daprd).
type operation struct{ span, metric string }

var (
	opGet         = operation{"get", "get"}
	opBulkGet     = operation{"bulkGet", "bulk_get"}
	opSet         = operation{"set", "set"}
	opDelete      = operation{"delete", "delete"}
	opBulkDelete  = operation{"delete", "bulk_delete"}
	opTransaction = operation{"transaction", "transaction"}
)

// perform runs fn as one operation op on store, the one place where a
// state call is traced and observed: one span and one observation however
// many store calls fn makes (each through b.run, so under the store's
// resiliency policy). Callers validate the request first: a request that
// names no loaded store, or is malformed, never reaches a store and is
// neither traced nor observed.
func (b *Block) perform(ctx context.Context, store string, op operation, fn func(ctx context.Context) error) error {
	var start time.Time
	if b.observe != nil {
		start = time.Now()
	}
	ctx, span := tracing.StartState(ctx, store, op.span)
	err := fn(ctx)
	tracing.End(span, err)
	if b.observe != nil {
		b.observe(store, op.metric, err == nil, time.Since(start))
	}
	return err
}

// call is perform of an operation that is one store call.
func (b *Block) call(ctx context.Context, store string, op operation, fn func(ctx context.Context) error) error {
	return b.perform(ctx, store, op, func(ctx context.Context) error { return b.run(ctx, store, fn) })
}

// performEach is one operation op on store made of one store call per
// request, in order (each under the store's resiliency policy); it stops
// at the first failure and returns its index.
func performEach[R any](ctx context.Context, b *Block, store string, op operation, reqs []R, call func(context.Context, *R) error) (failed int, err error) {
	err = b.perform(ctx, store, op, func(ctx context.Context) error {
		for i := range reqs {
			if err := b.run(ctx, store, func(ctx context.Context) error { return call(ctx, &reqs[i]) }); err != nil {
				failed = i
				return err
			}
		}
		return nil
	})
	return failed, err
}
