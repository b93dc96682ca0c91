package placement

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// Peer is one voter of the placement raft cluster.
type Peer struct {
	// ID names the node (Dapr's --id, e.g. "placement-0").
	ID string
	// Address is host:port of its raft transport.
	Address string
}

// ParsePeers parses "id=host:port,id=host:port,…" (Dapr's
// --initial-cluster form).
func ParsePeers(s string) ([]Peer, error) {
	var out []Peer
	seen := map[string]bool{}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		id, addr, ok := strings.Cut(item, "=")
		id, addr = strings.TrimSpace(id), strings.TrimSpace(addr)
		if !ok || id == "" || addr == "" {
			return nil, fmt.Errorf("placement peer %q: want id=host:port", item)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("placement peer %q: %w", item, err)
		}
		if seen[id] {
			return nil, fmt.Errorf("placement peer %q named twice", id)
		}
		seen[id] = true
		out = append(out, Peer{ID: id, Address: addr})
	}
	return out, nil
}

// RaftOptions configure high availability: several placement nodes that
// replicate the membership with hashicorp/raft over TCP. Only the leader
// serves sidecars.
type RaftOptions struct {
	// ID is this node's id; it must be one of Peers.
	ID string
	// Peers are all voters, this node included. Every node is started with
	// the same list; the cluster bootstraps itself from it.
	Peers []Peer
	// Dir keeps the raft log and snapshots (raft.db, snapshots/); ""
	// keeps them in memory, as Dapr's placement does by default: a node
	// that restarts empty catches up from the leader.
	Dir string
	// Listener, when set, is this node's raft listener (tests bind
	// 127.0.0.1:0 and name its address in Peers); else the node listens on
	// its address in Peers.
	Listener net.Listener
	// HeartbeatTimeout, ElectionTimeout and LeaderLeaseTimeout tune how
	// fast a lost leader is replaced (0: raft's defaults of 1s, 1s and
	// 500ms, which re-elect within about 2–3s).
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
}

// applyTimeout bounds one raft commit.
const applyTimeout = 5 * time.Second

// raftNode is consensus over hashicorp/raft.
type raftNode struct {
	r      *raft.Raft
	trans  *raft.NetworkTransport
	bolt   *raftboltdb.BoltStore
	log    *slog.Logger
	single bool

	lead   chan bool
	notify chan bool
	stop   chan struct{}
	done   chan struct{}

	once sync.Once
}

func newRaftNode(o RaftOptions, f *fsm, log *slog.Logger) (_ *raftNode, err error) {
	var self *Peer
	for i := range o.Peers {
		if o.Peers[i].ID == o.ID {
			self = &o.Peers[i]
		}
	}
	if self == nil {
		return nil, fmt.Errorf("placement: raft id %q is not among the peers", o.ID)
	}
	ln := o.Listener
	if ln == nil {
		if ln, err = net.Listen("tcp", self.Address); err != nil {
			return nil, fmt.Errorf("placement: raft listener: %w", err)
		}
	}
	advertise, err := net.ResolveTCPAddr("tcp", self.Address)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("placement: raft address %s: %w", self.Address, err)
	}
	hl := newHCLog(log.With("component", "raft"))
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  &tcpLayer{Listener: ln, advertise: advertise},
		MaxPool: 3,
		Timeout: 10 * time.Second,
		Logger:  hl,
	})
	n := &raftNode{trans: trans, log: log, single: len(o.Peers) == 1}
	defer func() {
		if err != nil {
			trans.Close()
			if n.bolt != nil {
				n.bolt.Close()
			}
		}
	}()

	var (
		logs   raft.LogStore
		stable raft.StableStore
		snaps  raft.SnapshotStore
	)
	if o.Dir == "" {
		mem := raft.NewInmemStore()
		logs, stable, snaps = mem, mem, raft.NewInmemSnapshotStore()
	} else {
		if err := os.MkdirAll(o.Dir, 0o750); err != nil {
			return nil, fmt.Errorf("placement: raft dir: %w", err)
		}
		n.bolt, err = raftboltdb.New(raftboltdb.Options{Path: filepath.Join(o.Dir, "raft.db")})
		if err != nil {
			return nil, fmt.Errorf("placement: raft log store: %w", err)
		}
		logs, stable = n.bolt, n.bolt
		if snaps, err = raft.NewFileSnapshotStoreWithLogger(o.Dir, 2, hl); err != nil {
			return nil, fmt.Errorf("placement: raft snapshot store: %w", err)
		}
	}

	conf := raft.DefaultConfig()
	conf.LocalID = raft.ServerID(o.ID)
	conf.Logger = hl
	if o.HeartbeatTimeout > 0 {
		conf.HeartbeatTimeout = o.HeartbeatTimeout
	}
	if o.ElectionTimeout > 0 {
		conf.ElectionTimeout = o.ElectionTimeout
	}
	if o.LeaderLeaseTimeout > 0 {
		conf.LeaderLeaseTimeout = o.LeaderLeaseTimeout
	}
	if conf.LeaderLeaseTimeout > conf.HeartbeatTimeout {
		conf.LeaderLeaseTimeout = conf.HeartbeatTimeout
	}
	n.notify = make(chan bool, 16)
	conf.NotifyCh = n.notify

	existing, err := raft.HasExistingState(logs, stable, snaps)
	if err != nil {
		return nil, fmt.Errorf("placement: raft state: %w", err)
	}
	r, err := raft.NewRaft(conf, &raftFSM{f: f}, logs, stable, snaps, trans)
	if err != nil {
		return nil, fmt.Errorf("placement: raft: %w", err)
	}
	n.r = r
	if !existing {
		var cfg raft.Configuration
		for _, p := range o.Peers {
			cfg.Servers = append(cfg.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.Address)})
		}
		// Every node bootstraps with the same configuration, which raft
		// allows; the first election decides.
		if err := r.BootstrapCluster(cfg).Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			_ = r.Shutdown().Error()
			return nil, fmt.Errorf("placement: raft bootstrap: %w", err)
		}
	}
	n.lead = make(chan bool, 16)
	n.stop = make(chan struct{})
	n.done = make(chan struct{})
	go n.relay()
	return n, nil
}

