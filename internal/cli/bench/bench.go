package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// loadFlags are the flags every throughput scenario shares.
type loadFlags struct {
	Concurrency int
	Duration    time.Duration
	Requests    int
	Warmup      time.Duration
	ValueSize   int
	Keys        int
	JSON        bool
	CPUProfile  string
}

func (f *loadFlags) addFlags(fs *pflag.FlagSet) {
	fs.IntVarP(&f.Concurrency, "concurrency", "c", 16, "concurrent workers, each running save+get pairs back to back")
	fs.DurationVarP(&f.Duration, "duration", "d", 10*time.Second, "how long to measure, after the warm-up")
	fs.IntVarP(&f.Requests, "requests", "n", 0, "measure this many pairs (failed ones included) instead of a duration")
	fs.DurationVar(&f.Warmup, "warmup", time.Second, "unmeasured warm-up before measuring")
	fs.IntVar(&f.ValueSize, "value-size", 256, "bytes per value (over HTTP: a JSON string of that many bytes, quotes included)")
	fs.IntVar(&f.Keys, "keys", 64, "distinct keys per worker")
	fs.BoolVar(&f.JSON, "json", false, "print the report as JSON")
	fs.StringVar(&f.CPUProfile, "cpuprofile", "", "write the load generator's own CPU profile to this file")
}

func (f *loadFlags) options() loadOptions {
	return loadOptions{Concurrency: f.Concurrency, Duration: f.Duration, Requests: f.Requests, Warmup: f.Warmup, Keys: f.Keys}
}

func (f *loadFlags) validate() error {
	errs := []error{f.options().validate()}
	if f.ValueSize < 2 || f.ValueSize > 1<<20 {
		errs = append(errs, fmt.Errorf("--value-size %d must be between 2 and 1048576", f.ValueSize))
	}
	return errors.Join(errs...)
}

// selfFlags let state-http and state-grpc start their own sidecar.
type selfFlags struct {
	Self      bool
	SelfStore string
	RedisAddr string
	Binary    string
}

func (f *selfFlags) addFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&f.Self, "self", false, "start a sidecar from --binary on free ports instead of using a running one")
	fs.StringVar(&f.SelfStore, "self-store", "in-memory", "with --self: the store behind it, in-memory or redis (needs --redis-addr)")
	fs.StringVar(&f.RedisAddr, "redis-addr", os.Getenv("REDIS_ADDR"), "Redis host:port (default $REDIS_ADDR)")
	fs.StringVar(&f.Binary, "binary", "", "mecha executable to start (default: this one)")
}

func (f *selfFlags) validate() error {
	if !f.Self {
		return nil
	}
	switch f.SelfStore {
	case targetInMemory:
	case targetRedis:
		if f.RedisAddr == "" {
			return errors.New("--self-store redis needs --redis-addr (or REDIS_ADDR)")
		}
	default:
		return fmt.Errorf("--self-store %q must be in-memory or redis", f.SelfStore)
	}
	return nil
}

