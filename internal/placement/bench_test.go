package placement_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/mecha-dev/mecha/internal/placement"
	"github.com/mecha-dev/mecha/internal/placement/client"
)

// BenchmarkDissemination50 measures one membership change reaching 50
// actor hosts over real gRPC streams on 127.0.0.1: lock, update and unlock
// to all, acks included. round-ms is the server's round (from the commit
// to the last unlock ack); the ns/op also counts the report that carries
// the change and the sidecars' own unlock.
//
//	go test -run '^$' -bench Dissemination50 -benchtime 30x ./internal/placement/
func BenchmarkDissemination50(b *testing.B) {
	// A member adds and drops a type of its own: the other types' rings
	// are unchanged.
	b.Run("type-change", func(b *testing.B) {
		benchDissemination(b, []string{"Counter", "Cart", "Extra"}, []string{"Counter", "Cart"})
	})
	// A member leaves and comes back: every ring changes.
	b.Run("member-leave-join", func(b *testing.B) {
		benchDissemination(b, nil, []string{"Counter", "Cart"})
	})
}

func benchDissemination(b *testing.B, odd, even []string) {
	const n = 50
	srv := placement.New(placement.Options{Address: "127.0.0.1:0", BatchInterval: time.Millisecond})
	if err := srv.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer srv.Stop(context.Background())
	var cs []*client.Client
	for i := range n {
		c, err := client.New(client.Options{
			Addresses: []string{srv.Addr()},
			Name:      fmt.Sprintf("127.0.0.1:%d", 30000+i),
			AppID:     fmt.Sprintf("app-%d", i),
			Entities:  []string{"Counter", "Cart"},
		})
		if err != nil {
			b.Fatal(err)
		}
		c.Start()
		defer c.Close()
		cs = append(cs, c)
	}
	settle := func() placement.NamespaceState {
		deadline := time.Now().Add(30 * time.Second)
		for {
			var st placement.NamespaceState
			for _, ns := range srv.State(context.Background()).Namespaces {
				st = ns
			}
			ok := !st.Disseminating && len(st.Members) >= n-1
			for _, c := range cs {
				ok = ok && c.Version() == st.Version && !c.Locked()
			}
			if ok {
				return st
			}
			if time.Now().After(deadline) {
				b.Fatalf("not settled: %+v", st)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	settle()
	var rounds time.Duration
	b.ResetTimer()
	i := 0
	for b.Loop() {
		i++
		// One member adds, then drops, a type: a table change for all.
		if i%2 == 1 {
			cs[0].SetEntities(odd)
		} else {
			cs[0].SetEntities(even)
		}
		deadline := time.Now().Add(10 * time.Second)
		want := cs[1].Version() + 1
		for {
			st := settle()
			if st.Version >= want {
				rounds += st.LastRound
				break
			}
			if time.Now().After(deadline) {
				b.Fatal("no round")
			}
		}
	}
	b.ReportMetric(float64(rounds.Microseconds())/1000/float64(b.N), "round-ms")
}
