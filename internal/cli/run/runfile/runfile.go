// Package runfile reads Dapr's multi-app run template (`dapr run -f`,
// usually dapr.yaml) for `mecha run -f` and `mecha stop -f`, so a template
// written for the dapr CLI starts the same apps under Mecha.
//
// It follows the dapr CLI's rules: version is required; every app needs an
// appDirPath, relative to the template's directory, and its appID defaults
// to that directory's name; the app's own relative paths (resourcesPaths,
// configFilePath) are relative to its appDirPath, the common section's to
// the template's directory, and "~/" is the home directory; a field left
// empty in an app takes the common section's value, env maps merge with the
// app winning; resources come from the app's resourcesPaths, else
// <appDirPath>/.dapr/resources when it exists, else the common
// resourcesPaths, else Mecha's defaults (~/.mecha/components); the
// configuration likewise from configFilePath, <appDirPath>/.dapr/config.yaml
// or the common configFilePath. An app without a command runs its sidecar
// alone. Unknown fields are reported as warnings, as the dapr CLI ignores
// them; fields Mecha does not act on yet are listed in App.NoEffect.
//
// Where Mecha is stricter than the dapr CLI it says so before anything
// starts: duplicate app ids, a port given twice, malformed commands, bad
// protocols, log levels, sizes or log destinations are errors, all reported
// at once.
package runfile

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/mecha-dev/mecha/internal/cli/sidecar"
	"github.com/mecha-dev/mecha/internal/logging"
)

// DefaultName is the template file looked for when -f names a directory.
const DefaultName = "dapr.yaml"

// Log destinations, as the dapr CLI spells them.
const (
	Console        = "console"
	File           = "file"
	FileAndConsole = "fileAndConsole"
)

// Template is a parsed, validated run template.
type Template struct {
	// Path is the template file's absolute path.
	Path string
	Name string
	Apps []App
	// Warnings are problems that do not stop the apps (unknown fields).
	Warnings []string
}

// App is one app of a template, with the common section merged in and
// every path absolute.
type App struct {
	AppID string
	// Dir is the app's directory (appDirPath): its command runs there.
	Dir string
	// Command is empty for an app whose sidecar runs alone.
	Command []string
	// Env is the common env overlaid with the app's.
	Env map[string]string

	AppPort           int
	AppProtocol       string // "" means http
	AppChannelAddress string
	HTTPPort          int
	GRPCPort          int
	InternalGRPCPort  int
	MetricsPort       int // 0: a free port
	ListenAddresses   string
	AppMaxConcurrency int

	// ResourcesPaths is nil when Mecha's default resources apply.
	ResourcesPaths []string
	// ConfigFile is "" without a Configuration.
	ConfigFile string

	LogLevel         string
	EnableAPILogging bool
	// MaxBodySize is a quantity ("16Mi") or "" for the default;
	// MaxRequestSizeMB the older daprHTTPMaxRequestSize (0: unset).
	MaxBodySize      string
	MaxRequestSizeMB int

	// App health checks: interval in seconds, timeout in milliseconds, 0
	// (and "" for the path) meaning daprd's default.
	EnableAppHealthCheck   bool
	AppHealthCheckPath     string
	AppHealthProbeInterval int
	AppHealthProbeTimeout  int
	AppHealthThreshold     int

	// AppLogDestination and SidecarLogDestination are console, file or
	// fileAndConsole (daprdLogDestination in the template).
	AppLogDestination     string
	SidecarLogDestination string

	// NoEffect lists the fields set for this app (directly or through
	// common) that Mecha accepts but does not act on yet.
	NoEffect []string
}

// LogDir is where file log destinations write: <appDirPath>/.dapr/logs, as
// the dapr CLI does.
func (a App) LogDir() string { return filepath.Join(a.Dir, ".dapr", "logs") }

// Find returns the template path for -f: the file itself, or dapr.yaml in
// the directory it names.
func Find(path string) (string, error) {
	if path == "" {
		return "", errors.New("no run template given")
	}
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("run template: %w", err)
	}
	if fi.IsDir() {
		p := filepath.Join(path, DefaultName)
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("no %s in directory %s (name the template file with -f)", DefaultName, path)
		}
		path = p
	}
	return filepath.Abs(path)
}

// Load finds (see Find), reads, parses and validates a template.
func Load(path string) (*Template, error) {
	p, err := Find(path)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("run template: %w", err)
	}
	return Parse(p, data)
}