// Command returns `mecha bench` and its scenario subcommands.
func Command() *cobra.Command {
	lf := &loadFlags{}
	var profile *os.File
	cmd := &cobra.Command{
		Use:   "bench SCENARIO [flags]",
		Short: "Load-test the state, invocation and pub/sub APIs and measure start-up (throughput, latency, RSS)",
		Long: `Measure Mecha: save+get pairs per second and their p50/p90/p99 latency over
HTTP and gRPC, the same operations straight to Redis, and exec-to-healthy time
and idle memory. "mecha bench all --redis-addr 127.0.0.1:6379" starts its own
sidecars and prints every figure with the comparisons against daprd 1.18 and
Mecha's targets. "mecha bench invoke-all" does the same for service invocation
(direct, through one sidecar and through two, over HTTP and gRPC, at a fixed
rate and at maximum throughput), "mecha bench actors" for actor calls (warm
and activating, direct, through one sidecar and through two, with a placement
service of their own), and "mecha bench pubsub-all" for publish and
subscribe (publish throughput through the sidecar against the raw JetStream
client, publish-to-app latency, delivered events/s). The load generator
shares the machine with what it measures; the reports show each process's CPU
per operation.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
		PersistentPreRunE: func(*cobra.Command, []string) error {
			if lf.CPUProfile == "" {
				return nil
			}
			f, err := os.Create(lf.CPUProfile)
			if err != nil {
				return err
			}
			if err := pprof.StartCPUProfile(f); err != nil {
				f.Close()
				return err
			}
			profile = f
			return nil
		},
		PersistentPostRunE: func(*cobra.Command, []string) error {
			if profile == nil {
				return nil
			}
			pprof.StopCPUProfile()
			err := profile.Close()
			profile = nil
			return err
		},
	}
	lf.addFlags(cmd.PersistentFlags())
	cmd.AddCommand(stateHTTPCommand(lf), stateGRPCCommand(lf), redisDirectCommand(lf), startupCommand(lf), allCommand(lf),
		appCommand(), invokeCommand(lf), invokeAllCommand(lf), actorsCommand(lf),
		subscriberCommand(), natsCommand(), publishCommand(lf), pubsubAllCommand(lf))
	return cmd
}

// repeatRuns runs run repeat times (until Ctrl-C or SIGTERM ends ctx)
// and prints the outcome: with one run its report, else each run's table
// as the run ends (text only), then the figure-by-figure medians (with the
// runs, in JSON).
func repeatRuns[R any](cmd *cobra.Command, asJSON bool, repeat int, run func(ctx context.Context) (R, error),
	write func(w io.Writer, rep R, title string) error, median func(runs []R) R, print func(w io.Writer, asJSON bool, rep R, runs []R) error,
) error {
	ctx, stop := signalContext(cmd)
	defer stop()
	var runs []R
	for i := range repeat {
		if repeat > 1 {
			fmt.Fprintf(cmd.ErrOrStderr(), "== run %d/%d\n", i+1, repeat)
		}
		rep, err := run(ctx)
		if err != nil {
			return err
		}
		runs = append(runs, rep)
		if !asJSON && repeat > 1 {
			if err := write(cmd.OutOrStdout(), rep, fmt.Sprintf("run %d/%d", i+1, repeat)); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout())
		}
	}
	if repeat == 1 {
		return print(cmd.OutOrStdout(), asJSON, runs[0], nil)
	}
	return print(cmd.OutOrStdout(), asJSON, median(runs), runs)
}

// signalContext ends on Ctrl-C or SIGTERM, so deferred clean-ups (stopping
// sidecars, removing temporary files) run.
func signalContext(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
}

func executable(flag string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	return os.Executable()
}

func stateHTTPCommand(lf *loadFlags) *cobra.Command {
	var addr, store string
	sf := &selfFlags{}
	cmd := &cobra.Command{
		Use:   "state-http",
		Short: "Save+get pairs over the Dapr HTTP API of a sidecar",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := errors.Join(lf.validate(), sf.validate()); err != nil {
				return err
			}
			ctx, stop := signalContext(cmd)
			defer stop()
			r, err := withSidecar(ctx, sf, store, sidecarTarget{httpAddr: addr, name: addr}, cmd.ErrOrStderr(), func(t sidecarTarget) (Result, error) {
				client := newHTTPClient(lf.Concurrency)
				defer client.CloseIdleConnections()
				return measure(ctx, scenarioHTTP, t.name, "HTTP/1.1 keep-alive"+t.detail, lf.options(), t.ids,
					httpWorkers(client, "http://"+t.httpAddr, store, "bench-", lf.Keys, lf.ValueSize))
			})
			if err != nil {
				return err
			}
			return printReport(cmd.OutOrStdout(), lf.JSON, singleReport(lf, 0, r), nil)
		},
	}
	cmd.Flags().StringVar(&addr, "http-addr", "127.0.0.1:3500", "the sidecar's HTTP API address")
	cmd.Flags().StringVar(&store, "store", "statestore", "state store name")
	sf.addFlags(cmd.Flags())
	return cmd
}

func stateGRPCCommand(lf *loadFlags) *cobra.Command {
	var addr, store string
	var conns int
	sf := &selfFlags{}
	cmd := &cobra.Command{
		Use:   "state-grpc",
		Short: "SaveState+GetState pairs over the Dapr gRPC API of a sidecar",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			err := errors.Join(lf.validate(), sf.validate())
			if conns < 1 {
				err = errors.Join(err, fmt.Errorf("--conns %d must be at least 1", conns))
			}
			if err != nil {
				return err
			}
			ctx, stop := signalContext(cmd)
			defer stop()
			r, err := withSidecar(ctx, sf, store, sidecarTarget{grpcAddr: addr, name: addr}, cmd.ErrOrStderr(), func(t sidecarTarget) (Result, error) {
				cs, err := dialGRPC(t.grpcAddr, conns)
				if err != nil {
					return Result{}, err
				}
				defer closeConns(cs)
				return measure(ctx, scenarioGRPC, t.name, fmt.Sprintf("gRPC (%d conn)%s", conns, t.detail), lf.options(), t.ids,
					grpcWorkers(cs, store, "bench-", lf.Keys, lf.ValueSize))
			})
			if err != nil {
				return err
			}
			return printReport(cmd.OutOrStdout(), lf.JSON, singleReport(lf, conns, r), nil)
		},
	}
	cmd.Flags().StringVar(&addr, "grpc-addr", "127.0.0.1:50001", "the sidecar's gRPC API address")
	cmd.Flags().StringVar(&store, "store", "statestore", "state store name")
	cmd.Flags().IntVar(&conns, "conns", 1, "gRPC client connections shared round-robin by the workers")
	sf.addFlags(cmd.Flags())
	return cmd
}

func singleReport(lf *loadFlags, conns int, r Result) *Report {
	rep := &Report{Machine: thisMachine(), Load: loadSettings(lf.options(), lf.ValueSize, conns), Results: []Result{r}}
	rep.Comparisons = compare(rep)
	return rep
}

// sidecarTarget is the sidecar a single scenario runs against.
type sidecarTarget struct {
	httpAddr, grpcAddr string
	// ids are the sidecar's (and Redis's) PIDs when known.
	ids pids
	// name is the Result's Target; detail completes its Detail.
	name, detail string
}

// withSidecar runs fn against the sidecar in t or, with --self, against one
// it starts and stops itself (and whose Redis keys it deletes). The
// sidecar's RSS is read while it still runs.
func withSidecar(ctx context.Context, sf *selfFlags, store string, t sidecarTarget, progress io.Writer, fn func(sidecarTarget) (Result, error)) (res Result, err error) {
	if !sf.Self {
		t.detail = " -> sidecar at " + t.name
		return fn(t)
	}
	bin, err := executable(sf.Binary)
	if err != nil {
		return Result{}, err
	}
	tmp, err := os.MkdirTemp("", "mecha-bench-*")
	if err != nil {
		return Result{}, err
	}
	defer os.RemoveAll(tmp)
	appID := "mecha-bench-" + strconv.Itoa(os.Getpid())
	typ, props := "state.in-memory", []string(nil)
	if sf.SelfStore == targetRedis {
		typ, props = "state.redis", []string{"redisHost", sf.RedisAddr}
		rdb, rerr := newRawRedis(ctx, sf.RedisAddr)
		if rerr != nil {
			return Result{}, rerr
		}
		defer rdb.Close()
		t.ids.redis = redisServerPID(ctx, rdb)
		// Never FLUSHALL: only this run's keys, all under the prefix.
		defer deleteKeysAfter(ctx, rdb, appID+keySeparator, &err)
	}
	dir, err := writeResources(tmp, sf.SelfStore, componentYAML(store, typ, props...))
	if err != nil {
		return Result{}, err
	}
	p, err := startSidecar(sidecarSpec{Name: "sidecar", Binary: bin, AppID: appID, ResourcesDir: dir, LogDir: tmp})
	if err != nil {
		return Result{}, err
	}
	defer p.Stop()
	if _, err := p.waitHealthy(ctx, 5*time.Millisecond, 30*time.Second); err != nil {
		return Result{}, err
	}
	fmt.Fprintf(progress, "started sidecar pid %d (%s) http %s grpc %s\n", p.PID(), typ, p.httpAddr, p.grpcAddr)
	t.httpAddr, t.grpcAddr, t.ids.sidecar = p.httpAddr, p.grpcAddr, p.PID()
	t.name, t.detail = sf.SelfStore, " -> sidecar -> "+typ
	if res, err = fn(t); err != nil {
		return Result{}, err
	}
	res.SidecarRSSMB, _ = procRSSMB(p.PID())
	return res, p.Stop()
}

func redisDirectCommand(lf *loadFlags) *cobra.Command {
	var addr string
	cmd := &cobra.Command{
		Use:   "redis-direct",
		Short: "The same save+get pairs straight to Redis: the state.redis component in-process, and raw go-redis",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			err := lf.validate()
			if addr == "" {
				err = errors.Join(err, errors.New("--redis-addr (or REDIS_ADDR) is required"))
			}
			if err != nil {
				return err
			}
			ctx, stop := signalContext(cmd)
			defer stop()
			rep, err := runRedisDirect(ctx, lf, addr, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			return printReport(cmd.OutOrStdout(), lf.JSON, rep, nil)
		},
	}
	cmd.Flags().StringVar(&addr, "redis-addr", os.Getenv("REDIS_ADDR"), "Redis host:port (default $REDIS_ADDR)")
	return cmd
}

func runRedisDirect(ctx context.Context, lf *loadFlags, addr string, progress io.Writer) (rep *Report, err error) {
	rdb, err := newRawRedis(ctx, addr)
	if err != nil {
		return nil, err
	}
	defer rdb.Close()
	prefix := "mecha-bench-" + strconv.Itoa(os.Getpid())
	// Never FLUSHALL: only this run's keys, all under the prefix.
	defer deleteKeysAfter(ctx, rdb, prefix+"-", &err)
	results, err := measureDirect(ctx, lf.options(), lf.ValueSize, addr, rdb, prefix, redisServerPID(ctx, rdb), progress)
	if err != nil {
		return nil, err
	}
	rep = &Report{Machine: thisMachine(), Load: loadSettings(lf.options(), lf.ValueSize, 0), Results: results}
	rep.Comparisons = compare(rep)
	return rep, nil
}

func startupCommand(lf *loadFlags) *cobra.Command {
	o := startupOptions{}
	var binary, resources string
	cmd := &cobra.Command{
		Use:   "startup",
		Short: "Exec `mecha sidecar` repeatedly: time to first 204 from /v1.0/healthz, and idle RSS",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			bin, err := executable(binary)
			if err != nil {
				return err
			}
			o.Binary = bin
			if err := o.validate(); err != nil {
				return err
			}
			ctx, stop := signalContext(cmd)
			defer stop()
			tmp, err := os.MkdirTemp("", "mecha-bench-*")
			if err != nil {
				return err
			}
			defer os.RemoveAll(tmp)
			o.TmpDir = tmp
			o.ResourcesDir, o.Resources = resources, resources
			if resources == "" {
				if o.ResourcesDir, err = writeResources(tmp, "in-memory", componentYAML("statestore", "state.in-memory")); err != nil {
					return err
				}
				o.Resources = "state.in-memory"
			}
			st, err := runStartup(ctx, o, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			rep := &Report{Machine: thisMachine(), Startup: st}
			rep.Comparisons = compare(rep)
			return printReport(cmd.OutOrStdout(), lf.JSON, rep, nil)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&binary, "binary", "", "mecha executable to start (default: this one)")
	fs.StringVar(&resources, "resources-path", "", "resources folder for the sidecar (default: one state.in-memory store)")
	fs.IntVar(&o.Runs, "runs", 10, "measured runs (one more, unmeasured, warms the page cache)")
	fs.DurationVar(&o.Idle, "idle", 2*time.Second, "how long each sidecar idles before its RSS is read")
	fs.DurationVar(&o.Poll, "poll-interval", time.Millisecond, "healthz polling interval")
	return cmd
}

func allCommand(lf *loadFlags) *cobra.Command {
	o := allOptions{}
	var binary string
	var repeat int
	cmd := &cobra.Command{
		Use:   "all",
		Short: "Start sidecars from this binary and run every scenario; print one table with the comparisons",
		Long: `Start a sidecar with state.in-memory and, when --redis-addr is set, one with
state.redis, each on free loopback ports from this binary; run state-http and
state-grpc against each, redis-direct (the state.redis component in-process and
raw go-redis), and startup; then print the figures and the ratios against daprd
1.18 and Mecha's targets. Sidecars are stopped by PID and keys deleted at the end.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			bin, err := executable(binary)
			if err != nil {
				return err
			}
			o.Startup.Binary, o.Load, o.ValueSize = bin, lf.options(), lf.ValueSize
			err = lf.validate()
			if o.Conns < 1 {
				err = errors.Join(err, fmt.Errorf("--conns %d must be at least 1", o.Conns))
			}
			if repeat < 1 {
				err = errors.Join(err, fmt.Errorf("--repeat %d must be at least 1", repeat))
			}
			if o.Startup.Runs > 0 {
				err = errors.Join(err, o.Startup.validate())
			}
			if err != nil {
				return err
			}
			return repeatRuns(cmd, lf.JSON, repeat, func(ctx context.Context) (*Report, error) {
				return runAll(ctx, o, cmd.ErrOrStderr())
			}, writeText, medianReport, printReport)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.RedisAddr, "redis-addr", os.Getenv("REDIS_ADDR"), "Redis host:port for the Redis scenarios (default $REDIS_ADDR; none: skipped)")
	fs.StringVar(&binary, "binary", "", "mecha executable to start (default: this one)")
	fs.StringVar(&o.Store, "store", "statestore", "state store name")
	fs.IntVar(&o.Conns, "conns", 1, "gRPC client connections")
	fs.IntVar(&o.Startup.Runs, "startup-runs", 10, "startup runs (0: skip)")
	fs.DurationVar(&o.Startup.Idle, "idle", 2*time.Second, "startup: idle time before reading RSS")
	fs.DurationVar(&o.Startup.Poll, "poll-interval", time.Millisecond, "startup: healthz polling interval")
	fs.IntVar(&repeat, "repeat", 1, "run everything this many times and report the medians")
	return cmd
}

// printReport writes rep as text, or as JSON ({"median":…,"runs":[…]} when
// runs are given).
func printReport(w io.Writer, asJSON bool, rep *Report, runs []*Report) error {
	if asJSON {
		if runs != nil {
			return writeJSON(w, struct {
				Median *Report   `json:"median"`
				Runs   []*Report `json:"runs"`
			}{rep, runs})
		}
		return writeJSON(w, rep)
	}
	title := ""
	if rep.Runs > 1 {
		title = fmt.Sprintf("median of %d runs", rep.Runs)
	}
	return writeText(w, rep, title)
}
