// Package list is `mecha list`: the sidecars running on this host, read
// from the name resolution registry they all heartbeat into, so it sees
// `mecha run`, `mecha run -f` and `mecha sidecar` alike without scanning
// processes (the dapr CLI looks for processes named daprd instead). Only
// entries whose heartbeat is recent count: a sidecar that died is gone from
// the list within the registry's TTL.
package list

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/mecha-dev/mecha/components/nameresolution"
)

// Entry is one running sidecar as `mecha list -o json|yaml` prints it. The
// names the dapr CLI's `dapr list -o json` uses are kept (appId, httpPort,
// grpcPort, appPort, command, age, created, pid).
type Entry struct {
	AppID            string `json:"appId" yaml:"appId"`
	Namespace        string `json:"namespace" yaml:"namespace"`
	HTTPPort         int    `json:"httpPort" yaml:"httpPort"`
	GRPCPort         int    `json:"grpcPort" yaml:"grpcPort"`
	InternalGRPCPort int    `json:"internalGrpcPort" yaml:"internalGrpcPort"`
	AppPort          int    `json:"appPort" yaml:"appPort"`
	AppProtocol      string `json:"appProtocol,omitempty" yaml:"appProtocol,omitempty"`
	// PID is the sidecar's process (the `mecha run` process when the
	// sidecar runs in it), AppPID the app's (0 when unknown).
	PID     int    `json:"pid" yaml:"pid"`
	AppPID  int    `json:"appPid" yaml:"appPid"`
	Command string `json:"command" yaml:"command"`
	Age     string `json:"age" yaml:"age"`
	// Created is in the dapr CLI's format, StartedAt in RFC 3339.
	Created    string    `json:"created" yaml:"created"`
	StartedAt  time.Time `json:"startedAt" yaml:"startedAt"`
	InstanceID string    `json:"instanceId" yaml:"instanceId"`
	Address    string    `json:"address" yaml:"address"`
}

// Command returns `mecha list`.
func Command() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "list [-o table|json|yaml]",
		Short: "List the sidecars running on this host",
		Long: `List the Mecha sidecars running on this host (started by mecha run,
mecha run -f or mecha sidecar), with their ports, process ids and age. They are
read from the name resolution registry every sidecar of the host keeps alive
(~/.mecha/nameresolution.db, or under $MECHA_HOME).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch output {
			case "table", "json", "yaml":
			default:
				return fmt.Errorf("--output %q is not one of table, json, yaml", output)
			}
			ins, err := Instances(cmd.Context())
			if err != nil {
				return err
			}
			return Print(cmd.OutOrStdout(), output, Entries(ins, time.Now()))
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table, json or yaml")
	return cmd
}

// Entries turns registry instances into list entries, ages taken at now.
func Entries(ins []nameresolution.Instance, now time.Time) []Entry {
	out := make([]Entry, 0, len(ins))
	for _, in := range ins {
		out = append(out, Entry{
			AppID: in.AppID, Namespace: in.Namespace,
			HTTPPort: in.HTTPPort, GRPCPort: in.GRPCPort, InternalGRPCPort: in.InternalPort,
			AppPort: in.AppPort, AppProtocol: in.AppProtocol,
			PID: in.PID, AppPID: in.AppPID, Command: in.Command,
			Age:        Age(now.Sub(in.StartedAt)),
			Created:    in.StartedAt.Local().Format("2006-01-02 15:04.05"),
			StartedAt:  in.StartedAt.UTC(),
			InstanceID: in.InstanceID, Address: in.Address,
		})
	}
	return out
}

// Print writes entries in format (table, json or yaml). An empty table is
// a sentence; empty JSON and YAML are empty lists, for scripts.
func Print(w io.Writer, format string, entries []Entry) error {
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(entries)
	case "yaml":
		enc := yaml.NewEncoder(w)
		enc.SetIndent(2)
		if err := enc.Encode(entries); err != nil {
			return err
		}
		return enc.Close()
	}
	if len(entries) == 0 {
		_, err := fmt.Fprintln(w, "No Mecha sidecars are running. Start one with: mecha run --app-id ID -- COMMAND")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "APP ID\tHTTP PORT\tGRPC PORT\tAPP PORT\tPID\tAPP PID\tAGE\tCOMMAND")
	for _, e := range entries {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%d\t%s\t%s\t%s\n", e.AppID, e.HTTPPort, e.GRPCPort, orDash(e.AppPort), e.PID, orDash(e.AppPID), e.Age, truncate(e.Command, 40))
	}
	return tw.Flush()
}

// Age is the dapr CLI's compact age: 42s, 5m, 3h, 2d.
func Age(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return strconv.Itoa(int(d.Seconds())) + "s"
	case d < time.Hour:
		return strconv.Itoa(int(d.Minutes())) + "m"
	case d < 24*time.Hour:
		return strconv.Itoa(int(d.Hours())) + "h"
	}
	return strconv.Itoa(int(d.Hours()/24)) + "d"
}

func orDash(n int) string {
	if n == 0 {
		return "-"
	}
	return strconv.Itoa(n)
}

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-3]) + "..."
}
