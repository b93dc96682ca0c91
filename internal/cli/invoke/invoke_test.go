package invoke_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mecha-dev/mecha/internal/cli/invoke"
	"github.com/mecha-dev/mecha/internal/cli/run/runtest"
	"github.com/mecha-dev/mecha/internal/mechatest"
	"github.com/mecha-dev/mecha/internal/runtime"
	"github.com/mecha-dev/mecha/internal/selfhosted"
)

// echo describes each request it gets; /missing is a 404, /fail a 500.
func echo(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	switch r.URL.Path {
	case "/missing":
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, "no such thing")
		return
	case "/fail":
		w.WriteHeader(http.StatusInternalServerError)
		io.WriteString(w, `{"errorCode":"APP_BROKE","message":"it broke"}`)
		return
	}
	w.Header().Set("X-Echo", "1")
	fmt.Fprintf(w, "%s %s x-test=%s ct=%s caller=%s body=%s", r.Method, r.URL.RequestURI(), r.Header.Get("X-Test"),
		r.Header.Get("Content-Type"), r.Header.Get("dapr-caller-app-id"), b)
}

// sidecars starts the app "target" behind its sidecar and a sidecar "caller"
// without an app, both in the registry `mecha invoke` reads.
func sidecars(t *testing.T) (target, caller *mechatest.Sidecar) {
	t.Helper()
	runtest.Setup(t)
	registry, err := selfhosted.RegistryFile()
	if err != nil {
		t.Fatal(err)
	}
	port := mechatest.HTTPApp(t, http.HandlerFunc(echo))
	inRegistry := func(id string, appPort int) func(*runtime.Options) {
		return func(o *runtime.Options) {
			o.AppID, o.AppPort, o.RegistryFile = id, appPort, registry
		}
	}
	target = mechatest.Start(t, inRegistry("target", port))
	caller = mechatest.Start(t, inRegistry("caller", 0))
	return target, caller
}

// invokeCmd runs `mecha invoke ARGS...` and returns its stdout, stderr and
// error.
func invokeCmd(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	cmd := invoke.Command()
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(args)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := cmd.ExecuteContext(ctx)
	return out.String(), errOut.String(), err
}

func TestInvoke(t *testing.T) {
	_, caller := sidecars(t)
	bodyFile := filepath.Join(t.TempDir(), "body.json")
	if err := os.WriteFile(bodyFile, []byte(`{"from":"file"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	callerPort := strings.TrimPrefix(caller.URL, "http://127.0.0.1:")
	cases := []struct {
		name      string
		args      []string
		wantOut   string
		wantErr   string // "" for success
		wantInErr string // in stderr on success
	}{{
		// By default through the target's own sidecar: the call is a
		// self-invocation, so the app sees itself as the caller.
		name:      "POST by default, data as JSON",
		args:      []string{"--app-id", "target", "--method", "orders", "--data", `{"id":1}`},
		wantOut:   `POST /orders x-test= ct=application/json caller=target body={"id":1}`,
		wantInErr: "app target invoked successfully: 200 OK\n",
	}, {
		name:    "verb, nested method, query string and headers pass through",
		args:    []string{"-a", "target", "-m", "/orders/7/items?sort=asc&n=2", "-v", "put", "-d", "hello", "-H", "x-test=yes", "-H", "content-type=text/plain"},
		wantOut: "PUT /orders/7/items?sort=asc&n=2 x-test=yes ct=text/plain caller=target body=hello",
	}, {
		name:    "GET without a body",
		args:    []string{"-a", "target", "-m", "status", "--verb", "GET"},
		wantOut: "GET /status x-test= ct= caller=target body=",
	}, {
		name:    "data file",
		args:    []string{"-a", "target", "-m", "upload", "--data-file", bodyFile},
		wantOut: `POST /upload x-test= ct=application/json caller=target body={"from":"file"}`,
	}, {
		name:    "through another sidecar: the app sees the caller",
		args:    []string{"-a", "target", "-m", "hop", "--dapr-http-port", callerPort},
		wantOut: "POST /hop x-test= ct= caller=caller body=",
	}, {
		name:    "the app's 404 comes back and fails the command",
		args:    []string{"-a", "target", "-m", "missing", "--verb", "GET"},
		wantOut: "no such thing",
		wantErr: "target answered 404 Not Found",
	}, {
		name:    "the app's 500 through another sidecar",
		args:    []string{"-a", "target", "-m", "fail", "--dapr-http-port", callerPort},
		wantOut: `{"errorCode":"APP_BROKE","message":"it broke"}`,
		wantErr: "target answered 500 Internal Server Error (APP_BROKE: it broke)",
	}, {
		name:    "an app no sidecar knows, through a sidecar: Dapr's error",
		args:    []string{"-a", "ghost", "-m", "x", "--dapr-http-port", callerPort},
		wantErr: "ghost answered 500 Internal Server Error (ERR_DIRECT_INVOKE:",
	}, {
		name:    "an app that is not running",
		args:    []string{"-a", "ghost", "-m", "x"},
		wantErr: `no running app with id "ghost" (see mecha list)`,
	}, {
		name:    "a sidecar that is not there",
		args:    []string{"-a", "target", "-m", "x", "--dapr-http-port", fmt.Sprint(runtest.FreePort(t))},
		wantErr: "calling target through the sidecar on port",
	}, {
		name:    "data and data file",
		args:    []string{"-a", "target", "-m", "x", "-d", "a", "-f", bodyFile},
		wantErr: "only one of --data and --data-file",
	}, {
		name:    "missing data file",
		args:    []string{"-a", "target", "-m", "x", "-f", bodyFile + ".nope"},
		wantErr: "--data-file:",
	}, {
		name:    "bad header",
		args:    []string{"-a", "target", "-m", "x", "-H", "x-test:yes"},
		wantErr: `--header "x-test:yes": want key=value`,
	}, {
		name:    "bad verb",
		args:    []string{"-a", "target", "-m", "x", "-v", "GE T"},
		wantErr: `--verb "GE T" is not an HTTP method`,
	}, {
		name:    "no method",
		args:    []string{"-a", "target"},
		wantErr: `required flag(s) "method" not set`,
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, errOut, err := invokeCmd(t, c.args...)
			if c.wantErr == "" {
				if err != nil {
					t.Fatalf("mecha invoke = %v (stderr %q)", err, errOut)
				}
			} else if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("mecha invoke = %v, want an error containing %q", err, c.wantErr)
			}
			if c.wantOut != "" || c.wantErr == "" {
				if out != c.wantOut {
					t.Errorf("stdout %q, want %q", out, c.wantOut)
				}
			}
			if c.wantInErr != "" && errOut != c.wantInErr {
				t.Errorf("stderr %q, want %q", errOut, c.wantInErr)
			}
		})
	}
}
