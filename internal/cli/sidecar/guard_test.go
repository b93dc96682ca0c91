package sidecar_test

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/mecha-dev/mecha/components/kinds"
)

// TestTokensFromEnvironment: DAPR_API_TOKEN and APP_API_TOKEN reach the
// runtime options from the environment, as daprd reads them.
func TestTokensFromEnvironment(t *testing.T) {
	t.Setenv("DAPR_API_TOKEN", "api-secret")
	t.Setenv("APP_API_TOKEN", "app-secret")
	f, err := parse(t, "--app-id", "a")
	if err != nil {
		t.Fatal(err)
	}
	o, err := f.Options(slog.New(slog.DiscardHandler), kinds.New())
	if err != nil {
		t.Fatal(err)
	}
	if o.APIToken != "api-secret" || o.AppAPIToken != "app-secret" {
		t.Fatalf("APIToken %q, AppAPIToken %q", o.APIToken, o.AppAPIToken)
	}
	t.Setenv("DAPR_API_TOKEN", "")
	t.Setenv("APP_API_TOKEN", "")
	if o, _ = f.Options(slog.New(slog.DiscardHandler), kinds.New()); o.APIToken != "" || o.AppAPIToken != "" {
		t.Fatalf("without the variables: APIToken %q, AppAPIToken %q", o.APIToken, o.AppAPIToken)
	}
}

// TestReadBufferSizeFlags: --dapr-http-read-buffer-size (KB) and
// --read-buffer-size (a quantity, which wins) set the header limit; the
// default is daprd's 4 KiB.
func TestReadBufferSizeFlags(t *testing.T) {
	cases := []struct {
		args    []string
		want    int
		wantErr string
	}{
		{nil, 4 << 10, ""},
		{[]string{"--dapr-http-read-buffer-size", "16"}, 16 << 10, ""},
		{[]string{"--read-buffer-size", "64Ki"}, 64 << 10, ""},
		{[]string{"--read-buffer-size", "1Mi", "--dapr-http-read-buffer-size", "16"}, 1 << 20, ""},
		{[]string{"--dapr-http-read-buffer-size", "0"}, 0, "--dapr-http-read-buffer-size 0"},
		{[]string{"--dapr-http-read-buffer-size", "-4"}, 0, "--dapr-http-read-buffer-size -4"},
		{[]string{"--read-buffer-size", "lots"}, 0, `--read-buffer-size "lots"`},
		{[]string{"--read-buffer-size", "4Gi"}, 0, `--read-buffer-size "4Gi"`},
	}
	for _, c := range cases {
		f, err := parse(t, append([]string{"--app-id", "a"}, c.args...)...)
		if err != nil {
			t.Fatalf("%v: %v", c.args, err)
		}
		o, err := f.Options(slog.New(slog.DiscardHandler), kinds.New())
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("%v: error %v, want one naming %s", c.args, err, c.wantErr)
			}
			continue
		}
		if err != nil || o.ReadBufferSize != c.want {
			t.Errorf("%v: ReadBufferSize %d, %v; want %d", c.args, o.ReadBufferSize, err, c.want)
		}
	}
}
