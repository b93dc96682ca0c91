// Package stop is `mecha stop`: it stops running apps by app id, or every
// app of a run template, the gentle way first. It finds each app's sidecars
// in the host's name resolution registry and asks each to shut down through
// its API (POST /v1.0/shutdown); `mecha run` then stops the app. Only when
// that API cannot be reached does it send SIGTERM to the recorded process,
// and only if /proc says that process is still a mecha (a pid may have been
// reused since it was recorded). It then waits until the entries leave the
// registry, so that when it returns the apps are gone.
//
// The dapr CLI kills the recorded processes instead; asking first lets the
// sidecar drain in-flight calls and, in a multi-app run, stop only the app
// asked for (the others share the process).
package stop

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/mecha-dev/mecha/components/nameresolution"
	"github.com/mecha-dev/mecha/internal/cli/list"
	"github.com/mecha-dev/mecha/internal/cli/run/runfile"
	"github.com/mecha-dev/mecha/internal/selfhosted"
)

// Command returns `mecha stop`.
func Command() *cobra.Command {
	var (
		appIDs       []string
		runFile      string
		timeout      int
		controlPlane bool
	)
	cmd := &cobra.Command{
		Use:   "stop (--app-id ID | ID... | -f TEMPLATE | --control-plane) [--timeout SECONDS]",
		Short: "Stop running apps and their sidecars",
		Long: `Stop the apps with the given ids (all their instances), or every app of a
multi-app run template, and their sidecars. Each sidecar is asked to shut down
through its API; if that cannot be reached, its process gets SIGTERM. mecha
stop returns once the apps have left the registry of running apps, or fails
after --timeout seconds.

With --control-plane it also stops the local control plane that mecha init
and mecha run start in the background (after the apps, when some are named).`,
		Example: `  mecha stop --app-id orders
  mecha stop -f examples/apps.yaml
  mecha stop --control-plane`,
		RunE: func(cmd *cobra.Command, args []string) error {
			ids := append(slices.Clone(appIDs), args...)
			fromTemplate := ""
			if runFile != "" {
				tpl, err := runfile.Load(runFile)
				if err != nil {
					return err
				}
				fromTemplate = tpl.Path
				for _, a := range tpl.Apps {
					ids = append(ids, a.AppID)
				}
			}
			if len(ids) == 0 && !controlPlane {
				return errors.New("name the apps to stop: --app-id ID, or -f TEMPLATE for the apps of a run template")
			}
			if timeout <= 0 {
				return fmt.Errorf("--timeout %d must be positive (seconds)", timeout)
			}
			if len(ids) > 0 {
				s := &Stopper{Out: cmd.OutOrStdout(), Err: cmd.ErrOrStderr(), Timeout: time.Duration(timeout) * time.Second}
				if err := s.Stop(cmd.Context(), ids, fromTemplate); err != nil {
					return err
				}
			}
			if controlPlane {
				return stopControlPlane(cmd.Context(), cmd.OutOrStdout(), time.Duration(timeout)*time.Second)
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVarP(&appIDs, "app-id", "a", nil, "the app id to stop (repeatable; ids may also be given as arguments)")
	cmd.Flags().StringVarP(&runFile, "run-file", "f", "", "stop every app of this multi-app run template (a file, or a directory holding dapr.yaml)")
	cmd.Flags().IntVarP(&timeout, "timeout", "t", 15, "seconds to wait for the apps to stop")
	cmd.Flags().BoolVar(&controlPlane, "control-plane", false, "stop the local control plane (the embedded pub/sub broker)")
	cmd.Flags().BoolP("wait", "w", true, "accepted for dapr CLI compatibility: mecha stop always waits")
	cmd.Flags().Lookup("wait").Hidden = true
	return cmd
}

// stopControlPlane stops the local control plane of the Mecha home; one
// that is not running is reported, not an error.
func stopControlPlane(ctx context.Context, out io.Writer, timeout time.Duration) error {
	home, err := selfhosted.Home()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	st, err := selfhosted.StopControlPlane(ctx, selfhosted.LayoutAt(home))
	if errors.Is(err, selfhosted.ErrControlPlaneNotRunning) {
		fmt.Fprintln(out, "the local control plane is not running")
		return nil
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "stopped the local control plane (pid %d)\n", st.PID)
	return nil
}

// Stopper stops apps found in the registry.
type Stopper struct {
	Out, Err io.Writer
	// Timeout bounds the wait for the apps to leave the registry.
	Timeout time.Duration
	// Instances lists the live sidecars (default list.Instances).
	Instances func(context.Context) ([]nameresolution.Instance, error)
}

// Stop stops every instance of the apps ids. With template set (the ids
// come from that run template), apps that are not running are reported but
// only an error when none is; otherwise an unknown id is an error.
func (s *Stopper) Stop(ctx context.Context, ids []string, template string) error {
	if s.Instances == nil {
		s.Instances = list.Instances
	}
	all, err := s.Instances(ctx)
	if err != nil {
		return err
	}
	var errs []error
	var targets []nameresolution.Instance
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] {
			continue
		}
		seen[id] = true
		found := list.ByAppID(all, id)
		if len(found) == 0 {
			if template != "" {
				fmt.Fprintf(s.Err, "%s is not running\n", id)
				continue
			}
			errs = append(errs, fmt.Errorf("no running app with id %q (see mecha list)", id))
			continue
		}
		targets = append(targets, found...)
	}
	if template != "" && len(targets) == 0 {
		return fmt.Errorf("none of the apps of %s is running", template)
	}
	var asked []nameresolution.Instance
	for _, in := range targets {
		if err := s.request(ctx, in, all); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", in.AppID, err))
			continue
		}
		asked = append(asked, in)
	}
	errs = append(errs, s.wait(ctx, asked))
	return errors.Join(errs...)
}

