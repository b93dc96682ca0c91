package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// pids are the processes whose CPU time a scenario reports; 0 means
// unknown.
type pids struct{ sidecar, redis int }

// measure runs one throughput scenario and turns it into a Result with the
// CPU each process spent per pair.
func measure(ctx context.Context, scenario, target, detail string, o loadOptions, p pids, newWorker func(int) (pairFunc, error)) (Result, error) {
	self := os.Getpid()
	gen0, genOK := procCPUSeconds(self)
	side0, sideOK := procCPUSeconds(p.sidecar)
	red0, redOK := procCPUSeconds(p.redis)
	busy0, busyOK := machineBusySeconds()
	start := time.Now()
	lr, err := runLoad(ctx, o, newWorker)
	if err != nil {
		return Result{}, fmt.Errorf("%s %s: %w", scenario, target, err)
	}
	wall := time.Since(start).Seconds()
	known := 0.0 // CPU seconds of the processes we know
	perPair := func(pid int, before float64, ok bool) float64 {
		if pid == 0 || !ok || lr.Total == 0 {
			return 0
		}
		after, ok := procCPUSeconds(pid)
		if !ok {
			return 0
		}
		known += after - before
		return (after - before) * 1e6 / float64(lr.Total)
	}
	res := Result{
		Scenario:     scenario,
		Target:       target,
		Detail:       detail,
		Pairs:        len(lr.Latencies),
		Errors:       lr.Errors,
		FirstError:   lr.FirstError,
		ElapsedSec:   lr.Elapsed.Seconds(),
		PairsPerSec:  lr.PairsPerSec(),
		P50Ms:        ms(percentile(lr.Latencies, 50)),
		P90Ms:        ms(percentile(lr.Latencies, 90)),
		P99Ms:        ms(percentile(lr.Latencies, 99)),
		MaxMs:        ms(percentile(lr.Latencies, 100)),
		GenCPUUs:     perPair(self, gen0, genOK),
		SidecarCPUUs: perPair(p.sidecar, side0, sideOK),
		RedisCPUUs:   perPair(p.redis, red0, redOK),
	}
	if busy1, ok := machineBusySeconds(); ok && busyOK && wall > 0 {
		res.OtherCores = max(0, (busy1-busy0-known)/wall)
	}
	return res, nil
}

// componentYAML is a Component resource document.
func componentYAML(name, typ string, kv ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: %s\nspec:\n  type: %s\n  version: v1\n", name, typ)
	if len(kv) == 0 {
		b.WriteString("  metadata: []\n")
		return b.String()
	}
	b.WriteString("  metadata:\n")
	for i := 0; i+1 < len(kv); i += 2 {
		fmt.Fprintf(&b, "  - name: %s\n    value: %q\n", kv[i], kv[i+1])
	}
	return b.String()
}