// Parse parses and validates a template read from path (absolute; its
// directory anchors relative paths).
func Parse(path string, data []byte) (*Template, error) {
	var doc yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(data)).Decode(&doc); err != nil {
		return nil, fmt.Errorf("%s: not a valid YAML document: %w", path, err)
	}
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s: a run template is a YAML mapping with version and apps", path)
	}
	root := doc.Content[0]
	if err := checkShapes(root); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var raw rawFile
	if err := root.Decode(&raw); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	t := &Template{Path: path, Name: raw.Name}
	w, _ := checkKeys(root, "template", knownTop, nil)
	t.Warnings = append(t.Warnings, w...)
	commonNode := child(root, "common")
	w, commonIgnored := checkKeys(commonNode, "common", knownShared, noEffectShared)
	t.Warnings = append(t.Warnings, w...)

	var errs []error
	fail := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	switch raw.Version {
	case 0:
		fail("required field 'version' not found (use version: 1)")
	case 1:
	default:
		fail("version %d is not supported (only 1)", raw.Version)
	}
	if len(raw.Apps) == 0 {
		fail("no apps to run: 'apps' is empty or missing")
	}
	base := filepath.Dir(path)
	common := raw.Common
	commonRes, err := resolveAll(base, append(slices.Clone(common.ResourcesPaths), nonEmpty(common.ResourcesPath)...))
	if err != nil {
		fail("common.resourcesPaths: %v", err)
	}
	commonConfig, err := resolve(base, common.ConfigFilePath)
	if err != nil {
		fail("common.configFilePath: %v", err)
	}
	appsNode := child(root, "apps")
	for i, ra := range raw.Apps {
		var node *yaml.Node
		if appsNode != nil && i < len(appsNode.Content) {
			node = appsNode.Content[i]
		}
		a, aerrs, warns := buildApp(i, ra, node, base, common, commonRes, commonConfig, commonIgnored)
		t.Warnings = append(t.Warnings, warns...)
		errs = append(errs, aerrs...)
		t.Apps = append(t.Apps, a)
	}
	errs = append(errs, checkUnique(t.Apps)...)
	if len(errs) > 0 {
		return nil, fmt.Errorf("%s: invalid run template:\n  %w", path, joinIndented(errs))
	}
	return t, nil
}

// checkShapes turns the decoder's type errors for the usual mistakes into
// messages that say what to write instead.
func checkShapes(root *yaml.Node) error {
	if n := child(root, "apps"); n != nil && n.Kind != yaml.SequenceNode && !(n.Kind == yaml.ScalarNode && n.Tag == "!!null") {
		return errors.New("'apps' must be a list of apps (each starting with \"- appDirPath: ...\")")
	}
	if n := child(root, "common"); n != nil && n.Kind != yaml.MappingNode && !(n.Kind == yaml.ScalarNode && n.Tag == "!!null") {
		return errors.New("'common' must be a mapping of shared fields")
	}
	apps := child(root, "apps")
	if apps == nil || apps.Kind != yaml.SequenceNode {
		return nil
	}
	for i, a := range apps.Content {
		if a.Kind != yaml.MappingNode {
			return fmt.Errorf("apps[%d] must be a mapping (appID, appDirPath, command, ...)", i)
		}
		if c := child(a, "command"); c != nil && c.Kind == yaml.ScalarNode && c.Tag != "!!null" {
			return fmt.Errorf("apps[%d].command must be a list, e.g. command: [\"go\", \"run\", \".\"], not %q", i, c.Value)
		}
		if e := child(a, "env"); e != nil && e.Kind != yaml.MappingNode && e.Tag != "!!null" {
			return fmt.Errorf("apps[%d].env must be a mapping of NAME: value", i)
		}
	}
	return nil
}

