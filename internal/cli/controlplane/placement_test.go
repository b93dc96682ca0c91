package controlplane_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mecha-dev/mecha/internal/cli/controlplane"
	"github.com/mecha-dev/mecha/internal/placement/client"
	"github.com/mecha-dev/mecha/internal/selfhosted"
	"github.com/mecha-dev/mecha/internal/syncbuf"
)

// plFreePort returns a port that was free a moment ago.
func plFreePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// plRun runs `mecha control-plane args...` in this process until the
// returned stop is called; stop returns the command's error.
func plRun(t *testing.T, args ...string) (stop func() error, logs *syncbuf.Buffer) {
	t.Helper()
	cmd := controlplane.Command()
	cmd.SetArgs(args)
	logs = &syncbuf.Buffer{}
	cmd.SetOut(logs)
	cmd.SetErr(logs)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(30 * time.Second):
				err = fmt.Errorf("control-plane %v did not stop", args)
			}
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop, logs
}

func plHealthz(addr string) (int, map[string]any, error) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + addr + "/healthz")
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var h map[string]any
	err = json.NewDecoder(resp.Body).Decode(&h)
	return resp.StatusCode, h, err
}

func plEventually(t *testing.T, within time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", within, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The local control plane hosts a standalone placement on the port the
// home used last, records its address, reports it in /healthz and in
// `status`, and serves sidecars; with --placement-mtls=false, plaintext
// ones (see TestLocalPlacementMTLS for the default).
func TestLocalControlPlaneHostsPlacement(t *testing.T) {
	home := t.TempDir()
	t.Setenv("MECHA_HOME", home)
	l := selfhosted.LayoutAt(home)
	want := fmt.Sprintf("127.0.0.1:%d", plFreePort(t))
	if err := selfhosted.WriteControlPlane(l, selfhosted.ControlPlaneState{Placement: want}); err != nil {
		t.Fatal(err)
	}
	stop, logs := plRun(t, "--local", "--broker-port", "0", "--healthz-port", "0", "--placement-mtls=false")
	var st selfhosted.ControlPlaneState
	plEventually(t, 15*time.Second, func() error {
		var ok bool
		var err error
		st, ok, err = selfhosted.ReadControlPlane(l)
		if err != nil || !ok || st.PID == 0 {
			return fmt.Errorf("state %+v %v (log: %s)", st, err, logs)
		}
		return nil
	})
	if st.Placement != want {
		t.Fatalf("placement recorded at %q, want the home's last %q", st.Placement, want)
	}
	code, h, err := plHealthz(st.Healthz)
	parts, _ := h["parts"].(map[string]any)
	if err != nil || code != http.StatusOK || parts["placement"] != "ok" || parts["broker"] != "ok" {
		t.Fatalf("/healthz = %d %v %v", code, h, err)
	}

	status := controlplane.Command()
	var out bytes.Buffer
	status.SetOut(&out)
	status.SetArgs([]string{"status"})
	if err := status.Execute(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "placement "+want) {
		t.Errorf("status printed %q", out.String())
	}

	c, err := client.New(client.Options{Addresses: []string{st.Placement}, Name: "127.0.0.1:41001", AppID: "a", Entities: []string{"Counter"}})
	if err != nil {
		t.Fatal(err)
	}
	c.Start()
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.WaitVersion(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if h, ok := c.Lookup("Counter", "1"); !ok || h != "127.0.0.1:41001" {
		t.Fatalf("lookup %q %v", h, ok)
	}
	if err := stop(); err != nil {
		t.Fatalf("control plane: %v\n%s", err, logs)
	}
	after, _, _ := selfhosted.ReadControlPlane(l)
	if after.PID != 0 || after.Placement != want {
		t.Errorf("state after stop %+v", after)
	}
}

// Without --local, three processes' worth of `mecha control-plane` form a
// raft placement cluster: all report healthy once a leader is elected,
// a sidecar listing all three finds the leader, and when the node it uses
// stops, it moves to the new leader with its table.
func TestPlacementClusterFlags(t *testing.T) {
	const n = 3
	var peers []string
	var grpcAddrs, healthAddrs []string
	for i := range n {
		peers = append(peers, fmt.Sprintf("p%d=127.0.0.1:%d", i, plFreePort(t)))
		grpcAddrs = append(grpcAddrs, fmt.Sprintf("127.0.0.1:%d", plFreePort(t)))
		healthAddrs = append(healthAddrs, fmt.Sprintf("127.0.0.1:%d", plFreePort(t)))
	}
	var stops []func() error
	var logs []*syncbuf.Buffer
	for i := range n {
		_, gport, _ := net.SplitHostPort(grpcAddrs[i])
		_, hport, _ := net.SplitHostPort(healthAddrs[i])
		stop, lg := plRun(t,
			"--placement-id", fmt.Sprintf("p%d", i),
			"--placement-peers", strings.Join(peers, ","),
			"--placement-port", gport,
			"--healthz-port", hport,
			"--placement-raft-dir", t.TempDir(),
			"--placement-replication-factor", "10")
		stops = append(stops, stop)
		logs = append(logs, lg)
	}
	plEventually(t, 20*time.Second, func() error {
		for i, a := range healthAddrs {
			if code, h, err := plHealthz(a); err != nil || code != http.StatusOK {
				return fmt.Errorf("node %d /healthz %d %v %v (log: %s)", i, code, h, err, logs[i])
			}
		}
		return nil
	})

	c, err := client.New(client.Options{Addresses: grpcAddrs, Name: "127.0.0.1:41002", AppID: "a", Entities: []string{"Counter"},
		MinBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	c.Start()
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := c.WaitVersion(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if rf := c.Tables().ReplicationFactor(); rf != 10 {
		t.Fatalf("replication factor %d, want the flag's 10", rf)
	}
	leader := c.Address()
	for i, a := range grpcAddrs {
		if a == leader {
			if err := stops[i](); err != nil {
				t.Fatalf("stopping node %d: %v", i, err)
			}
		}
	}
	plEventually(t, 15*time.Second, func() error {
		if a := c.Address(); a == "" || a == leader || c.Locked() {
			return fmt.Errorf("client on %q (old leader %s)", a, leader)
		}
		if h, ok := c.Lookup("Counter", "x"); !ok || h != "127.0.0.1:41002" {
			return fmt.Errorf("lookup %q %v", h, ok)
		}
		return nil
	})
	for i, stop := range stops {
		if err := stop(); err != nil {
			t.Errorf("node %d: %v", i, err)
		}
	}
}

// A bad peer list is refused before anything starts.
func TestPlacementClusterBadPeers(t *testing.T) {
	cmd := controlplane.Command()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs([]string{"--placement-peers", "p0=nohostport", "--healthz-port", "0", "--placement-port", "0"})
	if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), "p0=nohostport") {
		t.Fatalf("err = %v", err)
	}
}
