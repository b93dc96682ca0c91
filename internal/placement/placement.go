// Package placement is Mecha's actor placement service: Dapr's placement
// protocol (dapr.proto.placement.v1.Placement/ReportDaprStatus) served from
// `mecha control-plane`.
//
// Sidecars open one long-lived bidirectional stream each and report
// themselves (Host: name = host:port of their internal gRPC server, app id,
// namespace, actor types) every second. The leader keeps the members that
// host actor types per namespace, versions the namespace's tables, and
// disseminates each new version to every connected sidecar of the namespace
// in three phases, lock → update → unlock, each sent to all sidecars at
// once and closed by their acknowledgements (Host.operation and
// Host.version, as daprd 1.18 sends them) or by DisseminationTimeout, after
// which the silent ones are disconnected. The tables name each actor type's
// hosts and the replication factor; sidecars build the consistent-hashing
// rings themselves (internal/placement/ring).
//
// What differs from Dapr's placement, after its scaling issues (see
// shared/reference/dapr-api.md §8):
//   - Only changes of actor hosts start a round: a sidecar that hosts no
//     actor type gets the current table on connect, in a round of its own
//     that involves no other sidecar.
//   - Changes arriving within BatchInterval (and during a round) are
//     coalesced into one round, committed as one raft entry.
//   - Rounds go to all members in parallel, never one host after another.
//
// High availability: with RaftOptions, the membership and the table
// versions are replicated with hashicorp/raft (TCP transport, raft-boltdb
// log store or memory). Only the leader serves streams; followers refuse
// them with codes.FailedPrecondition ("node id=… is not a leader", Dapr's
// wording), and sidecars try the next address. A new leader starts from
// the replicated membership and versions, gives every member
// HeartbeatTimeout to reconnect, and sends each reconnecting sidecar the
// current table. Without RaftOptions the server runs alone (standalone,
// the self-hosted mode): always leader, membership in memory.
package placement

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	placementv1 "github.com/dapr/dapr/pkg/proto/placement/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"github.com/mecha-dev/mecha/internal/placement/hashing"
)

// Defaults.
const (
	// DefaultPort is Dapr's placement port.
	DefaultPort = 50005
	// DefaultHeartbeatTimeout is how long a member may stay silent before
	// it is removed. Sidecars report every second; Dapr removes after
	// about 6s.
	DefaultHeartbeatTimeout = 5 * time.Second
	// DefaultDisseminationTimeout bounds the wait for all acks of one
	// phase of a round.
	DefaultDisseminationTimeout = 3 * time.Second
	// DefaultBatchInterval is how long membership changes are collected
	// before a round starts.
	DefaultBatchInterval = 100 * time.Millisecond
)

// Options configure a Server.
type Options struct {
	// ID names the node in errors and logs (default: Raft.ID, else
	// "placement").
	ID string
	// Address is host:port to serve gRPC on (default 127.0.0.1:50005;
	// port 0 picks a free one, see Addr). Ignored when Listener is set.
	Address string
	// Listener, when set, is the gRPC listener.
	Listener net.Listener
	// ReplicationFactor is the number of virtual nodes per host in the
	// rings (default hashing.DefaultReplicationFactor).
	ReplicationFactor int
	// HeartbeatTimeout defaults to DefaultHeartbeatTimeout.
	HeartbeatTimeout time.Duration
	// DisseminationTimeout defaults to DefaultDisseminationTimeout.
	DisseminationTimeout time.Duration
	// BatchInterval defaults to DefaultBatchInterval.
	BatchInterval time.Duration
	// Raft, when set, replicates the membership across Raft.Peers; nil
	// runs one node alone.
	Raft *RaftOptions
	// TLS, when set, serves sidecars over mutual TLS only (tls.go); nil
	// serves plaintext.
	TLS *TLSOptions
	// Logger defaults to discarding.
	Logger *slog.Logger
}

