package sdk

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"github.com/dapr/go-sdk/client"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func inMemoryStore(md map[string]string) map[string]string {
	if md == nil {
		md = map[string]string{}
	}
	md["actorStateStore"] = "true"
	return map[string]string{storeName + ".yaml": componentYAML(storeName, "state.in-memory", md)}
}

func TestSDKMetadata(t *testing.T) {
	t.Parallel()
	s := startSidecar(t, sidecarConfig{Resources: inMemoryStore(nil)})
	c := s.sdkClient(t)

	md, err := c.GetMetadata(ctxT(t))
	must(t, "GetMetadata", err)
	if md.ID != s.AppID {
		t.Errorf("ID = %q, want %q", md.ID, s.AppID)
	}
	if len(md.RegisteredComponents) != 1 {
		t.Fatalf("RegisteredComponents = %+v, want exactly the statestore", md.RegisteredComponents)
	}
	rc := md.RegisteredComponents[0]
	if rc.Name != storeName || rc.Type != "state.in-memory" || rc.Version != "v1" {
		t.Errorf("component = %+v, want statestore state.in-memory v1", rc)
	}
	for _, cap := range []string{"ETAG", "TRANSACTIONAL", "ACTOR"} {
		if !slices.Contains(rc.Capabilities, cap) {
			t.Errorf("capabilities %v lack %s", rc.Capabilities, cap)
		}
	}

	must(t, "SetMetadata", c.SetMetadata(ctxT(t), "sdkKey", "sdk value with spaces"))
	must(t, "SetMetadata", c.SetMetadata(ctxT(t), "other", "1"))
	md, err = c.GetMetadata(ctxT(t))
	must(t, "GetMetadata", err)
	if got := md.ExtendedMetadata["sdkKey"]; got != "sdk value with spaces" {
		t.Errorf("ExtendedMetadata[sdkKey] = %q, want the value set (extended: %v)", got, md.ExtendedMetadata)
	}
	// Overwrite.
	must(t, "SetMetadata", c.SetMetadata(ctxT(t), "sdkKey", "v2"))
	md, err = c.GetMetadata(ctxT(t))
	must(t, "GetMetadata", err)
	if got := md.ExtendedMetadata["sdkKey"]; got != "v2" {
		t.Errorf("ExtendedMetadata[sdkKey] after overwrite = %q, want v2", got)
	}
	// The same value is visible over HTTP.
	if got := s.metadata(t).Extended["sdkKey"]; got != "v2" {
		t.Errorf("HTTP extended[sdkKey] = %q, want v2", got)
	}

	// The raw gRPC response carries a runtime version and the actor runtime.
	raw, err := c.GrpcClient().GetMetadata(ctxT(t), &pb.GetMetadataRequest{})
	must(t, "GrpcClient().GetMetadata", err)
	if raw.GetRuntimeVersion() == "" {
		t.Errorf("runtime_version is empty")
	}
}

func TestSDKShutdown(t *testing.T) {
	t.Parallel()
	s := startSidecar(t, sidecarConfig{Resources: inMemoryStore(nil)})
	c := s.sdkClient(t)
	must(t, "SaveState before shutdown", c.SaveState(ctxT(t), storeName, "k", []byte("v"), nil))
	start := time.Now()
	must(t, "Shutdown", c.Shutdown(ctxT(t)))
	code, exited := s.waitExit(8 * time.Second)
	if !exited {
		t.Fatalf("sidecar still running %v after Shutdown", time.Since(start))
	}
	if code != 0 {
		t.Fatalf("sidecar exit code after Shutdown = %d, want 0", code)
	}
	t.Logf("sidecar exited %v after Shutdown", time.Since(start).Round(time.Millisecond))
}

