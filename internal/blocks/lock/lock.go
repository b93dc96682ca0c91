// Package lock is the distributed lock building block: TryLock and Unlock
// over lock store components, with Dapr's validation and error codes.
package lock

import (
	clock "github.com/mecha-dev/mecha/components/lock"
	"github.com/mecha-dev/mecha/internal/blocks/compset"
)

// Block serves the lock API.
type Block struct {
	stores *compset.Set[clock.Store]
}

// New returns an empty block.
func New() *Block { return &Block{stores: compset.New[clock.Store]()} }

// Add registers an initialised lock store.
func (b *Block) Add(name string, s clock.Store) error { return b.stores.Add(name, s) }

// Close closes every store.
func (b *Block) Close() error { return b.stores.Close() }