// Server is the placement service, a control plane part.
type Server struct {
	placementv1.UnimplementedPlacementServer

	opts Options
	log  *slog.Logger
	fsm  *fsm

	connIDs atomic.Uint64
	// refusedAt is when a refusal was last logged, per client host.
	refusedAt sync.Map

	mu      sync.Mutex
	cons    consensus
	ln      net.Listener
	gs      *grpc.Server
	term    *term
	stopped bool
	wg      sync.WaitGroup // serve and watch goroutines
}

// New returns a server that has started nothing.
func New(opts Options) *Server {
	if opts.Address == "" {
		opts.Address = fmt.Sprintf("127.0.0.1:%d", DefaultPort)
	}
	if opts.ReplicationFactor <= 0 {
		opts.ReplicationFactor = hashing.DefaultReplicationFactor
	}
	if opts.HeartbeatTimeout <= 0 {
		opts.HeartbeatTimeout = DefaultHeartbeatTimeout
	}
	if opts.DisseminationTimeout <= 0 {
		opts.DisseminationTimeout = DefaultDisseminationTimeout
	}
	if opts.BatchInterval <= 0 {
		opts.BatchInterval = DefaultBatchInterval
	}
	if opts.ID == "" {
		if opts.Raft != nil && opts.Raft.ID != "" {
			opts.ID = opts.Raft.ID
		} else {
			opts.ID = "placement"
		}
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{opts: opts, log: log, fsm: newFSM()}
}

// Name is "placement".
func (s *Server) Name() string { return "placement" }

// Start listens, joins the raft cluster (or becomes the standalone
// leader) and serves. It returns once the gRPC port accepts connections;
// in a cluster, streams are refused until an election made this node the
// leader.
func (s *Server) Start(context.Context) (err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gs != nil || s.stopped {
		return errors.New("placement: started twice")
	}
	ln := s.opts.Listener
	if ln == nil {
		if ln, err = net.Listen("tcp", s.opts.Address); err != nil {
			return fmt.Errorf("placement: %w", err)
		}
	}
	if s.opts.Raft != nil {
		s.cons, err = newRaftNode(*s.opts.Raft, s.fsm, s.log)
		if err != nil {
			ln.Close()
			return err
		}
	} else {
		s.cons = newStandalone(s.fsm)
	}
	s.ln = ln
	gopts := []grpc.ServerOption{
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 10 * time.Second, Timeout: 5 * time.Second}),
	}
	if s.opts.TLS != nil {
		gopts = append(gopts, grpc.Creds(newServerCreds(s.opts.TLS)), grpc.ConnectionTimeout(10*time.Second))
	}
	s.gs = grpc.NewServer(gopts...)
	placementv1.RegisterPlacementServer(s.gs, s)
	gs, cons := s.gs, s.cons
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		if err := gs.Serve(ln); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			s.log.Error("placement gRPC server failed", "error", err)
		}
	}()
	go func() {
		defer s.wg.Done()
		s.watch(cons)
	}()
	mode := "standalone"
	if s.opts.Raft != nil {
		mode = fmt.Sprintf("raft, %d peers", len(s.opts.Raft.Peers))
	}
	s.log.Info("placement serving", "addr", ln.Addr().String(), "id", s.opts.ID, "mode", mode,
		"replicationFactor", s.opts.ReplicationFactor, "mtls", s.opts.TLS != nil)
	return nil
}

// watch starts a term whenever this node becomes the leader and ends it
// when it stops leading, until the consensus shuts down.
func (s *Server) watch(cons consensus) {
	for lead := range cons.leadership() {
		s.endTerm(notLeader(s.opts.ID))
		if lead {
			s.startTerm()
		}
	}
	s.endTerm(status.Error(codes.Unavailable, "placement server is shutting down"))
}

func (s *Server) startTerm() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return
	}
	s.term = newTerm(s)
	s.log.Info("placement leader", "id", s.opts.ID)
}

func (s *Server) endTerm(cause error) {
	s.mu.Lock()
	t := s.term
	s.term = nil
	s.mu.Unlock()
	if t != nil {
		t.stop(cause)
		s.log.Info("placement no longer leads", "id", s.opts.ID)
	}
}

func (s *Server) currentTerm() *term {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.term
}

