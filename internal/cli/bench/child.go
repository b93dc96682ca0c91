package bench

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// startLineProc execs bin with args (a bench helper process: the target
// app, the subscriber, the NATS server), its stderr going to
// logDir/name.log, and waits for the first line of its stdout, which says
// where it listens. It returns the process and that line (trimmed); the
// caller must call Stop. When the process exits first, or ctx ends, or
// no line comes within 30s, the process is stopped and an error returned.
func startLineProc(ctx context.Context, name, bin string, args []string, logDir string, env []string) (*sidecarProc, string, error) {
	logPath := filepath.Join(logDir, name+".log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, "", err
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		logFile.Close()
		return nil, "", err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = pw, logFile
	cmd.Env = env
	cmd.SysProcAttr = childAttr()
	p := &sidecarProc{name: name, cmd: cmd, logPath: logPath, logFile: logFile, exited: make(chan struct{}), started: time.Now()}
	if env != nil {
		p.pprofAddr = envValue(env, pprofEnv)
	}
	err = cmd.Start()
	pw.Close() // the child has its copy
	if err != nil {
		pr.Close()
		logFile.Close()
		return nil, "", fmt.Errorf("starting %s %s: %w", bin, strings.Join(args, " "), err)
	}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	// The reader ends with the first line, or at EOF when the child exits
	// (Stop below makes sure it does on failure).
	type line struct {
		s   string
		err error
	}
	lines := make(chan line, 1)
	go func() {
		defer pr.Close()
		s, err := bufio.NewReader(pr).ReadString('\n')
		lines <- line{s, err}
	}()
	fail := func(err error) (*sidecarProc, string, error) {
		_ = p.Stop()
		<-lines
		return nil, "", err
	}
	select {
	case l := <-lines:
		if l.err != nil {
			_ = p.Stop()
			return nil, "", fmt.Errorf("%s stopped before listening (%v): %s", name, p.waitErr, p.logTail())
		}
		return p, strings.TrimSpace(l.s), nil
	case <-ctx.Done():
		return fail(ctx.Err())
	case <-time.After(30 * time.Second):
		return fail(fmt.Errorf("%s not listening after 30s: %s", name, p.logTail()))
	}
}