func TestSDKUnimplemented(t *testing.T) {
	t.Parallel()
	s := startSidecar(t, sidecarConfig{Resources: inMemoryStore(nil)})
	c := s.sdkClient(t)
	g := c.GrpcClient()

	_, err := g.ScheduleJobAlpha1(ctxT(t), &pb.ScheduleJobRequest{Job: &pb.Job{Name: "j"}})
	expectCode(t, "ScheduleJobAlpha1", err, codes.Unimplemented)
	if !strings.Contains(status.Convert(err).Message(), "ScheduleJobAlpha1") {
		t.Errorf("ScheduleJobAlpha1: message %q does not name the method", status.Convert(err).Message())
	}

	_, err = g.QueryStateAlpha1(ctxT(t), &pb.QueryStateRequest{StoreName: storeName, Query: `{"filter":{}}`})
	expectCode(t, "QueryStateAlpha1", err, codes.Unimplemented)
	if !strings.Contains(status.Convert(err).Message(), "QueryStateAlpha1") {
		t.Errorf("QueryStateAlpha1: message %q does not name the method", status.Convert(err).Message())
	}

	// The SDK wrapper reports the same code.
	_, err = c.QueryStateAlpha1(ctxT(t), storeName, `{"filter":{}}`, nil)
	expectCode(t, "client.QueryStateAlpha1", err, codes.Unimplemented)

	// The sidecar keeps serving.
	must(t, "SaveState after unimplemented calls", c.SaveState(ctxT(t), storeName, "k", []byte("v"), nil))
}

// TestSDKKeyPrefix checks Dapr's key scheme on stores that two sidecars can
// share: by default keys are prefixed with the app id, so apps do not see
// each other's keys; keyPrefix=name prefixes with the component name, so
// they do.
func TestSDKKeyPrefix(t *testing.T) {
	t.Parallel()
	for _, st := range stateStores {
		if !st.Shared {
			continue
		}
		t.Run(st.Name, func(t *testing.T) {
			t.Parallel()
			st.requireService(t)
			dir := t.TempDir()

			t.Run("appid", func(t *testing.T) {
				a := startStoreSidecar(t, st, sidecarConfig{AppID: "kp-a-" + uniqueID()}, dir, storeName, nil)
				b := startStoreSidecar(t, st, sidecarConfig{AppID: "kp-b-" + uniqueID()}, dir, storeName, nil)
				ca, cb := a.sdkClient(t), b.sdkClient(t)
				must(t, "A SaveState", ca.SaveState(ctxT(t), storeName, "same-key", []byte("from A"), nil))
				expectMissing(t, cb, "same-key")
				must(t, "B SaveState", cb.SaveState(ctxT(t), storeName, "same-key", []byte("from B"), nil))
				expectValue(t, ca, "same-key", []byte("from A"))
				expectValue(t, cb, "same-key", []byte("from B"))
				must(t, "B DeleteState", cb.DeleteState(ctxT(t), storeName, "same-key", nil))
				expectValue(t, ca, "same-key", []byte("from A"))

				if st.Type == "state.redis" {
					// daprd's layout: hash "<appid>||<key>" with field data.
					got, err := redisHGet(os.Getenv("REDIS_ADDR"), a.AppID+"||same-key", "data")
					must(t, "HGET in Redis", err)
					if got != "from A" {
						t.Errorf("Redis HGET %s||same-key data = %q, want %q", a.AppID, got, "from A")
					}
				}
			})

			t.Run("name", func(t *testing.T) {
				// A unique component name keeps runs against a shared
				// service apart.
				name := "shared" + uniqueID()
				extra := map[string]string{"keyPrefix": "name"}
				a := startStoreSidecar(t, st, sidecarConfig{AppID: "kpn-a-" + uniqueID()}, dir, name, extra)
				b := startStoreSidecar(t, st, sidecarConfig{AppID: "kpn-b-" + uniqueID()}, dir, name, extra)
				ca, cb := a.sdkClient(t), b.sdkClient(t)
				must(t, "A SaveState", ca.SaveState(ctxT(t), name, "shared-key", []byte("from A"), nil))
				item, err := cb.GetState(ctxT(t), name, "shared-key", nil)
				must(t, "B GetState", err)
				if string(item.Value) != "from A" {
					t.Fatalf("B reads %q, want the value A saved (keyPrefix=name shares keys)", item.Value)
				}
				// ETags are shared too: A's etag works for B.
				_, etagA, err := getWith(t, ca, name, "shared-key")
				must(t, "A GetState", err)
				must(t, "B SaveStateWithETag (A's etag)", cb.SaveStateWithETag(ctxT(t), name, "shared-key", []byte("from B"), etagA, nil))
				got, _, err := getWith(t, ca, name, "shared-key")
				must(t, "A GetState", err)
				if string(got) != "from B" {
					t.Fatalf("A reads %q after B's write, want %q", got, "from B")
				}
				must(t, "B DeleteState", cb.DeleteState(ctxT(t), name, "shared-key", nil))
				got, _, err = getWith(t, ca, name, "shared-key")
				must(t, "A GetState", err)
				if len(got) != 0 {
					t.Fatalf("A reads %q after B deleted the key", got)
				}
				if st.Type == "state.redis" {
					must(t, "A SaveState", ca.SaveState(ctxT(t), name, "shared-key", []byte("raw"), nil))
					v, err := redisHGet(os.Getenv("REDIS_ADDR"), name+"||shared-key", "data")
					must(t, "HGET in Redis", err)
					if v != "raw" {
						t.Errorf("Redis HGET %s||shared-key data = %q, want raw", name, v)
					}
					must(t, "A DeleteState", ca.DeleteState(ctxT(t), name, "shared-key", nil))
				}
			})
		})
	}
}