// notLeader is a follower's answer to a stream, in Dapr's wording (daprd
// recognises it as routine and tries the next address).
func notLeader(id string) error {
	return status.Errorf(codes.FailedPrecondition, "node id=%s is not a leader. Only the leader can serve requests", id)
}

// Addr is the gRPC address ("" before Start).
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// IsLeader reports whether this node serves sidecars now.
func (s *Server) IsLeader() bool { return s.currentTerm() != nil }

// Healthy returns nil while the server serves: standalone once started;
// in a cluster while there is a leader, this node or another.
func (s *Server) Healthy() error {
	s.mu.Lock()
	cons, stopped := s.cons, s.stopped
	s.mu.Unlock()
	switch {
	case stopped:
		return errors.New("stopped")
	case cons == nil:
		return errors.New("not started")
	}
	return cons.healthy()
}

// Stop stops serving: open streams end with codes.Unavailable (sidecars
// reconnect elsewhere); a raft leader first hands leadership to a peer.
func (s *Server) Stop(ctx context.Context) error { return s.stop(ctx, true) }

// stop ends everything; graceful=false models a crash for tests (no
// leadership handover, streams cut).
func (s *Server) stop(ctx context.Context, graceful bool) error {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return nil
	}
	s.stopped = true
	gs, cons := s.gs, s.cons
	s.mu.Unlock()
	if gs == nil {
		return nil
	}
	var err error
	if graceful {
		// Hand leadership over first: this node's streams then end with
		// "not a leader" once a peer leads, and sidecars find it.
		err = cons.shutdown(true)
		s.endTerm(status.Error(codes.Unavailable, "placement server is shutting down"))
		done := make(chan struct{})
		go func() {
			gs.GracefulStop()
			close(done)
		}()
		select {
		case <-done:
		case <-ctx.Done():
			gs.Stop()
			<-done
		}
	} else {
		s.endTerm(status.Error(codes.Unavailable, "placement server is shutting down"))
		gs.Stop()
		err = cons.shutdown(false)
	}
	s.wg.Wait()
	return err
}

// ReportDaprStatus serves one sidecar: its reports and acks in, orders
// out.
func (s *Server) ReportDaprStatus(stream placementv1.Placement_ReportDaprStatusServer) error {
	id, verified, err := s.clientID(stream.Context())
	if err != nil {
		s.refused(stream.Context(), err)
		return err
	}
	t := s.currentTerm()
	if t == nil {
		return notLeader(s.opts.ID)
	}
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	if first.GetName() == "" {
		return status.Error(codes.InvalidArgument, "placement: the host report has no name")
	}
	if verified {
		if err := checkHost(first, id); err != nil {
			s.refused(stream.Context(), err)
			return err
		}
	}
	if op := first.GetOperation(); op != placementv1.HostOperation_REPORT && op != placementv1.HostOperation_UNKNOWN {
		return status.Errorf(codes.InvalidArgument, "placement: the first message must be a report, not %s", op)
	}
	ctx, cancel := context.WithCancelCause(stream.Context())
	defer cancel(nil)
	c := &conn{
		id:     s.connIDs.Add(1),
		ns:     first.GetNamespace(),
		name:   first.GetName(),
		out:    make(chan *placementv1.PlacementOrder, connBuffer),
		ctx:    ctx,
		cancel: cancel,
	}
	if !t.post(&evAdd{c: c, host: first}) {
		return t.cause()
	}
	go func() {
		for {
			h, err := stream.Recv()
			if err == nil && verified {
				err = checkHost(h, id)
			}
			if err != nil {
				cancel(err)
				t.post(&evClosed{c: c})
				return
			}
			if !t.post(&evReport{c: c, host: h}) {
				return
			}
		}
	}()
	for {
		select {
		case o := <-c.out:
			if err := stream.Send(o); err != nil {
				cancel(err)
				t.post(&evClosed{c: c})
				return err
			}
		case <-ctx.Done():
			cause := context.Cause(ctx)
			if _, ok := status.FromError(cause); ok {
				return cause
			}
			return status.FromContextError(ctx.Err()).Err()
		case <-t.ctx.Done():
			// The term ended, perhaps before its loop saw this stream.
			return t.cause()
		}
	}
}
