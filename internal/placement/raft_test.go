package placement_test

import (
	"context"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/mecha-dev/mecha/internal/placement"
)

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// startCluster starts n placement nodes replicating over raft on
// 127.0.0.1, with raft-boltdb logs in temp dirs.
func startCluster(t *testing.T, n int) []*placement.Server {
	t.Helper()
	var peers []placement.Peer
	var raftLns []net.Listener
	for i := range n {
		ln := listen(t)
		raftLns = append(raftLns, ln)
		peers = append(peers, placement.Peer{ID: fmt.Sprintf("placement-%d", i), Address: ln.Addr().String()})
	}
	var servers []*placement.Server
	for i := range n {
		servers = append(servers, startServer(t, placement.Options{
			Listener:         listen(t),
			HeartbeatTimeout: 3 * time.Second,
			Raft: &placement.RaftOptions{
				ID:                 peers[i].ID,
				Peers:              peers,
				Dir:                t.TempDir(),
				Listener:           raftLns[i],
				HeartbeatTimeout:   500 * time.Millisecond,
				ElectionTimeout:    500 * time.Millisecond,
				LeaderLeaseTimeout: 250 * time.Millisecond,
			},
		}))
	}
	return servers
}

// waitLeader waits for exactly one leader among servers.
func waitLeader(t *testing.T, servers []*placement.Server, within time.Duration) *placement.Server {
	t.Helper()
	var leader *placement.Server
	eventually(t, within, func() error {
		leader = nil
		for _, s := range servers {
			if s.IsLeader() {
				if leader != nil {
					return fmt.Errorf("two leaders")
				}
				leader = s
			}
		}
		if leader == nil {
			return fmt.Errorf("no leader")
		}
		return nil
	})
	return leader
}

// Three nodes: only the leader serves; the membership is replicated; when
// the leader dies, another is elected, sidecars reconnect to it and get a
// table with the membership intact, and new members still join.
func TestRaftClusterFailover(t *testing.T) {
	servers := startCluster(t, 3)
	start := time.Now()
	leader := waitLeader(t, servers, 15*time.Second)
	t.Logf("first leader %s after %v", leader.Addr(), time.Since(start).Round(time.Millisecond))
	var addrs []string
	for _, s := range servers {
		addrs = append(addrs, s.Addr())
		if err := s.Healthy(); err != nil {
			t.Errorf("%s unhealthy with a leader: %v", s.Addr(), err)
		}
	}

	// A follower refuses streams, in Dapr's words.
	for _, s := range servers {
		if s == leader {
			continue
		}
		st := dialRaw(t, s.Addr(), "10.1.1.1:1", []string{"X"}).waitEnd(t, 5*time.Second)
		if st.Code() != codes.FailedPrecondition || st.Message() == "" {
			t.Fatalf("follower answered %v", st)
		}
		break
	}

	j := &journal{}
	a := startSidecar(t, j, addrs, sidecarOpts{entities: []string{"Counter"}})
	b := startSidecar(t, j, addrs, sidecarOpts{entities: []string{"Counter", "Cart"}})
	c := startSidecar(t, j, addrs, sidecarOpts{}) // calls actors, hosts none
	all := []*sidecar{a, b, c}
	wantHosts := names(a, b)
	settled := func(l *placement.Server) error {
		for _, s := range all {
			if s.c.Address() != l.Addr() {
				return fmt.Errorf("%s is on %q, the leader is %s", s.name, s.c.Address(), l.Addr())
			}
			if got := hostsOf(s, "Counter"); !slices.Equal(got, wantHosts) || s.c.Locked() {
				return fmt.Errorf("%s sees Counter hosts %v (locked %v)", s.name, got, s.c.Locked())
			}
		}
		return nil
	}
	eventually(t, 10*time.Second, func() error { return settled(leader) })
	version := nsState(t, leader, "").Version

	// The followers hold the same membership and version.
	for _, s := range servers {
		if s == leader {
			continue
		}
		eventually(t, 5*time.Second, func() error {
			st := s.State(context.Background())
			if st.Leader || len(st.Namespaces) != 1 {
				return fmt.Errorf("follower state %+v", st)
			}
			if n := st.Namespaces[0]; n.Version != version || !slices.Equal(memberNames(n), wantHosts) {
				return fmt.Errorf("follower has version %d members %v, leader %d %v", n.Version, memberNames(n), version, wantHosts)
			}
			return nil
		})
	}
	unlocks := map[string]int{}
	for _, s := range all {
		unlocks[s.name] = j.count(s.name, "unlock")
	}

	// Kill the leader.
	killed := time.Now()
	if err := leader.Kill(); err != nil {
		t.Logf("kill: %v", err)
	}
	var rest []*placement.Server
	for _, s := range servers {
		if s != leader {
			rest = append(rest, s)
		}
	}
	next := waitLeader(t, rest, 15*time.Second)
	elected := time.Since(killed)
	eventually(t, 10*time.Second, func() error {
		if err := settled(next); err != nil {
			return err
		}
		for _, s := range all {
			if j.count(s.name, "unlock") <= unlocks[s.name] {
				return fmt.Errorf("%s got no table from the new leader", s.name)
			}
		}
		return nil
	})
	reconnected := time.Since(killed)
	t.Logf("leader killed: new leader after %v, all sidecars on it with the table after %v", elected.Round(time.Millisecond), reconnected.Round(time.Millisecond))
	n := nsState(t, next, "")
	if !slices.Equal(memberNames(n), wantHosts) || n.Version < version {
		t.Fatalf("new leader has version %d members %v; before: %d %v", n.Version, memberNames(n), version, wantHosts)
	}
	for _, s := range all {
		if s.c.Version() < version {
			t.Fatalf("%s went back to version %d", s.name, s.c.Version())
		}
	}

	// The two survivors still commit: a new member joins.
	d := startSidecar(t, j, addrs, sidecarOpts{entities: []string{"Counter"}})
	all = append(all, d)
	wantHosts = names(a, b, d)
	eventually(t, 10*time.Second, func() error { return settled(next) })
	if v := nsState(t, next, "").Version; v <= n.Version {
		t.Fatalf("version %d after a join, was %d", v, n.Version)
	}
	checkRounds(t, j)
}

func TestParsePeers(t *testing.T) {
	got, err := placement.ParsePeers(" p0=127.0.0.1:8201, p1=host-1:8201,,p2=[::1]:8201 ")
	if err != nil {
		t.Fatal(err)
	}
	want := []placement.Peer{{ID: "p0", Address: "127.0.0.1:8201"}, {ID: "p1", Address: "host-1:8201"}, {ID: "p2", Address: "[::1]:8201"}}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v", got)
	}
	for _, bad := range []string{"p0", "=1.2.3.4:1", "p0=nohost", "p0=a:1,p0=b:1"} {
		if _, err := placement.ParsePeers(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}
