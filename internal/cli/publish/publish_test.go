package publish_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mecha-dev/mecha/internal/cli/publish"
	"github.com/mecha-dev/mecha/internal/cli/run/runtest"
	"github.com/mecha-dev/mecha/internal/mechatest"
	"github.com/mecha-dev/mecha/internal/runtime"
	"github.com/mecha-dev/mecha/internal/selfhosted"
)

// inbox is an app subscribed to pubsub/in and pubsub/a/b that keeps the
// CloudEvents it gets.
type inbox struct {
	mu  sync.Mutex
	got []map[string]any
}

func (i *inbox) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/dapr/subscribe" {
		io.WriteString(w, `[{"pubsubname":"pubsub","topic":"in","route":"/in"},{"pubsubname":"pubsub","topic":"a/b","route":"/in"}]`)
		return
	}
	var ce map[string]any
	_ = json.NewDecoder(r.Body).Decode(&ce)
	i.mu.Lock()
	i.got = append(i.got, ce)
	i.mu.Unlock()
}

func (i *inbox) wait(t *testing.T, n int) []map[string]any {
	t.Helper()
	var got []map[string]any
	mechatest.Eventually(t, 10*time.Second, func() error {
		i.mu.Lock()
		defer i.mu.Unlock()
		got = append([]map[string]any(nil), i.got...)
		if len(got) < n {
			return fmt.Errorf("%d events, want %d", len(got), n)
		}
		return nil
	})
	return got
}

func publishCmd(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := publish.Command()
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(args)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := cmd.ExecuteContext(ctx)
	if out.Len() != 0 {
		t.Errorf("stdout = %q, want nothing", out.String())
	}
	return errOut.String(), err
}

func TestPublish(t *testing.T) {
	runtest.Setup(t)
	registry, err := selfhosted.RegistryFile()
	if err != nil {
		t.Fatal(err)
	}
	app := &inbox{}
	s := mechatest.Start(t, func(o *runtime.Options) {
		o.AppID, o.AppPort, o.RegistryFile = "shop", mechatest.HTTPApp(t, app), registry
	}, mechatest.Component("pubsub", "pubsub.in-memory"))
	mechatest.Eventually(t, 10*time.Second, func() error {
		var m struct{ Subscriptions []any }
		s.Do(t, http.MethodGet, "/v1.0/metadata", nil).JSON(t, &m)
		if len(m.Subscriptions) != 2 {
			return fmt.Errorf("subscriptions: %v", m.Subscriptions)
		}
		return nil
	})
	port := strings.TrimPrefix(s.URL, "http://127.0.0.1:")
	file := filepath.Join(t.TempDir(), "event.txt")
	if err := os.WriteFile(file, []byte("from a file"), 0o644); err != nil {
		t.Fatal(err)
	}

	stderr, err := publishCmd(t, "--app-id", "shop", "--pubsub", "pubsub", "--topic", "in", "--data", `{"id": 7}`, "--metadata", "cloudevent.type=order.created")
	if err != nil || stderr != "event published to pubsub/in\n" {
		t.Fatalf("publish: %v, stderr %q", err, stderr)
	}
	ce := app.wait(t, 1)[0]
	if ce["type"] != "order.created" || ce["datacontenttype"] != "application/json" || ce["source"] != "shop" || fmt.Sprint(ce["data"]) != "map[id:7]" {
		t.Errorf("event = %v", ce)
	}
	if _, err := publishCmd(t, "--dapr-http-port", port, "--pubsub", "pubsub", "-t", "a/b", "-f", file); err != nil {
		t.Fatal(err)
	}
	ce = app.wait(t, 2)[1]
	if ce["data"] != "from a file" || ce["datacontenttype"] != "text/plain" || ce["topic"] != "a/b" {
		t.Errorf("event = %v", ce)
	}

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--app-id", "shop", "--pubsub", "nope", "--topic", "in"}, "publish to nope/in failed: 404 Not Found (ERR_PUBSUB_NOT_FOUND: pubsub nope is not found)"},
		{[]string{"--app-id", "ghost", "--pubsub", "pubsub", "--topic", "in"}, `no running app with id "ghost"`},
		{[]string{"--pubsub", "pubsub", "--topic", "in"}, "give --app-id"},
		{[]string{"--app-id", "shop", "--pubsub", "pubsub", "--topic", "in", "--metadata", "novalue"}, `--metadata "novalue": want key=value`},
		{[]string{"--app-id", "shop", "--pubsub", "pubsub", "--topic", "in", "-d", "x", "-f", file}, "only one of --data and --data-file"},
		{[]string{"--app-id", "shop", "--topic", "in"}, `required flag(s) "pubsub" not set`},
	} {
		if _, err := publishCmd(t, c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("publish %q: %v, want %q", c.args, err, c.want)
		}
	}
}
