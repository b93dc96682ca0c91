package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// pubsubFlags are the flags of publish and pubsub-all; the closed-loop
// runs take -c, -d and --warmup from bench's own flags.
type pubsubFlags struct {
	BodySize     int
	Rate         float64
	RateDuration time.Duration
	RateWorkers  int
	Spin         time.Duration
	MaxBacklog   int
	DrainTimeout time.Duration
}

func (f *pubsubFlags) addFlags(fs *pflag.FlagSet) {
	fs.IntVar(&f.BodySize, "body-size", 1024, "bytes of every event's JSON data (the sidecar's CloudEvent envelope comes on top)")
	fs.Float64Var(&f.Rate, "rate", 1000, "fixed-rate runs: events published per second, on a steady schedule")
	fs.DurationVar(&f.RateDuration, "rate-duration", 10*time.Second, "fixed-rate runs: how long to measure, after --warmup")
	fs.IntVar(&f.RateWorkers, "rate-workers", 32, "fixed-rate runs: publishes that may be in flight at once (late ones wait, and that counts)")
	fs.DurationVar(&f.Spin, "spin", 50*time.Microsecond, "fixed-rate runs: the pacer spins this long before each due time instead of sleeping")
	fs.IntVar(&f.MaxBacklog, "max-backlog", 1000, "closed-loop runs with a subscriber: events that may be published ahead of deliveries (0: no bound, the broker's queue grows)")
	fs.DurationVar(&f.DrainTimeout, "drain-timeout", 30*time.Second, "after publishing: how long to wait without a new delivery before counting the missing events as lost")
}

func (f *pubsubFlags) options(lf *loadFlags) pubsubOptions {
	return pubsubOptions{
		BodySize:     f.BodySize,
		Max:          loadOptions{Concurrency: lf.Concurrency, Duration: lf.Duration, Requests: lf.Requests, Warmup: lf.Warmup, Keys: 1},
		Rate:         rateOptions{Rate: f.Rate, Duration: f.RateDuration, Warmup: lf.Warmup, Workers: f.RateWorkers, Spin: f.Spin},
		MaxBacklog:   f.MaxBacklog,
		DrainTimeout: f.DrainTimeout,
	}
}