// writeResources creates dir/name and writes one Component file into it.
func writeResources(parent, name, yaml string) (string, error) {
	dir := filepath.Join(parent, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	return dir, os.WriteFile(filepath.Join(dir, "statestore.yaml"), []byte(yaml), 0o644)
}

// startupOptions shape the start-up scenario.
type startupOptions struct {
	Binary string
	// ResourcesDir is passed to every sidecar; Resources labels it.
	ResourcesDir, Resources string
	// Runs are measured after one discarded warm-up run (page cache).
	Runs int
	// Idle is how long the sidecar sits idle before its RSS is read.
	Idle time.Duration
	// Poll is the healthz polling interval.
	Poll time.Duration
	// TmpDir receives the sidecars' logs.
	TmpDir string
}

func (o startupOptions) validate() error {
	var errs []error
	if o.Runs < 1 {
		errs = append(errs, fmt.Errorf("--runs %d must be at least 1", o.Runs))
	}
	if o.Idle < 0 {
		errs = append(errs, fmt.Errorf("--idle %v must not be negative", o.Idle))
	}
	if o.Poll <= 0 || o.Poll > time.Second {
		errs = append(errs, fmt.Errorf("--poll-interval %v must be in (0, 1s]", o.Poll))
	}
	if o.Binary == "" {
		errs = append(errs, errors.New("--binary is empty"))
	}
	return errors.Join(errs...)
}

// runStartup execs the sidecar o.Runs (+1 warm-up) times, one at a time,
// measuring exec → healthy and the idle RSS, and stops each by its PID.
func runStartup(ctx context.Context, o startupOptions, progress io.Writer) (*Startup, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	st := &Startup{IdleSec: o.Idle.Seconds(), Resources: o.Resources}
	for i := range o.Runs + 1 {
		healthy, rss, err := startupOnce(ctx, o, i)
		if err != nil {
			return nil, err
		}
		if i == 0 {
			continue // warm-up: binary and page cache
		}
		st.HealthyMs = append(st.HealthyMs, ms(healthy))
		if rss > 0 {
			st.IdleRSSMB = append(st.IdleRSSMB, rss)
		}
		fmt.Fprintf(progress, "  startup %d/%d: healthy after %s ms, idle RSS %.1f MB\n", i, o.Runs, fmtMs(ms(healthy)), rss)
	}
	st.summarize()
	return st, nil
}

func startupOnce(ctx context.Context, o startupOptions, i int) (time.Duration, float64, error) {
	p, err := startSidecar(sidecarSpec{
		Name: "startup-" + strconv.Itoa(i), Binary: o.Binary, AppID: "mecha-bench-startup",
		ResourcesDir: o.ResourcesDir, LogDir: o.TmpDir,
	})
	if err != nil {
		return 0, 0, err
	}
	defer p.Stop()
	healthy, err := p.waitHealthy(ctx, o.Poll, 30*time.Second)
	if err != nil {
		return 0, 0, err
	}
	select {
	case <-ctx.Done():
		return 0, 0, ctx.Err()
	case <-p.exited:
		return 0, 0, fmt.Errorf("sidecar exited while idle (%v): %s", p.waitErr, p.logTail())
	case <-time.After(o.Idle):
	}
	rss, _ := procRSSMB(p.PID())
	return healthy, rss, p.Stop()
}

// allOptions shape `mecha bench all`.
type allOptions struct {
	Load      loadOptions
	ValueSize int
	Conns     int
	Store     string
	RedisAddr string
	Startup   startupOptions
}

// runAll starts its own sidecars from o.Startup.Binary, runs every scenario
// and returns one report. Sidecars are stopped and temporary files removed
// before it returns, whatever happens.
func runAll(ctx context.Context, o allOptions, progress io.Writer) (rep *Report, err error) {
	rep = &Report{Machine: thisMachine(), Load: loadSettings(o.Load, o.ValueSize, o.Conns)}
	tmp, err := os.MkdirTemp("", "mecha-bench-*")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	o.Startup.TmpDir = tmp
	prefix := "mecha-bench-" + strconv.Itoa(os.Getpid())

	memDir, err := writeResources(tmp, "in-memory", componentYAML(o.Store, "state.in-memory"))
	if err != nil {
		return nil, err
	}
	var rdb *goredis.Client
	redisPID := 0
	if o.RedisAddr != "" {
		if rdb, err = newRawRedis(ctx, o.RedisAddr); err != nil {
			return nil, err
		}
		defer rdb.Close()
		redisPID = redisServerPID(ctx, rdb)
		// Never FLUSHALL: only this run's keys, all under the prefix.
		defer deleteKeysAfter(ctx, rdb, prefix+"-", &err)
	}

	type sidecarCase struct {
		target, typ, dir string
		proc             *sidecarProc
	}
	cases := []*sidecarCase{{target: targetInMemory, typ: "state.in-memory", dir: memDir}}
	if o.RedisAddr != "" {
		dir, err := writeResources(tmp, "redis", componentYAML(o.Store, "state.redis", "redisHost", o.RedisAddr))
		if err != nil {
			return nil, err
		}
		cases = append(cases, &sidecarCase{target: targetRedis, typ: "state.redis", dir: dir})
	} else {
		fmt.Fprintln(progress, "no --redis-addr (or REDIS_ADDR): skipping the Redis scenarios")
	}
	for _, c := range cases {
		p, err := startSidecar(sidecarSpec{Name: "sidecar-" + c.target, Binary: o.Startup.Binary, AppID: prefix + "-" + c.target, ResourcesDir: c.dir, LogDir: tmp})
		if err != nil {
			return nil, err
		}
		defer p.Stop()
		c.proc = p
		if _, err := p.waitHealthy(ctx, 5*time.Millisecond, 30*time.Second); err != nil {
			return nil, err
		}
	}

	httpClient := newHTTPClient(o.Load.Concurrency)
	defer httpClient.CloseIdleConnections()
	for _, c := range cases {
		p := c.proc
		ids := pids{sidecar: p.PID()}
		if c.target == targetRedis {
			ids.redis = redisPID
		}
		fmt.Fprintf(progress, "state-http %s (sidecar pid %d, %s)\n", c.target, p.PID(), c.typ)
		r, err := measure(ctx, scenarioHTTP, c.target, "HTTP/1.1 keep-alive -> sidecar -> "+c.typ, o.Load, ids,
			httpWorkers(httpClient, "http://"+p.httpAddr, o.Store, "", o.Load.Keys, o.ValueSize))
		if err != nil {
			return nil, err
		}
		r.SidecarRSSMB, _ = procRSSMB(p.PID())
		rep.Results = append(rep.Results, r)

		conns, err := dialGRPC(p.grpcAddr, o.Conns)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(progress, "state-grpc %s (sidecar pid %d, %s)\n", c.target, p.PID(), c.typ)
		r, err = measure(ctx, scenarioGRPC, c.target, fmt.Sprintf("gRPC (%d conn) -> sidecar -> %s", o.Conns, c.typ), o.Load, ids,
			grpcWorkers(conns, o.Store, "", o.Load.Keys, o.ValueSize))
		closeConns(conns)
		if err != nil {
			return nil, err
		}
		r.SidecarRSSMB, _ = procRSSMB(p.PID())
		rep.Results = append(rep.Results, r)
		// Stop it now: an idle sidecar must not sit in the next scenarios.
		if err := p.Stop(); err != nil {
			return nil, err
		}
	}

	if rdb != nil {
		rs, err := measureDirect(ctx, o.Load, o.ValueSize, o.RedisAddr, rdb, prefix, redisPID, progress)
		if err != nil {
			return nil, err
		}
		rep.Results = append(rep.Results, rs...)
	}

	if o.Startup.Runs > 0 {
		fmt.Fprintf(progress, "startup x%d (+1 warm-up)\n", o.Startup.Runs)
		o.Startup.ResourcesDir, o.Startup.Resources = memDir, "state.in-memory"
		if rep.Startup, err = runStartup(ctx, o.Startup, progress); err != nil {
			return nil, err
		}
	}
	rep.Comparisons = compare(rep)
	return rep, nil
}

// measureDirect runs redis-direct: the state.redis component called
// in-process, then raw go-redis HSET+HGET on rdb. Keys are under prefix.
func measureDirect(ctx context.Context, o loadOptions, valueSize int, addr string, rdb *goredis.Client, prefix string, redisPID int, progress io.Writer) ([]Result, error) {
	store, err := newRedisStore(ctx, addr)
	if err != nil {
		return nil, err
	}
	fmt.Fprintln(progress, "redis-direct store (state.redis in-process)")
	rs, err := measure(ctx, scenarioDirect, targetDirectStore, "state.redis component in-process (Lua set + read scripts)", o, pids{redis: redisPID},
		storeWorkers(store, prefix+"-direct"+keySeparator, o.Keys, valueSize))
	_ = store.Close()
	if err != nil {
		return nil, err
	}
	fmt.Fprintln(progress, "redis-direct raw (go-redis HSET+HGET)")
	rr, err := measure(ctx, scenarioDirect, targetDirectRaw, "plain go-redis HSET data + HGET data", o, pids{redis: redisPID},
		rawWorkers(rdb, prefix+"-raw"+keySeparator, o.Keys, valueSize))
	if err != nil {
		return nil, err
	}
	return []Result{rs, rr}, nil
}

func loadSettings(o loadOptions, valueSize, conns int) LoadSettings {
	s := LoadSettings{Concurrency: o.Concurrency, Requests: o.Requests, WarmupSec: o.Warmup.Seconds(), ValueSize: valueSize, KeysPerWorker: o.Keys, GRPCConns: conns}
	if o.Requests == 0 {
		s.DurationSec = o.Duration.Seconds()
	}
	return s
}
