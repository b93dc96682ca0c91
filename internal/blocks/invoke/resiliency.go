package invoke

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/mecha-dev/mecha/internal/config"
	"github.com/mecha-dev/mecha/internal/invokemsg"
	"github.com/mecha-dev/mecha/internal/resiliency"
)

// retrySchedule is how often, and after what pause, a sidecar that cannot
// be reached is tried again within one call.
type retrySchedule struct {
	s        *resiliency.Schedule // nil: Options.Attempts and Backoff
	attempts int
	backoff  time.Duration
	n        int
}

// retries is the built-in retry schedule of a call to app id: the
// Resiliency provider's DaprBuiltInServiceRetries, none when a Resiliency
// resource has a target entry for the app (its policy decides, as in
// daprd), or Attempts and Backoff without a provider.
func (b *Block) retries(id string) *retrySchedule {
	switch {
	case b.o.Resiliency == nil:
		return &retrySchedule{attempts: b.o.Attempts, backoff: b.o.Backoff}
	case b.o.Resiliency.AppDefined(id):
		return &retrySchedule{attempts: 1}
	}
	return &retrySchedule{s: b.o.Resiliency.BuiltIn(config.BuiltInServiceRetries)}
}

// next returns the pause before the next attempt, or false when none is
// left.
func (r *retrySchedule) next() (time.Duration, bool) {
	if r.s != nil {
		return r.s.Next()
	}
	r.n++
	return r.backoff, r.n < r.attempts
}

// total is the number of attempts, for error messages.
func (r *retrySchedule) total() int {
	if r.s != nil {
		if n := r.s.Retries(); n < math.MaxInt {
			return n + 1
		}
		return math.MaxInt
	}
	return r.attempts
}

// invokePolicy delivers req (to this sidecar's app when local, else to a
// sidecar of app id) under the app's resiliency policy.
//
// With a retry policy, and for remote calls (built-in retries), the body
// is made sendable again first: a body of known length up to ReplayLimit
// is read into memory; a larger or streamed one is retried only while none
// of it was sent. With retries or a circuit
// breaker, an answer with a failure status (HTTP outside 200-399, a gRPC
// code other than OK) is a failed attempt, as in daprd: its body is
// buffered (up to ReplayLimit) and, when it is the last attempt's, it is
// returned to the caller as the app's answer.
func (b *Block) invokePolicy(ctx context.Context, pol *resiliency.Policy, id, ns string, local bool, req *invokemsg.Request) (*invokemsg.Response, error) {
	var sent *countingReader
	if pol.HasRetries() || !local {
		var err error
		if sent, err = b.prepareReplay(req); err != nil {
			return nil, err
		}
	}
	judge := pol.HasRetries() || pol.HasBreaker()
	var ok, last *invokemsg.Response // the successful answer; the latest failure answer
	release, err := pol.Do(ctx, func(ctx context.Context) error {
		if last != nil {
			last.Close()
			last = nil
		}
		var resp *invokemsg.Response
		var err error
		if local {
			resp, err = b.o.Local.Invoke(ctx, req)
		} else {
			resp, err = b.callRemote(ctx, id, ns, req, sent)
		}
		consumed := sent != nil && sent.n.Load() > 0
		switch {
		case errors.Is(err, ErrPermissionDenied), errors.Is(err, ErrInvalidMethod):
			return resiliency.Handled(err)
		case err != nil && consumed:
			return resiliency.Permanent(err)
		case err != nil:
			return err
		}
		if judge {
			if serr := failure(resp); serr != nil {
				full, berr := b.bufferBody(resp)
				last = resp
				if consumed || !full || berr != nil {
					return resiliency.Permanent(serr)
				}
				return serr
			}
		}
		ok = resp
		return nil
	})
	if err == nil {
		ok.Body = &releaseBody{ReadCloser: ok.Body, release: release}
		return ok, nil
	}
	var serr *resiliency.StatusError
	if last != nil && errors.As(err, &serr) {
		return last, nil // the app's own answer passes through
	}
	if last != nil {
		last.Close()
	}
	return nil, err
}

// failure is the status error of a failure answer, nil for a success.
func failure(resp *invokemsg.Response) *resiliency.StatusError {
	code := int(resp.Status.GetCode())
	if resp.IsHTTP() {
		if code < 200 || code > 399 {
			return &resiliency.StatusError{Code: code}
		}
		return nil
	}
	if codes.Code(code) != codes.OK {
		return &resiliency.StatusError{Code: code, GRPC: true}
	}
	return nil
}

// bufferBody reads a failure answer's body into memory so that the call
// can end (and be retried) while the answer is kept. A body larger than
// ReplayLimit is kept as a stream (full is false): what was read, then the
// rest, so that it can still be returned as it is.
func (b *Block) bufferBody(resp *invokemsg.Response) (full bool, err error) {
	data, err := io.ReadAll(io.LimitReader(resp.Body, b.o.ReplayLimit+1))
	if err != nil || int64(len(data)) > b.o.ReplayLimit {
		resp.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(data), resp.Body), resp.Body}
		return false, err
	}
	resp.Body.Close()
	resp.Body = invokemsg.BytesBody(data)
	resp.ContentLength = int64(len(data))
	return true, nil
}

// releaseBody ends the successful attempt (its timeout context) when the
// caller closes the answer.
type releaseBody struct {
	io.ReadCloser
	release func()
}

func (r *releaseBody) Close() error {
	err := r.ReadCloser.Close()
	r.release()
	return err
}
