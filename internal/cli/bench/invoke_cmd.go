package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// invokeFlags are the flags of invoke and invoke-all; the max-throughput
// mode takes -c, -d and --warmup from bench's own flags.
type invokeFlags struct {
	BodySize     int
	Rate         float64
	RateDuration time.Duration
	RateWorkers  int
	Spin         time.Duration
	Modes        string
	Conns        int
}

func (f *invokeFlags) addFlags(fs *pflag.FlagSet) {
	fs.IntVar(&f.BodySize, "body-size", 1024, "bytes of every request body (the app answers with as many)")
	fs.Float64Var(&f.Rate, "rate", 1000, "fixed-rate mode: requests started per second, on a steady schedule")
	fs.DurationVar(&f.RateDuration, "rate-duration", 10*time.Second, "fixed-rate mode: how long to measure, after --warmup")
	fs.IntVar(&f.RateWorkers, "rate-workers", 32, "fixed-rate mode: requests that may be in flight at once (late ones wait, and that counts)")
	fs.DurationVar(&f.Spin, "spin", 50*time.Microsecond, "fixed-rate mode: the pacer spins this long before each due time instead of sleeping (precision vs a little CPU; 0: sleep only)")
	fs.StringVar(&f.Modes, "modes", "rate,max", "which modes to run: rate (fixed rate, for latency), max (closed loop with -c workers, for throughput), or both")
	fs.IntVar(&f.Conns, "conns", 1, "gRPC client connections shared by the workers")
}

// options builds invokeOptions from these flags and bench's -c, -d and
// --warmup.
func (f *invokeFlags) options(lf *loadFlags) (invokeOptions, error) {
	o := invokeOptions{BodySize: f.BodySize, Conns: f.Conns}
	var errs []error
	for m := range strings.SplitSeq(f.Modes, ",") {
		switch strings.TrimSpace(m) {
		case "rate":
			o.Rate = rateOptions{Rate: f.Rate, Duration: f.RateDuration, Warmup: lf.Warmup, Workers: f.RateWorkers, Spin: f.Spin}
		case "max":
			o.Max = loadOptions{Concurrency: lf.Concurrency, Duration: lf.Duration, Requests: lf.Requests, Warmup: lf.Warmup, Keys: 1}
			if lf.Concurrency < 1 {
				errs = append(errs, fmt.Errorf("--concurrency %d must be at least 1", lf.Concurrency))
			}
		case "":
		default:
			errs = append(errs, fmt.Errorf("--modes: unknown mode %q (rate, max)", m))
		}
	}
	if o.Rate.Rate == 0 && f.Rate == 0 && strings.Contains(f.Modes, "rate") {
		errs = append(errs, errors.New("--rate must be positive"))
	}
	errs = append(errs, o.validate())
	return o, errors.Join(errs...)
}

