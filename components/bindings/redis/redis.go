// Package redis is the bindings.redis output binding: plain Redis string
// keys, with Dapr's operations create (SET, with an optional
// ttlInSeconds), get (GET, or GETDEL with metadata delete=true), delete
// (DEL) and increment (INCR, with an optional ttlInSeconds). The key is the
// request metadata "key".
//
// As in Dapr, get of a missing key answers an empty response (HTTP 200 with
// no body) and create, delete and increment answer no content.
package redis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/bindings"
	"github.com/mecha-dev/mecha/components/bindings/internal/mdcheck"
	"github.com/mecha-dev/mecha/components/internal/redisconn"
)

// OperationIncrement increments a key's integer value.
const OperationIncrement bindings.Operation = "increment"

// Binding is the Redis output binding.
type Binding struct {
	log *slog.Logger

	mu     sync.RWMutex
	client *goredis.Client // nil before Init and after Close
}

var _ bindings.Output = (*Binding)(nil)

// New returns an uninitialised binding.
func New(d components.Deps) *Binding {
	log := d.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Binding{log: log}
}

// Init connects and pings Redis within ctx (see redisconn.Settings for the
// metadata).
func (b *Binding) Init(ctx context.Context, md components.Metadata) error {
	s, err := parseSettings(md)
	if err != nil {
		return err
	}
	mdcheck.WarnUnknown(b.log, md, redisconn.Properties...)
	c, err := redisconn.Connect(ctx, b.log, s)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.client != nil {
		b.client.Close()
	}
	b.client = c
	return nil
}

// Operations lists Dapr's Redis binding operations.
func (b *Binding) Operations() []bindings.Operation {
	return []bindings.Operation{bindings.OperationCreate, bindings.OperationGet, bindings.OperationDelete, OperationIncrement}
}

// Invoke performs one operation on the key named by metadata "key".
func (b *Binding) Invoke(ctx context.Context, req *bindings.InvokeRequest) (*bindings.InvokeResponse, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.client == nil {
		return nil, errors.New("redis binding is not initialised or closed")
	}
	switch req.Operation {
	case bindings.OperationCreate, bindings.OperationGet, bindings.OperationDelete, OperationIncrement:
	default:
		return nil, fmt.Errorf("invalid operation type: %s", req.Operation)
	}
	key := req.Metadata["key"]
	if key == "" {
		return nil, errors.New(`metadata "key" is required`)
	}
	c := b.client
	switch req.Operation {
	case bindings.OperationGet:
		var v []byte
		var err error
		if del, _ := strconv.ParseBool(req.Metadata["delete"]); del {
			v, err = c.GetDel(ctx, key).Bytes()
		} else {
			v, err = c.Get(ctx, key).Bytes()
		}
		if errors.Is(err, goredis.Nil) {
			return &bindings.InvokeResponse{}, nil
		}
		if err != nil {
			return nil, err
		}
		return &bindings.InvokeResponse{Data: v}, nil
	case bindings.OperationDelete:
		return nil, c.Del(ctx, key).Err()
	}
	ttl, err := requestTTL(req.Metadata)
	if err != nil {
		return nil, err
	}
	if req.Operation == bindings.OperationCreate {
		return nil, c.Set(ctx, key, req.Data, ttl).Err()
	}
	// increment: INCR and the expiry in one transaction.
	_, err = c.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		p.Incr(ctx, key)
		if ttl > 0 {
			p.Expire(ctx, key, ttl)
		}
		return nil
	})
	return nil, err
}

// requestTTL reads Dapr's ttlInSeconds request metadata (0: none).
func requestTTL(md map[string]string) (time.Duration, error) {
	v := strings.TrimSpace(md["ttlInSeconds"])
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("metadata %q: %q must be a positive integer", "ttlInSeconds", v)
	}
	return time.Duration(n) * time.Second, nil
}

// Close closes the connections; it is idempotent.
func (b *Binding) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.client == nil {
		return nil
	}
	err := b.client.Close()
	b.client = nil
	return err
}
