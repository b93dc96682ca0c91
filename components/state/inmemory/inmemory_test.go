package inmemory_test

import (
	"context"
	"testing"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/state"
	"github.com/mecha-dev/mecha/components/state/inmemory"
	"github.com/mecha-dev/mecha/components/state/statetest"
)

func TestConformance(t *testing.T) {
	statetest.Run(t, func(t *testing.T) state.Store {
		s := inmemory.New(components.Deps{})
		if err := s.Init(context.Background(), components.Metadata{Name: "mem", Type: "state.in-memory"}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

func BenchmarkStore(b *testing.B) {
	s := inmemory.New(components.Deps{})
	if err := s.Init(context.Background(), components.Metadata{}); err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	statetest.Bench(b, s)
}
