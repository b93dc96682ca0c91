package inmemory_test

import (
	"context"
	"testing"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/lock"
	"github.com/mecha-dev/mecha/components/lock/inmemory"
	"github.com/mecha-dev/mecha/components/lock/locktest"
)

func TestConformance(t *testing.T) {
	locktest.Run(t, func(t *testing.T) lock.Store {
		s := inmemory.New(components.Deps{})
		if err := s.Init(context.Background(), components.Metadata{Name: "lockstore", Type: "lock.in-memory"}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}