func invokeCommand(lf *loadFlags) *cobra.Command {
	f := &invokeFlags{}
	var call, addr, appID, sidecarPIDs, actorType string
	var appPID, warmActors int
	var newActors bool
	cmd := &cobra.Command{
		Use:   "invoke",
		Short: "One invocation path against running processes (a Mecha or daprd sidecar, or the app itself)",
		Long: `Call --addr with 1 KiB bodies, at a fixed rate (latency from each request's
due time) and/or as fast as -c workers can (throughput):

  --call http            POST http://ADDR/echo, or with --app-id POST
                         http://ADDR/v1.0/invoke/APP/method/echo
  --call invoke-service  gRPC InvokeService(APP, echo) on ADDR (needs --app-id)
  --call unary           grpc.testing.TestService/UnaryCall on ADDR, with
                         dapr-app-id: APP metadata when --app-id is set
  --call oninvoke        runtime.v1.AppCallback/OnInvoke on the app at ADDR
  --call actor           PUT http://ADDR/actors/T/{id}/method/echo, or with
                         --app-id (any: it only says ADDR is a sidecar) PUT
                         http://ADDR/v1.0/actors/T/{id}/method/echo; ids
                         cycle through --actors ids, or with --new-actors
                         are new every call

Any target app that answers 200 / a response with --body-size bytes works;
"mecha bench app" is one. --app-pid and --sidecar-pids add their CPU time.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o, err := f.options(lf)
			if addr == "" {
				err = errors.Join(err, errors.New("--addr is required"))
			}
			pids, perr := parsePIDs(sidecarPIDs)
			if err = errors.Join(err, perr); err != nil {
				return err
			}
			s := invokeScenario{ID: call + "-direct", Call: call, Path: "client -> " + addr}
			if appID != "" {
				s.ID, s.Sidecars, s.Path = call+"-via-sidecar", max(1, len(pids)), "client -> sidecar at "+addr+" -> app "+appID
			}
			p := rolePIDs{app: appPID}
			if len(pids) > 0 {
				p.a = pids[0]
			}
			if len(pids) > 1 {
				p.b = pids[1]
			}
			ctx, stop := signalContext(cmd)
			defer stop()
			t := callTarget{Call: call, Addr: addr, AppID: appID, Actor: actorTarget{Type: actorType, Warm: warmActors}}
			if newActors {
				t.Actor = actorTarget{Type: actorType, NewPrefix: fmt.Sprintf("new-%d-", time.Now().UnixNano())}
			}
			r, err := runCall(ctx, s, t, p, o, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			rep := &InvokeReport{Machine: thisMachine(), Settings: invokeSettings(o), Results: []InvokeResult{r}}
			return printInvokeReport(cmd.OutOrStdout(), lf.JSON, rep, nil)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&call, "call", callHTTP, "http, invoke-service, unary, oninvoke or actor")
	fs.StringVar(&actorType, "actor-type", benchActorType, "--call actor: the actor type")
	fs.IntVar(&warmActors, "actors", 100, "--call actor: the actor ids the calls cycle through")
	fs.BoolVar(&newActors, "new-actors", false, "--call actor: call a new actor id every time (activation)")
	fs.StringVar(&addr, "addr", "", "host:port to call (the app's, or a sidecar's HTTP or gRPC API)")
	fs.StringVar(&appID, "app-id", "", "the target app id when --addr is a sidecar")
	fs.IntVar(&appPID, "app-pid", 0, "the app's process id, for its CPU time")
	fs.StringVar(&sidecarPIDs, "sidecar-pids", "", "comma-separated process ids of the sidecars on the path, for their CPU time")
	f.addFlags(fs)
	return cmd
}

func parsePIDs(s string) ([]int, error) {
	var out []int
	for v := range strings.SplitSeq(s, ",") {
		if v = strings.TrimSpace(v); v == "" {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("--sidecar-pids: %q is not a process id", v)
		}
		out = append(out, n)
	}
	if len(out) > 2 {
		return nil, errors.New("--sidecar-pids: at most two")
	}
	return out, nil
}

func invokeAllCommand(lf *loadFlags) *cobra.Command {
	f := &invokeFlags{}
	var binary, scenarios, profileDir, profileScenario string
	var repeat int
	cmd := &cobra.Command{
		Use:   "invoke-all",
		Short: "Start an app and two sidecars from this binary and measure every invocation path; one table with targets and daprd",
		Long: `Start "mecha bench app" (HTTP and gRPC echo, 1 KiB answers) and two "mecha
sidecar" processes on free 127.0.0.1 ports sharing a temporary name resolution
registry: A (the caller's, no app) and B (in front of the HTTP app, then
restarted in front of the gRPC app). Measure every path (direct, through B,
through A and B; HTTP /v1.0/invoke, gRPC InvokeService, transparent gRPC
proxying) at a fixed rate for latency and with -c workers for throughput, and
print one table with the overheads, the throughput ratios, requests/s per
sidecar core, the issue's targets and daprd 1.18's figures. Every process is
stopped by its PID at the end (Ctrl-C included).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o, err := f.options(lf)
			if repeat < 1 {
				err = errors.Join(err, fmt.Errorf("--repeat %d must be at least 1", repeat))
			}
			sc, serr := selectScenarios(scenarios)
			err = errors.Join(err, serr)
			if profileDir != "" {
				if _, ok := findScenario(profileScenario); !ok {
					err = errors.Join(err, fmt.Errorf("--profile-scenario %q is not a scenario", profileScenario))
				}
				if o.Max.Concurrency == 0 {
					err = errors.Join(err, errors.New("--profile needs the max mode"))
				}
				if o.Max.Duration < time.Second {
					err = errors.Join(err, errors.New("--profile needs -d of at least 1s"))
				}
			}
			bin, berr := executable(binary)
			if err = errors.Join(err, berr); err != nil {
				return err
			}
			if profileDir != "" {
				if err := os.MkdirAll(profileDir, 0o755); err != nil {
					return err
				}
			}
			ao := invokeAllOptions{Invoke: o, Binary: bin, Scenarios: sc, ProfileDir: profileDir, ProfileScenario: profileScenario}
			return repeatInvoke(cmd, lf.JSON, repeat, func(ctx context.Context) (*InvokeReport, error) {
				rep, err := runInvokeAll(ctx, ao, cmd.ErrOrStderr())
				// Profile the first run only.
				ao.ProfileDir = ""
				return rep, err
			})
		},
	}
	fs := cmd.Flags()
	f.addFlags(fs)
	fs.StringVar(&binary, "binary", "", "mecha executable to start (default: this one)")
	fs.IntVar(&repeat, "repeat", 1, "run everything this many times and report the medians")
	fs.StringVar(&scenarios, "scenarios", "", "comma-separated scenarios to run (default all; their direct baselines are added)")
	fs.StringVar(&profileDir, "profile", "", "write CPU profiles of both sidecars and the app, taken during the max-throughput run of --profile-scenario (first run only), into this directory")
	fs.StringVar(&profileScenario, "profile-scenario", "http-two", "the scenario --profile profiles")
	return cmd
}

// repeatInvoke is repeatRuns for invocation and actor reports.
func repeatInvoke(cmd *cobra.Command, asJSON bool, repeat int, run func(ctx context.Context) (*InvokeReport, error)) error {
	return repeatRuns(cmd, asJSON, repeat, run, writeInvokeText, medianInvokeReport, printInvokeReport)
}