func publishCommand(lf *loadFlags) *cobra.Command {
	f := &pubsubFlags{}
	var call, addr, pubsubName, topic, subscriber, mode string
	var sidecarPID, brokerPID, appPID int
	cmd := &cobra.Command{
		Use:   "publish",
		Short: "Publish events to a running sidecar (Mecha or daprd) or NATS server; with --subscriber, measure their delivery too",
		Long: `Publish --body-size JSON events, closed loop with -c workers (--mode max) or
at --rate events/s (--mode rate, latency from each event's due time):

  --call http   POST http://ADDR/v1.0/publish/PUBSUB/TOPIC
  --call grpc   Dapr gRPC PublishEvent on ADDR
  --call raw    nats.go jetstream.Publish to the NATS server at ADDR
                (nats://HOST:PORT); a stream is created for TOPIC if none
                covers it

With --subscriber HOST:PORT (a "mecha bench subscriber" the sidecar delivers
TOPIC to) the report adds the publish -> arrival latency, the events
delivered per second and the losses. --sidecar-pid, --broker-pid and
--app-pid add those processes' CPU time.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o := f.options(lf)
			err := o.validate()
			if addr == "" {
				err = errors.Join(err, errors.New("--addr is required"))
			}
			switch call {
			case pubHTTP, pubGRPC:
				if pubsubName == "" {
					err = errors.Join(err, errors.New("--pubsub is required with --call http or grpc"))
				}
			case pubRaw:
				if subscriber != "" {
					err = errors.Join(err, errors.New("--subscriber needs a sidecar to deliver: not with --call raw"))
				}
				if pubsubName == "" {
					pubsubName = psJetStream
				}
			default:
				err = errors.Join(err, fmt.Errorf("--call %q must be http, grpc or raw", call))
			}
			if mode != modeMax && mode != modeRate {
				err = errors.Join(err, fmt.Errorf("--mode %q must be max or rate", mode))
			}
			if err != nil {
				return err
			}
			if topic == "" {
				topic = topicPublish
				if subscriber != "" {
					topic = topicEvents
				}
			}
			s := pubsubScenario{ID: "publish-" + call, Call: call, Pubsub: pubsubName, Topic: topic, Mode: mode, Deliver: subscriber != "",
				Path: fmt.Sprintf("client -> %s %s, pubsub %s, topic %s", call, addr, pubsubName, topic)}
			if s.Deliver {
				s.ID, s.Path = "deliver-"+call, s.Path+" -> subscriber at "+subscriber
			}
			ctx, stop := signalContext(cmd)
			defer stop()
			t := pubTarget{Call: call, Addr: addr, Pubsub: pubsubName, Topic: topic, Subscriber: subscriber}
			r, err := runPubsub(ctx, s, t, pubsubPIDs{sidecar: sidecarPID, broker: brokerPID, app: appPID}, o, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			rep := &PubsubReport{Machine: thisMachine(), Settings: pubsubSettings(o, ""), Results: []PubsubResult{r}}
			return printPubsubReport(cmd.OutOrStdout(), lf.JSON, rep, nil)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&call, "call", pubHTTP, "http, grpc or raw")
	fs.StringVar(&addr, "addr", "", "the sidecar's HTTP or gRPC address (host:port), or the NATS URL for raw")
	fs.StringVar(&pubsubName, "pubsub", "", "the pubsub component's name (http and grpc)")
	fs.StringVar(&topic, "topic", "", "topic (default "+topicPublish+", or "+topicEvents+" with --subscriber)")
	fs.StringVar(&subscriber, "subscriber", "", "host:port of the subscriber app the sidecar delivers the topic to")
	fs.StringVar(&mode, "mode", modeMax, "max (closed loop, -c workers) or rate (fixed --rate)")
	fs.IntVar(&sidecarPID, "sidecar-pid", 0, "the sidecar's process id, for its CPU time")
	fs.IntVar(&brokerPID, "broker-pid", 0, "the broker's process id, for its CPU time")
	fs.IntVar(&appPID, "app-pid", 0, "the subscriber's process id, for its CPU time")
	f.addFlags(fs)
	return cmd
}

func pubsubAllCommand(lf *loadFlags) *cobra.Command {
	f := &pubsubFlags{}
	var binary, scenarios, jsConcurrency, profileDir, profileScenario string
	var repeat int
	cmd := &cobra.Command{
		Use:   "pubsub-all",
		Short: "Start a NATS server, a subscriber app and a sidecar from this binary and measure publish and delivery; one table with targets and daprd",
		Long: `Start a NATS server with JetStream ("mecha bench nats", store in a temporary
directory), the subscriber app ("mecha bench subscriber") and a "mecha sidecar"
in front of it with three pubsub components: "jetstream" (pubsub.jetstream
with its default concurrency, one delivery at a time in stream order, or
--jetstream-concurrency), "jetstream-parallel" (concurrency parallel) and
"in-memory" (pubsub.in-memory), each process on free 127.0.0.1 ports, and
measure:

  publish-http/grpc/raw  publish throughput with -c workers through the
                         sidecar (HTTP, gRPC) and with the raw nats.go
                         JetStream client to the same stream
  e2e-*                  publish -> app latency at --rate events/s (HTTP
                         publish, HTTP delivery)
  deliver-max-*          events/s published and delivered to the app, with
                         at most --max-backlog undelivered

then print one table with the ratios, Mecha's targets and daprd 1.18's figures.
Every process is stopped by its PID at the end (Ctrl-C included).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o := f.options(lf)
			err := o.validate()
			if repeat < 1 {
				err = errors.Join(err, fmt.Errorf("--repeat %d must be at least 1", repeat))
			}
			sc, serr := selectPubsubScenarios(scenarios)
			bin, berr := executable(binary)
			if profileDir != "" {
				ps, ok := findPubsubScenario(profileScenario)
				switch {
				case !ok:
					err = errors.Join(err, fmt.Errorf("--profile-scenario %q is not a scenario", profileScenario))
				case ps.Mode == modeMax && o.Max.Duration < time.Second, ps.Mode == modeRate && o.Rate.Duration < time.Second:
					err = errors.Join(err, errors.New("--profile needs a measured window of at least 1s"))
				}
			}
			if err = errors.Join(err, serr, berr); err != nil {
				return err
			}
			if profileDir != "" {
				if err := os.MkdirAll(profileDir, 0o755); err != nil {
					return err
				}
			}
			ao := pubsubAllOptions{Pubsub: o, Binary: bin, Scenarios: sc, JetStreamConcurrency: strings.TrimSpace(jsConcurrency),
				ProfileDir: profileDir, ProfileScenario: profileScenario}
			return repeatRuns(cmd, lf.JSON, repeat, func(ctx context.Context) (*PubsubReport, error) {
				rep, err := runPubsubAll(ctx, ao, cmd.ErrOrStderr())
				// Profile the first run only.
				ao.ProfileDir = ""
				return rep, err
			}, writePubsubText, medianPubsubReport, printPubsubReport)
		},
	}
	fs := cmd.Flags()
	f.addFlags(fs)
	fs.StringVar(&binary, "binary", "", "mecha executable to start (default: this one)")
	fs.IntVar(&repeat, "repeat", 1, "run everything this many times (fresh processes each time) and report the medians")
	fs.StringVar(&scenarios, "scenarios", "", "comma-separated scenarios to run (default all)")
	fs.StringVar(&profileDir, "profile", "", "write CPU profiles of the sidecar, the NATS server and the subscriber, taken during the measured window of --profile-scenario (first run only), into this directory")
	fs.StringVar(&profileScenario, "profile-scenario", "deliver-max-in-memory", "the scenario --profile profiles")
	fs.StringVar(&jsConcurrency, "jetstream-concurrency", "", "the pubsub.jetstream component's concurrency metadata: single, parallel or a number (default: the component's)")
	return cmd
}