func buildApp(i int, ra rawApp, node *yaml.Node, base string, common rawShared, commonRes []string, commonConfig string, commonIgnored []string) (App, []error, []string) {
	where := fmt.Sprintf("apps[%d]", i)
	if ra.AppID != "" {
		where = fmt.Sprintf("apps[%d] (%s)", i, ra.AppID)
	}
	var errs []error
	fail := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf(where+": "+format, a...))
	}
	warns, ignored := checkKeys(node, where, knownApp, append(slices.Clone(noEffectShared), noEffectApp...))
	a := App{
		AppID:                  ra.AppID,
		Command:                ra.Command,
		AppPort:                ra.AppPort,
		HTTPPort:               ra.HTTPPort,
		GRPCPort:               ra.GRPCPort,
		InternalGRPCPort:       ra.InternalGRPCPort,
		MetricsPort:            ra.MetricsPort,
		AppChannelAddress:      ra.AppChannelAddress,
		AppProtocol:            strings.ToLower(or(ra.AppProtocol, common.AppProtocol)),
		ListenAddresses:        or(ra.APIListenAddresses, common.APIListenAddresses),
		AppMaxConcurrency:      or(ra.AppMaxConcurrency, common.AppMaxConcurrency),
		LogLevel:               or(ra.LogLevel, common.LogLevel),
		EnableAPILogging:       ra.EnableAPILogging || common.EnableAPILogging,
		MaxBodySize:            or(ra.MaxBodySize, common.MaxBodySize),
		MaxRequestSizeMB:       or(ra.MaxRequestSizeMB, common.MaxRequestSizeMB),
		EnableAppHealthCheck:   ra.EnableAppHealthCheck || common.EnableAppHealthCheck,
		AppHealthCheckPath:     or(ra.AppHealthCheckPath, common.AppHealthCheckPath),
		AppHealthProbeInterval: or(ra.AppHealthProbeInterval, common.AppHealthProbeInterval),
		AppHealthProbeTimeout:  or(ra.AppHealthProbeTimeout, common.AppHealthProbeTimeout),
		AppHealthThreshold:     or(ra.AppHealthThreshold, common.AppHealthThreshold),
		AppLogDestination:      or(ra.AppLogDestination, common.AppLogDestination, Console),
		// Mecha shows the sidecar's log on the console by default (the
		// dapr CLI writes daprd's to a file): it is one process with the
		// app's, and `mecha run` shows both.
		SidecarLogDestination: or(ra.SidecarLogDest, common.SidecarLogDest, Console),
		NoEffect:              uniqueSorted(append(slices.Clone(ignored), commonIgnored...)),
	}
	a.Env = maps.Clone(common.Env)
	if a.Env == nil {
		a.Env = map[string]string{}
	}
	maps.Copy(a.Env, ra.Env)

	if ra.AppDirPath == "" {
		fail("required field 'appDirPath' not found (the app's directory, relative to %s)", base)
	} else if dir, err := resolve(base, ra.AppDirPath); err != nil {
		fail("appDirPath: %v", err)
	} else if fi, err := os.Stat(dir); err == nil && !fi.IsDir() {
		fail("appDirPath %s is not a directory", dir)
	} else {
		a.Dir = dir
	}
	if a.AppID == "" && a.Dir != "" {
		a.AppID = filepath.Base(a.Dir)
	}
	if err := checkAppID(a.AppID); err != nil && a.Dir != "" {
		fail("%v", err)
	}
	if len(a.Command) > 0 && strings.TrimSpace(a.Command[0]) == "" {
		fail("command[0] is empty: it must name the program to run")
	}
	for _, p := range []struct {
		name string
		v    int
	}{{"appPort", a.AppPort}, {"daprHTTPPort", a.HTTPPort}, {"daprGRPCPort", a.GRPCPort}, {"daprInternalGRPCPort", a.InternalGRPCPort}, {"metricsPort", a.MetricsPort}} {
		if p.v < 0 || p.v > 65535 {
			fail("%s %d is not a valid port (1-65535, or leave it out for a free one)", p.name, p.v)
		}
	}
	switch a.AppProtocol {
	case "", "http", "https", "grpc", "grpcs", "h2c":
	default:
		fail("appProtocol %q is not one of http, https, grpc, grpcs, h2c", a.AppProtocol)
	}
	if a.LogLevel != "" {
		if _, err := logging.ParseLevel(a.LogLevel); err != nil {
			fail("logLevel %q is not one of debug, info, warn, error", a.LogLevel)
		}
	}
	if a.MaxBodySize != "" {
		if _, err := sidecar.ParseQuantity(a.MaxBodySize); err != nil {
			fail("maxBodySize: %v", err)
		}
	}
	for _, h := range []struct {
		name string
		v    int
	}{{"appHealthProbeInterval", a.AppHealthProbeInterval}, {"appHealthProbeTimeout", a.AppHealthProbeTimeout}, {"appHealthThreshold", a.AppHealthThreshold}} {
		if h.v < 0 {
			fail("%s %d must be positive (or left out for daprd's default)", h.name, h.v)
		}
	}
	if a.AppHealthCheckPath != "" && !strings.HasPrefix(a.AppHealthCheckPath, "/") {
		fail("appHealthCheckPath %q must start with /", a.AppHealthCheckPath)
	}
	if a.MaxRequestSizeMB < 0 {
		fail("daprHTTPMaxRequestSize %d must be positive (MB)", a.MaxRequestSizeMB)
	}
	for _, d := range []struct{ name, v string }{{"appLogDestination", a.AppLogDestination}, {"daprdLogDestination", a.SidecarLogDestination}} {
		switch d.v {
		case Console, File, FileAndConsole:
		default:
			fail("%s %q is not one of console, file, fileAndConsole", d.name, d.v)
		}
	}
	for k := range a.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			fail("env: %q is not a valid variable name", k)
		}
	}
	if a.Dir == "" {
		return a, errs, warns
	}
	res, err := resolveAll(a.Dir, append(slices.Clone(ra.ResourcesPaths), nonEmpty(ra.ResourcesPath)...))
	switch {
	case err != nil:
		fail("resourcesPaths: %v", err)
	case len(res) > 0:
		a.ResourcesPaths = res
	case isDir(filepath.Join(a.Dir, ".dapr", "resources")):
		a.ResourcesPaths = []string{filepath.Join(a.Dir, ".dapr", "resources")}
	default:
		a.ResourcesPaths = commonRes
	}
	cfg, err := resolve(a.Dir, ra.ConfigFilePath)
	switch {
	case err != nil:
		fail("configFilePath: %v", err)
	case cfg != "":
		a.ConfigFile = cfg
	case isFile(filepath.Join(a.Dir, ".dapr", "config.yaml")):
		a.ConfigFile = filepath.Join(a.Dir, ".dapr", "config.yaml")
	default:
		a.ConfigFile = commonConfig
	}
	return a, errs, warns
}

