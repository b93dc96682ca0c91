package runfile_test

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/mecha-dev/mecha/internal/cli/run/runfile"
)

// tree creates dirs and files (those with a body) under a new temp dir and
// returns it.
func tree(t *testing.T, paths ...string) string {
	t.Helper()
	root := t.TempDir()
	for _, p := range paths {
		full := filepath.Join(root, p)
		if strings.HasSuffix(p, "/") {
			if err := os.MkdirAll(full, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte("kind: Configuration\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func parse(t *testing.T, root, yaml string) (*runfile.Template, error) {
	t.Helper()
	p := filepath.Join(root, "apps.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return runfile.Load(p)
}

func TestValid(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	if err := os.MkdirAll(filepath.Join(home, "shared"), 0o755); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		tree  []string
		yaml  string
		check func(t *testing.T, root string, tpl *runfile.Template)
	}{{
		name: "minimal: app id from the directory, console logs, default resources",
		tree: []string{"svc/orders/"},
		yaml: "version: 1\napps:\n- appDirPath: ./svc/orders\n  command: [go, run, .]\n",
		check: func(t *testing.T, root string, tpl *runfile.Template) {
			want := runfile.App{
				AppID: "orders", Dir: filepath.Join(root, "svc/orders"), Command: []string{"go", "run", "."},
				Env: map[string]string{}, AppLogDestination: "console", SidecarLogDestination: "console",
			}
			if !reflect.DeepEqual(tpl.Apps[0], want) {
				t.Fatalf("app = %+v\nwant  %+v", tpl.Apps[0], want)
			}
			if tpl.Path != filepath.Join(root, "apps.yaml") || len(tpl.Warnings) != 0 {
				t.Fatalf("Path %q, Warnings %q", tpl.Path, tpl.Warnings)
			}
		},
	}, {
		name: "every app field",
		tree: []string{"a/", "a/res1/", "a/res2/", "a/cfg.yaml"},
		yaml: `version: 1
name: shop
apps:
- appID: orders
  appDirPath: a
  appPort: 8081
  appProtocol: GRPC
  appChannelAddress: 127.0.0.2
  daprHTTPPort: 3510
  daprGRPCPort: 50010
  daprInternalGRPCPort: 47310
  apiListenAddresses: 0.0.0.0
  appMaxConcurrency: 7
  resourcesPaths: [res1]
  resourcesPath: res2
  configFilePath: cfg.yaml
  logLevel: debug
  enableApiLogging: true
  maxBodySize: 16Mi
  daprHTTPMaxRequestSize: 8
  appLogDestination: fileAndConsole
  daprdLogDestination: file
  enableAppHealthCheck: true
  appHealthCheckPath: /ready
  appHealthProbeInterval: 2
  appHealthProbeTimeout: 300
  appHealthThreshold: 4
  env: {ONE: "1", FLAG: true}
  command: ["python3", "app.py"]
`,
		check: func(t *testing.T, root string, tpl *runfile.Template) {
			a := filepath.Join(root, "a")
			want := runfile.App{
				AppID: "orders", Dir: a, Command: []string{"python3", "app.py"},
				Env:     map[string]string{"ONE": "1", "FLAG": "true"},
				AppPort: 8081, AppProtocol: "grpc", AppChannelAddress: "127.0.0.2",
				HTTPPort: 3510, GRPCPort: 50010, InternalGRPCPort: 47310, ListenAddresses: "0.0.0.0", AppMaxConcurrency: 7,
				ResourcesPaths: []string{filepath.Join(a, "res1"), filepath.Join(a, "res2")},
				ConfigFile:     filepath.Join(a, "cfg.yaml"),
				LogLevel:       "debug", EnableAPILogging: true, MaxBodySize: "16Mi", MaxRequestSizeMB: 8,
				AppLogDestination: "fileAndConsole", SidecarLogDestination: "file",
				EnableAppHealthCheck: true, AppHealthCheckPath: "/ready", AppHealthProbeInterval: 2, AppHealthProbeTimeout: 300, AppHealthThreshold: 4,
			}
			if !reflect.DeepEqual(tpl.Apps[0], want) {
				t.Fatalf("app = %+v\nwant  %+v", tpl.Apps[0], want)
			}
			if tpl.Name != "shop" {
				t.Fatalf("Name = %q", tpl.Name)
			}
			if got := tpl.Apps[0].LogDir(); got != filepath.Join(a, ".dapr", "logs") {
				t.Fatalf("LogDir = %q", got)
			}
		},
	}, {
		name: "common fills what apps leave empty; apps win; env merges",
		tree: []string{"a/", "b/", "shared-res/", "common.yaml", "b/own.yaml"},
		yaml: `version: 1
common:
  resourcesPaths: [./shared-res]
  configFilePath: common.yaml
  appProtocol: grpc
  logLevel: warn
  maxBodySize: 1Mi
  enableApiLogging: true
  appLogDestination: file
  enableAppHealthCheck: true
  appHealthProbeInterval: 9
  env: {SHARED: common, OVERRIDE: common}
apps:
- appDirPath: a
  command: [a]
- appDirPath: b
  appProtocol: http
  logLevel: error
  appHealthProbeInterval: 1
  configFilePath: own.yaml
  env: {OVERRIDE: b, OWN: b}
  command: [b]
`,
		check: func(t *testing.T, root string, tpl *runfile.Template) {
			a, b := tpl.Apps[0], tpl.Apps[1]
			res := []string{filepath.Join(root, "shared-res")}
			if !reflect.DeepEqual(a.ResourcesPaths, res) || !reflect.DeepEqual(b.ResourcesPaths, res) {
				t.Errorf("resources %q, %q; want the common %q for both", a.ResourcesPaths, b.ResourcesPaths, res)
			}
			if a.ConfigFile != filepath.Join(root, "common.yaml") || b.ConfigFile != filepath.Join(root, "b/own.yaml") {
				t.Errorf("config %q, %q", a.ConfigFile, b.ConfigFile)
			}
			if a.AppProtocol != "grpc" || b.AppProtocol != "http" || a.LogLevel != "warn" || b.LogLevel != "error" {
				t.Errorf("protocols %q %q, levels %q %q", a.AppProtocol, b.AppProtocol, a.LogLevel, b.LogLevel)
			}
			if !a.EnableAppHealthCheck || !b.EnableAppHealthCheck || a.AppHealthProbeInterval != 9 || b.AppHealthProbeInterval != 1 {
				t.Errorf("health checks: a %v every %ds, b %v every %ds", a.EnableAppHealthCheck, a.AppHealthProbeInterval, b.EnableAppHealthCheck, b.AppHealthProbeInterval)
			}
			if a.MaxBodySize != "1Mi" || !b.EnableAPILogging || b.AppLogDestination != "file" || b.SidecarLogDestination != "console" {
				t.Errorf("a %+v\nb %+v", a, b)
			}
			if want := map[string]string{"SHARED": "common", "OVERRIDE": "common"}; !reflect.DeepEqual(a.Env, want) {
				t.Errorf("a env %v, want %v", a.Env, want)
			}
			if want := map[string]string{"SHARED": "common", "OVERRIDE": "b", "OWN": "b"}; !reflect.DeepEqual(b.Env, want) {
				t.Errorf("b env %v, want %v", b.Env, want)
			}
		},
	}, {
		name: "the app's .dapr directory comes before common, after its own paths",
		tree: []string{"a/.dapr/resources/", "a/.dapr/config.yaml", "b/.dapr/resources/", "b/mine/", "b/mine.yaml", "c/", "shared/", "shared.yaml"},
		yaml: `version: 1
common: {resourcesPaths: [shared], configFilePath: shared.yaml}
apps:
- {appDirPath: a}
- {appDirPath: b, resourcesPaths: [mine], configFilePath: mine.yaml}
- {appDirPath: c}
`,
		check: func(t *testing.T, root string, tpl *runfile.Template) {
			got := [][2]any{}
			for _, a := range tpl.Apps {
				got = append(got, [2]any{a.ResourcesPaths, a.ConfigFile})
			}
			j := func(p string) string { return filepath.Join(root, p) }
			want := [][2]any{
				{[]string{j("a/.dapr/resources")}, j("a/.dapr/config.yaml")},
				{[]string{j("b/mine")}, j("b/mine.yaml")},
				{[]string{j("shared")}, j("shared.yaml")},
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("resources/config = %q\nwant %q", got, want)
			}
		},
	}, {
		name: "home directory and absolute paths",
		tree: []string{"a/"},
		yaml: "version: 1\napps:\n- appDirPath: a\n  resourcesPaths: [\"~/shared\"]\n",
		check: func(t *testing.T, root string, tpl *runfile.Template) {
			if want := []string{filepath.Join(home, "shared")}; !reflect.DeepEqual(tpl.Apps[0].ResourcesPaths, want) {
				t.Fatalf("resources %q, want %q", tpl.Apps[0].ResourcesPaths, want)
			}
		},
	}, {
		name: "no command: the sidecar runs alone",
		tree: []string{"a/"},
		yaml: "version: 1\napps:\n- appDirPath: a\n  daprHTTPPort: 3600\n",
		check: func(t *testing.T, root string, tpl *runfile.Template) {
			if a := tpl.Apps[0]; len(a.Command) != 0 || a.HTTPPort != 3600 {
				t.Fatalf("app %+v", a)
			}
		},
	}, {
		name: "unknown fields warn; dapr fields without effect are listed",
		tree: []string{"a/"},
		yaml: `version: 1
extra: 1
common:
  enableProfiling: true
  colour: blue
apps:
- appDirPath: a
  appId: nope
  profilePort: 9999
  command: [x]
`,
		check: func(t *testing.T, root string, tpl *runfile.Template) {
			want := []string{
				`template: unknown field "extra" is ignored`,
				`common: unknown field "colour" is ignored`,
				`apps[0]: unknown field "appId" is ignored (did you mean "appID"?)`,
			}
			if !reflect.DeepEqual(tpl.Warnings, want) {
				t.Errorf("Warnings = %q\nwant %q", tpl.Warnings, want)
			}
			if a := tpl.Apps[0]; a.AppID != "a" || !reflect.DeepEqual(a.NoEffect, []string{"enableProfiling", "profilePort"}) {
				t.Errorf("AppID %q NoEffect %q", a.AppID, a.NoEffect)
			}
		},
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := tree(t, c.tree...)
			tpl, err := parse(t, root, c.yaml)
			if err != nil {
				t.Fatal(err)
			}
			c.check(t, root, tpl)
		})
	}
}

func TestInvalid(t *testing.T) {
	cases := []struct {
		name string
		yaml string
		want []string // each must appear in the error
	}{
		{"not YAML", "version: [1\n", []string{"not a valid YAML document"}},
		{"not a mapping", "- a\n", []string{"a run template is a YAML mapping"}},
		{"no version", "apps:\n- {appDirPath: a, command: [x]}\n", []string{"required field 'version' not found"}},
		{"future version", "version: 2\napps:\n- {appDirPath: a, command: [x]}\n", []string{"version 2 is not supported"}},
		{"no apps", "version: 1\n", []string{"no apps to run"}},
		{"apps not a list", "version: 1\napps: {appDirPath: a}\n", []string{"'apps' must be a list"}},
		{"app not a mapping", "version: 1\napps: [a]\n", []string{"apps[0] must be a mapping"}},
		{"command as a string", "version: 1\napps:\n- {appDirPath: a, command: go run .}\n", []string{`apps[0].command must be a list, e.g. command: ["go", "run", "."], not "go run ."`}},
		{"env as a list", "version: 1\napps:\n- {appDirPath: a, env: [A=1]}\n", []string{"apps[0].env must be a mapping"}},
		{"no appDirPath", "version: 1\napps:\n- {appID: x, command: [x]}\n", []string{"apps[0] (x): required field 'appDirPath' not found"}},
		{"missing appDirPath", "version: 1\napps:\n- {appDirPath: nowhere}\n", []string{"apps[0]: appDirPath:", "nowhere does not exist"}},
		{"appDirPath is a file", "version: 1\napps:\n- {appDirPath: file.yaml}\n", []string{"file.yaml is not a directory"}},
		{"duplicate explicit ids", "version: 1\napps:\n- {appID: x, appDirPath: a}\n- {appID: x, appDirPath: b}\n", []string{`apps[0] and apps[1] have the same appID "x"`}},
		{"duplicate derived ids", "version: 1\napps:\n- {appDirPath: a}\n- {appDirPath: ./a/}\n", []string{`apps[0] and apps[1] have the same appID "a"`}},
		{"bad app id", "version: 1\napps:\n- {appID: my.app, appDirPath: a}\n- {appID: \"my app\", appDirPath: b}\n", []string{`appID "my.app" must not contain`, `appID "my app" must not contain`}},
		{"empty command", "version: 1\napps:\n- {appDirPath: a, command: [\"\", x]}\n", []string{"command[0] is empty"}},
		{"port too large", "version: 1\napps:\n- {appDirPath: a, daprHTTPPort: 70000}\n", []string{"daprHTTPPort 70000 is not a valid port"}},
		{"negative port", "version: 1\napps:\n- {appDirPath: a, appPort: -1}\n", []string{"appPort -1 is not a valid port"}},
		{"port not a number", "version: 1\napps:\n- {appDirPath: a, appPort: http}\n", []string{"cannot unmarshal"}},
		{"port twice", "version: 1\napps:\n- {appDirPath: a, appPort: 8080}\n- {appDirPath: b, daprHTTPPort: 8080}\n", []string{"port 8080 is given twice: apps[0] (a) appPort and apps[1] (b) daprHTTPPort"}},
		{"port twice in one app", "version: 1\napps:\n- {appDirPath: a, daprHTTPPort: 3500, daprGRPCPort: 3500}\n", []string{"port 3500 is given twice"}},
		{"protocol", "version: 1\napps:\n- {appDirPath: a, appProtocol: ftp}\n", []string{`appProtocol "ftp" is not one of`}},
		{"common protocol", "version: 1\ncommon: {appProtocol: ftp}\napps:\n- {appDirPath: a}\n", []string{`apps[0]: appProtocol "ftp"`}},
		{"log level", "version: 1\napps:\n- {appDirPath: a, logLevel: chatty}\n", []string{`logLevel "chatty" is not one of`}},
		{"body size", "version: 1\napps:\n- {appDirPath: a, maxBodySize: huge}\n", []string{"maxBodySize:"}},
		{"health interval", "version: 1\napps:\n- {appDirPath: a, appHealthProbeInterval: -5}\n", []string{"appHealthProbeInterval -5 must be positive"}},
		{"health path", "version: 1\napps:\n- {appDirPath: a, appHealthCheckPath: healthz}\n", []string{`appHealthCheckPath "healthz" must start with /`}},
		{"log destination", "version: 1\napps:\n- {appDirPath: a, appLogDestination: syslog}\n", []string{`appLogDestination "syslog" is not one of console, file, fileAndConsole`}},
		{"missing resources", "version: 1\napps:\n- {appDirPath: a, resourcesPaths: [nope]}\n", []string{"apps[0]: resourcesPaths:", "a/nope does not exist"}},
		{"missing common config", "version: 1\ncommon: {configFilePath: nope.yaml}\napps:\n- {appDirPath: a}\n", []string{"common.configFilePath:", "nope.yaml does not exist"}},
		{"every problem at once", "apps:\n- {appDirPath: a, appProtocol: ftp, daprGRPCPort: 99999}\n- {appDirPath: nowhere}\n", []string{
			"invalid run template:", "required field 'version'", `appProtocol "ftp"`, "daprGRPCPort 99999", "nowhere does not exist",
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := tree(t, "a/", "b/", "file.yaml")
			tpl, err := parse(t, root, c.yaml)
			if err == nil {
				t.Fatalf("Load succeeded: %+v", tpl)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			if !strings.Contains(err.Error(), filepath.Join(root, "apps.yaml")) {
				t.Errorf("error does not name the file:\n%v", err)
			}
		})
	}
}

func TestFind(t *testing.T) {
	root := tree(t, "withdefault/dapr.yaml", "empty/", "other/apps.yaml")
	if got, err := runfile.Find(filepath.Join(root, "withdefault")); err != nil || got != filepath.Join(root, "withdefault", "dapr.yaml") {
		t.Errorf("Find(dir) = %q, %v; want its dapr.yaml", got, err)
	}
	if got, err := runfile.Find(filepath.Join(root, "other", "apps.yaml")); err != nil || got != filepath.Join(root, "other", "apps.yaml") {
		t.Errorf("Find(file) = %q, %v", got, err)
	}
	if _, err := runfile.Find(filepath.Join(root, "empty")); err == nil || !strings.Contains(err.Error(), "no dapr.yaml in directory") {
		t.Errorf("Find(dir without dapr.yaml) = %v", err)
	}
	if _, err := runfile.Find(filepath.Join(root, "missing.yaml")); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("Find(missing) = %v", err)
	}
	if _, err := runfile.Find(""); err == nil {
		t.Error("Find(\"\") succeeded")
	}
}

// TestExample: the template the README shows is valid.
func TestExample(t *testing.T) {
	tpl, err := runfile.Load("../../../../examples/apps.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, a := range tpl.Apps {
		ids = append(ids, a.AppID)
		if len(a.Command) == 0 {
			t.Errorf("%s has no command", a.AppID)
		}
	}
	if want := []string{"greeter", "caller"}; !reflect.DeepEqual(ids, want) {
		t.Fatalf("apps %q, want %q", ids, want)
	}
	if len(tpl.Warnings) != 0 {
		t.Fatalf("warnings: %q", tpl.Warnings)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("version: 1\napps:\n- {appDirPath: ., command: [x], env: {A: b}}\n"))
	f.Add([]byte("version: 1\ncommon: {resourcesPaths: [.]}\napps: [{appID: a, appDirPath: .}, {appID: b, appDirPath: .}]\n"))
	f.Add([]byte("apps: x\ncommon: [1]\n"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		tpl, err := runfile.Parse(filepath.Join(dir, "apps.yaml"), data)
		if err == nil && len(tpl.Apps) == 0 {
			t.Fatal("a valid template without apps")
		}
	})
}