// getWith reads key from store on c.
func getWith(t testing.TB, c client.Client, store, key string) ([]byte, string, error) {
	t.Helper()
	item, err := c.GetState(ctxT(t), store, key, nil)
	if err != nil {
		return nil, "", err
	}
	return item.Value, item.Etag, nil
}

// redisHGet runs HGET over a plain RESP connection (no client library): it
// checks the storage layout daprd uses, which Mecha must share.
func redisHGet(addr, key, field string) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	var cmd bytes.Buffer
	args := []string{"HGET", key, field}
	fmt.Fprintf(&cmd, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&cmd, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := conn.Write(cmd.Bytes()); err != nil {
		return "", err
	}
	r := bufio.NewReader(conn)
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	switch {
	case strings.HasPrefix(line, "-"):
		return "", errors.New(line[1:])
	case line == "$-1":
		return "", nil
	case strings.HasPrefix(line, "$"):
		n, err := strconv.Atoi(line[1:])
		if err != nil {
			return "", fmt.Errorf("bad RESP length %q", line)
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	}
	return "", fmt.Errorf("unexpected RESP reply %q", line)
}

// TestNoStateStores: a sidecar without any state store answers state calls
// with ERR_STATE_STORE_NOT_CONFIGURED (HTTP 500, gRPC FailedPrecondition).
func TestNoStateStores(t *testing.T) {
	t.Parallel()
	s := startSidecar(t, sidecarConfig{})
	r := s.do(t, http.MethodGet, statePath+"/k", nil)
	expectError(t, "GET state without stores", r, http.StatusInternalServerError, "ERR_STATE_STORE_NOT_CONFIGURED")
	r = s.doJSON(t, http.MethodPost, statePath, []saveJSON{{Key: "k", Value: 1}})
	expectError(t, "POST state without stores", r, http.StatusInternalServerError, "ERR_STATE_STORE_NOT_CONFIGURED")

	c := s.sdkClient(t)
	_, err := c.GetState(ctxT(t), storeName, "k", nil)
	expectCode(t, "GetState without stores", err, codes.FailedPrecondition)
	err = c.SaveState(ctxT(t), storeName, "k", []byte("v"), nil)
	expectCode(t, "SaveState without stores", err, codes.FailedPrecondition)

	md, err := c.GetMetadata(ctxT(t))
	must(t, "GetMetadata", err)
	if len(md.RegisteredComponents) != 0 {
		t.Errorf("RegisteredComponents = %+v, want none", md.RegisteredComponents)
	}
	expectStatus(t, "healthz", s.do(t, http.MethodGet, "/v1.0/healthz", nil), http.StatusNoContent)
}

// TestSIGTERM: the sidecar shuts down gracefully and exits 0 on SIGTERM, as
// daprd does (how `dapr stop`, Kubernetes and systemd stop it).
func TestSIGTERM(t *testing.T) {
	t.Parallel()
	s := startSidecar(t, sidecarConfig{Resources: inMemoryStore(nil)})
	c := s.sdkClient(t)
	must(t, "SaveState", c.SaveState(ctxT(t), storeName, "k", []byte("v"), nil))
	must(t, "SIGTERM", s.cmd.Process.Signal(syscall.SIGTERM))
	code, exited := s.waitExit(8 * time.Second)
	if !exited {
		t.Fatal("sidecar still running 8s after SIGTERM")
	}
	if code != 0 {
		t.Fatalf("exit code after SIGTERM = %d, want 0", code)
	}
}
