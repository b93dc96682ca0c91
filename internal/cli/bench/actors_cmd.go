package bench

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"
)

func actorsCommand(lf *loadFlags) *cobra.Command {
	f := &invokeFlags{}
	ao := actorsAllOptions{}
	var binary, scenarios string
	var repeat int
	cmd := &cobra.Command{
		Use:   "actors",
		Short: "Start a placement service, an actor app and two sidecars from this binary and measure actor calls; one table with targets and daprd",
		Long: `Start "mecha control-plane" (a standalone placement service), "mecha bench
app" (hosting one actor type: GET /dapr/config, PUT /actors/T/{id}/method/echo
answered with --body-size bytes, DELETE /actors/T/{id}) and two "mecha sidecar"
processes on free 127.0.0.1 ports: B in front of the app, hosting the type,
and A with no app, hosting nothing. Once B's metadata says hostReady, call
--actors ids once each through B, then measure, at a fixed rate (open loop,
latency from each call's due time) and with -c workers (closed loop, for the
maximum calls/s):

  actor-direct    client -> app PUT /actors/T/{id}/method/echo (the baseline)
  actor-self      client -> sidecar B /v1.0/actors/T/{id}/method/echo -> app
  actor-two       client -> sidecar A -> sidecar B -> app
  activation      client -> sidecar B -> app, a new actor id every call
  activation-two  client -> sidecar A -> sidecar B -> app, a new id every call

The warm scenarios cycle round-robin through the pre-activated ids at --rate;
the activation ones run at --activation-rate. The table shows each path's
latency, its overhead and throughput against the direct call, the CPU each
process spent per call, the issue's targets (warm calls through two sidecars
at 1,000/s: p50 <= 0.4 ms, p99 <= 3 ms) and daprd 1.18's figures. Every
process is stopped by its PID at the end (Ctrl-C included).`,
		Example: `  mecha bench actors --repeat 3
  mecha bench actors --scenarios actor-two --rate 1000 --rate-duration 20s --modes rate`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o, err := f.options(lf)
			if repeat < 1 {
				err = errors.Join(err, fmt.Errorf("--repeat %d must be at least 1", repeat))
			}
			sc, serr := selectFrom(actorScenarios, scenarios)
			bin, berr := executable(binary)
			ao.Invoke, ao.Scenarios, ao.Binary = o, sc, bin
			if err = errors.Join(err, serr, berr, ao.validate()); err != nil {
				return err
			}
			return repeatInvoke(cmd, lf.JSON, repeat, func(ctx context.Context) (*InvokeReport, error) {
				return runActorsAll(ctx, ao, cmd.ErrOrStderr())
			})
		},
	}
	fs := cmd.Flags()
	f.addFlags(fs)
	_ = fs.MarkHidden("conns") // HTTP only
	fs.StringVar(&binary, "binary", "", "mecha executable to start (default: this one)")
	fs.IntVar(&repeat, "repeat", 1, "run everything this many times and report the medians")
	fs.StringVar(&scenarios, "scenarios", "", "comma-separated scenarios to run (default all; actor-direct is added as the baseline)")
	fs.StringVar(&ao.ActorType, "actor-type", benchActorType, "the actor type the app hosts")
	fs.IntVar(&ao.WarmActors, "actors", 100, "pre-activated actor ids the warm calls cycle through")
	fs.Float64Var(&ao.ActivationRate, "activation-rate", 500, "fixed-rate mode of the activation scenarios: new actors called per second")
	return cmd
}