// checkAppID applies the runtime's rule for app ids, and rejects dots,
// which the dapr CLI forbids because invocation reads "app.namespace".
func checkAppID(id string) error {
	if id == "" {
		return errors.New("appID is empty")
	}
	if strings.ContainsAny(id, "| \t\n/.") {
		return fmt.Errorf("appID %q must not contain spaces, dots, '/' or '|'", id)
	}
	return nil
}

// checkUnique rejects app ids and explicit ports used twice.
func checkUnique(apps []App) []error {
	var errs []error
	ids := map[string]int{}
	for i, a := range apps {
		if a.AppID == "" {
			continue
		}
		if j, ok := ids[a.AppID]; ok {
			errs = append(errs, fmt.Errorf("apps[%d] and apps[%d] have the same appID %q (app ids must be unique in a template)", j, i, a.AppID))
			continue
		}
		ids[a.AppID] = i
	}
	type use struct {
		app   int
		field string
	}
	ports := map[int]use{}
	for i, a := range apps {
		for _, p := range []struct {
			field string
			v     int
		}{{"appPort", a.AppPort}, {"daprHTTPPort", a.HTTPPort}, {"daprGRPCPort", a.GRPCPort}, {"daprInternalGRPCPort", a.InternalGRPCPort}, {"metricsPort", a.MetricsPort}} {
			if p.v <= 0 || p.v > 65535 {
				continue
			}
			if u, ok := ports[p.v]; ok {
				errs = append(errs, fmt.Errorf("port %d is given twice: apps[%d] (%s) %s and apps[%d] (%s) %s", p.v, u.app, apps[u.app].AppID, u.field, i, a.AppID, p.field))
				continue
			}
			ports[p.v] = use{i, p.field}
		}
	}
	return errs
}

// resolve makes p absolute against base ("~/" is the home directory) and
// checks that it exists; "" stays "".
func resolve(base, p string) (string, error) {
	if p == "" {
		return "", nil
	}
	if p == "~" || strings.HasPrefix(p, "~/") {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("%s: %w", p, err)
		}
		p = filepath.Join(home, strings.TrimPrefix(p[1:], "/"))
	}
	if !filepath.IsAbs(p) {
		p = filepath.Join(base, p)
	}
	if _, err := os.Stat(p); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("%s does not exist", p)
		}
		return "", err
	}
	return filepath.Clean(p), nil
}

func resolveAll(base string, ps []string) ([]string, error) {
	var out []string
	var errs []error
	for _, p := range ps {
		r, err := resolve(base, strings.TrimSpace(p))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if r != "" {
			out = append(out, r)
		}
	}
	return out, errors.Join(errs...)
}

func nonEmpty(s string) []string {
	if strings.TrimSpace(s) == "" {
		return nil
	}
	return []string{s}
}

func or[T comparable](vs ...T) T {
	var zero T
	for _, v := range vs {
		if v != zero {
			return v
		}
	}
	return zero
}

func uniqueSorted(s []string) []string {
	slices.Sort(s)
	return slices.Compact(s)
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

func isFile(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir()
}

// joinIndented joins errors one per line, indented under the header.
func joinIndented(errs []error) error {
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Error()
	}
	return errors.New(strings.Join(msgs, "\n  "))
}
