package jetstream_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// serverEnv makes the test binary act as an embedded nats-server (see
// TestMain): "PORT STOREDIR".
const serverEnv = "JETSTREAM_TEST_SERVER"

func TestMain(m *testing.M) {
	if v := os.Getenv(serverEnv); v != "" {
		os.Exit(serveChild(v))
	}
	os.Exit(m.Run())
}

// serveChild runs nats-server with JetStream on 127.0.0.1, prints
// "listening PORT" once it is ready, and shuts down gracefully when its
// stdin closes (so it never outlives the test that started it).
func serveChild(spec string) int {
	var port int
	var store string
	if _, err := fmt.Sscan(spec, &port, &store); err != nil {
		fmt.Fprintln(os.Stderr, "bad", serverEnv, spec, err)
		return 2
	}
	ns, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: store,
		MaxPayload: 8 << 20, NoSigs: true, NoLog: true,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		fmt.Fprintln(os.Stderr, "not ready after 10s")
		return 1
	}
	fmt.Printf("listening %d\n", ns.Addr().(*net.TCPAddr).Port)
	_, _ = io.Copy(io.Discard, os.Stdin)
	ns.Shutdown()
	ns.WaitForShutdown()
	return 0
}

// serverProcess is an embedded nats-server in a child process, restartable
// on the same port and store directory.
type serverProcess struct {
	t     *testing.T
	store string
	port  int

	cmd   *exec.Cmd
	stdin io.WriteCloser
}

func startServerProcess(t *testing.T) *serverProcess {
	t.Helper()
	s := &serverProcess{t: t, store: t.TempDir(), port: server.RANDOM_PORT}
	s.start()
	t.Cleanup(s.stop)
	return s
}

func (s *serverProcess) start() {
	s.t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), serverEnv+"="+strconv.Itoa(s.port)+" "+s.store)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		s.t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		s.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	port, perr := strconv.Atoi(strings.TrimPrefix(strings.TrimSpace(line), "listening "))
	if err != nil || perr != nil {
		stdin.Close()
		_ = cmd.Wait()
		s.t.Fatalf("server process: %q, %v", line, err)
	}
	s.cmd, s.stdin, s.port = cmd, stdin, port
}

// stop closes the child's stdin (it shuts down gracefully) and waits for
// it; a child that hangs is killed, by its PID, after 20s.
func (s *serverProcess) stop() {
	if s.cmd == nil {
		return
	}
	s.stdin.Close()
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			s.t.Errorf("server process: %v", err)
		}
	case <-time.After(20 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
		s.t.Error("server process did not stop within 20s; killed")
	}
	s.cmd = nil
}

// restart stops the server and starts a new one on the same port and
// store directory.
func (s *serverProcess) restart(t *testing.T) {
	s.stop()
	time.Sleep(500 * time.Millisecond) // the outage: publishes and pulls fail meanwhile
	s.start()
}

func (s *serverProcess) url() string { return "nats://127.0.0.1:" + strconv.Itoa(s.port) }