// request asks one sidecar to shut down: its shutdown API, else SIGTERM.
func (s *Stopper) request(ctx context.Context, in nameresolution.Instance, all []nameresolution.Instance) error {
	err := shutdownAPI(ctx, in.HTTPPort)
	if err == nil {
		return nil
	}
	fmt.Fprintf(s.Err, "%s: the shutdown API did not answer (%v); sending SIGTERM to pid %d\n", in.AppID, err, in.PID)
	return s.terminate(in, all)
}

func shutdownAPI(ctx context.Context, port int) error {
	if port <= 0 {
		return errors.New("no HTTP port registered")
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://127.0.0.1:"+strconv.Itoa(port)+"/v1.0/shutdown", nil)
	if err != nil {
		return err
	}
	if tok := os.Getenv("DAPR_API_TOKEN"); tok != "" {
		req.Header.Set("dapr-api-token", tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("POST /v1.0/shutdown answered %s", resp.Status)
	}
	return nil
}

// terminate sends SIGTERM to the sidecar's process after checking it is
// still a mecha.
func (s *Stopper) terminate(in nameresolution.Instance, all []nameresolution.Instance) error {
	if in.PID <= 0 {
		return errors.New("no process id registered")
	}
	if in.PID == os.Getpid() {
		return fmt.Errorf("refusing to signal pid %d: it is this mecha stop", in.PID)
	}
	if err := looksLikeMecha(in.PID); err != nil {
		return err
	}
	var others []string
	for _, o := range all {
		if o.PID == in.PID && o.InstanceID != in.InstanceID && o.AppID != in.AppID {
			others = append(others, o.AppID)
		}
	}
	if len(others) > 0 {
		fmt.Fprintf(s.Err, "%s: pid %d also runs %v, which stop too\n", in.AppID, in.PID, others)
	}
	if err := syscall.Kill(in.PID, syscall.SIGTERM); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return nil // gone already: its entry expires
		}
		return fmt.Errorf("SIGTERM to pid %d: %w", in.PID, err)
	}
	return nil
}

// looksLikeMecha checks /proc/PID/cmdline: the program is named mecha* and
// runs `run` or `sidecar`. A registry entry outlives a crashed process by up
// to its TTL, and the pid may be reused meanwhile.
func looksLikeMecha(pid int) error {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return fmt.Errorf("cannot check that pid %d is a mecha process, not signalling it: %w", pid, err)
	}
	args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
	if len(args) > 0 && strings.HasPrefix(filepath.Base(args[0]), "mecha") &&
		(slices.Contains(args[1:], "run") || slices.Contains(args[1:], "sidecar")) {
		return nil
	}
	return fmt.Errorf("pid %d is %q, not a mecha run or mecha sidecar (its pid was reused?); not signalling it", pid, strings.Join(args, " "))
}

// wait polls the registry until the instances are gone.
func (s *Stopper) wait(ctx context.Context, asked []nameresolution.Instance) error {
	pending := map[string]nameresolution.Instance{}
	for _, in := range asked {
		pending[in.InstanceID] = in
	}
	ctx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for len(pending) > 0 {
		all, err := s.Instances(ctx)
		if err == nil {
			live := map[string]bool{}
			for _, in := range all {
				live[in.InstanceID] = true
			}
			for id, in := range pending {
				if !live[id] {
					delete(pending, id)
					if !stillRunning(pending, in.AppID) {
						fmt.Fprintf(s.Out, "app stopped: %s\n", in.AppID)
					}
				}
			}
			if len(pending) == 0 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			var ids []string
			for _, in := range pending {
				ids = append(ids, in.AppID)
			}
			slices.Sort(ids)
			return fmt.Errorf("%v still running after %v", slices.Compact(ids), s.Timeout)
		case <-t.C:
		}
	}
	return nil
}

func stillRunning(pending map[string]nameresolution.Instance, appID string) bool {
	for _, in := range pending {
		if in.AppID == appID {
			return true
		}
	}
	return false
}