// relay turns raft's leadership notifications into leadership(): a node
// that became leader first waits (Barrier) until its FSM has applied every
// entry of earlier terms, so the new leader starts from the full
// membership.
func (n *raftNode) relay() {
	defer close(n.done)
	defer close(n.lead)
	for {
		select {
		case <-n.stop:
			return
		case l := <-n.notify:
			if l {
				if err := n.r.Barrier(applyTimeout).Error(); err != nil {
					n.log.Warn("new raft leader could not catch up; waiting for the next election", "error", err)
					continue
				}
				if n.r.State() != raft.Leader {
					continue
				}
			}
			select {
			case n.lead <- l:
			case <-n.stop:
				return
			}
		}
	}
}

func (n *raftNode) apply(ctx context.Context, c command) (uint64, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return 0, err
	}
	timeout := applyTimeout
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	fut := n.r.Apply(b, timeout)
	if err := fut.Error(); err != nil {
		return 0, err
	}
	switch v := fut.Response().(type) {
	case uint64:
		return v, nil
	case error:
		return 0, v
	}
	return 0, fmt.Errorf("placement: raft apply answered %T", fut.Response())
}

func (n *raftNode) leadership() <-chan bool { return n.lead }

func (n *raftNode) isLeader() bool { return n.r.State() == raft.Leader }

func (n *raftNode) healthy() error {
	if n.r.State() == raft.Leader {
		return nil
	}
	if _, id := n.r.LeaderWithID(); id != "" {
		return nil
	}
	return errors.New("no raft leader")
}

func (n *raftNode) shutdown(graceful bool) error {
	var err error
	n.once.Do(func() {
		if graceful && !n.single && n.r.State() == raft.Leader {
			if terr := n.r.LeadershipTransfer().Error(); terr != nil {
				n.log.Warn("could not hand over raft leadership", "error", terr)
			}
		}
		err = n.r.Shutdown().Error()
		close(n.stop)
		<-n.done
		if cerr := n.trans.Close(); cerr != nil && err == nil {
			err = cerr
		}
		if n.bolt != nil {
			if cerr := n.bolt.Close(); cerr != nil && err == nil {
				err = cerr
			}
		}
	})
	return err
}

// raftFSM applies committed commands to the membership FSM.
type raftFSM struct{ f *fsm }

func (r *raftFSM) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	var c command
	if err := json.Unmarshal(l.Data, &c); err != nil {
		return fmt.Errorf("placement: bad raft command: %w", err)
	}
	return r.f.apply(c)
}

func (r *raftFSM) Snapshot() (raft.FSMSnapshot, error) {
	var buf bytes.Buffer
	if err := r.f.encode(&buf); err != nil {
		return nil, err
	}
	return snapshot(buf.Bytes()), nil
}

func (r *raftFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	return r.f.restore(rc)
}

// snapshot is the FSM encoded at Snapshot time.
type snapshot []byte

func (s snapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (snapshot) Release() {}

// tcpLayer is raft's stream layer over a TCP listener we own, so that
// tests can hand in listeners bound to free ports before the peers' list
// is known.
type tcpLayer struct {
	net.Listener
	advertise net.Addr
}

func (l *tcpLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return net.DialTimeout("tcp", string(addr), timeout)
}

// Addr is the address peers know this node by.
func (l *tcpLayer) Addr() net.Addr { return l.advertise }
