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
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, "", err
	}
	p, err := spawn(name, exec.Command(bin, args...), logDir, env, pw)
	pw.Close() // the child has its copy
	if err != nil {
		pr.Close()
		return nil, "", err
	}
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

// spawn starts cmd as the bench child process name: its stderr, and its
// stdout unless stdout is set, go to logDir/name.log, env is its
// environment (nil: this process's), and it gets a goroutine that waits
// for it and closes exited. The caller must call Stop.
func spawn(name string, cmd *exec.Cmd, logDir string, env []string, stdout *os.File) (*sidecarProc, error) {
	logPath := filepath.Join(logDir, name+".log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if stdout != nil {
		cmd.Stdout = stdout
	}
	cmd.Env = env
	cmd.SysProcAttr = childAttr()
	p := &sidecarProc{name: name, cmd: cmd, logPath: logPath, logFile: logFile, exited: make(chan struct{}), started: time.Now()}
	if env != nil {
		p.pprofAddr = envValue(env, pprofEnv)
	}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting %s: %w", strings.Join(cmd.Args, " "), err)
	}
	// The waiter ends when the process does; Stop makes sure it does.
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}
