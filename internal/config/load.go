package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// ResourceError is one resource that could not be loaded.
type ResourceError struct {
	File string `json:"file"`
	// Kind and Name identify the resource when they could be read.
	Kind string `json:"kind,omitempty"`
	Name string `json:"name,omitempty"`
	Err  string `json:"error"`
}

func (e ResourceError) Error() string {
	id := e.File
	if e.Name != "" {
		id += ": " + e.Kind + " " + e.Name
	}
	return id + ": " + e.Err
}

// Resources is everything loaded from the resources paths.
type Resources struct {
	Components []Component
	// Subscriptions are the declarative pub/sub subscriptions for this app.
	Subscriptions []Subscription
	// Resiliencies are the Resiliency resources for this app, in load
	// order (internal/resiliency merges them).
	Resiliencies []Resiliency
	// Skipped lists resources that are valid but not for this sidecar
	// (scopes or namespace), as "kind/name (reason)".
	Skipped []string
	Errors  []ResourceError
}

// LoadOptions scope the loading to one sidecar.
type LoadOptions struct {
	AppID     string
	Namespace string
}

// Load reads every .yaml, .yml and .json file (not recursively) in each of
// paths, in name order. Missing directories are errors in the result, not
// failures.
func Load(paths []string, opts LoadOptions) *Resources {
	res := &Resources{}
	seen := map[string]string{} // component name -> file
	for _, dir := range paths {
		entries, err := os.ReadDir(dir)
		if err != nil {
			res.Errors = append(res.Errors, ResourceError{File: dir, Err: err.Error()})
			continue
		}
		names := make([]string, 0, len(entries))
		for _, e := range entries {
			if e.IsDir() {
				continue
			}
			switch strings.ToLower(filepath.Ext(e.Name())) {
			case ".yaml", ".yml", ".json":
				names = append(names, e.Name())
			}
		}
		sort.Strings(names)
		for _, name := range names {
			file := filepath.Join(dir, name)
			data, err := os.ReadFile(file)
			if err != nil {
				res.Errors = append(res.Errors, ResourceError{File: file, Err: err.Error()})
				continue
			}
			parseFile(res, file, data, opts, seen)
		}
	}
	return res
}

// ParseFile parses one file's content (possibly several documents).
func ParseFile(file string, data []byte, opts LoadOptions) *Resources {
	res := &Resources{}
	parseFile(res, file, data, opts, map[string]string{})
	return res
}

func parseFile(res *Resources, file string, data []byte, opts LoadOptions, seen map[string]string) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for i := 1; ; i++ {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return
		}
		where := file
		if i > 1 {
			where = fmt.Sprintf("%s (document %d)", file, i)
		}
		if err != nil {
			res.Errors = append(res.Errors, ResourceError{File: where, Err: "invalid YAML: " + err.Error()})
			return // the decoder cannot resynchronise after a syntax error
		}
		if isEmptyDoc(&doc) {
			continue
		}
		parseDoc(res, where, &doc, opts, seen)
	}
}

func isEmptyDoc(n *yaml.Node) bool {
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		c := n.Content[0]
		return c.Kind == yaml.ScalarNode && c.Tag == "!!null"
	}
	return n.Kind == 0
}

func parseDoc(res *Resources, file string, doc *yaml.Node, opts LoadOptions, seen map[string]string) {
	var h header
	if err := doc.Decode(&h); err != nil {
		res.Errors = append(res.Errors, ResourceError{File: file, Err: "not a resource: " + err.Error()})
		return
	}
	fail := func(format string, args ...any) {
		res.Errors = append(res.Errors, ResourceError{File: file, Kind: h.Kind, Name: h.Metadata.Name, Err: fmt.Sprintf(format, args...)})
	}
	if h.Kind == "" {
		fail("missing kind")
		return
	}
	switch h.Kind {
	case "Component":
	case "Subscription":
		if sub := parseSubscription(doc, h, fail); sub != nil {
			addSubscription(res, sub, file, opts, seen, fail)
		}
		return
	case "Resiliency":
		if r := parseResiliency(doc, h, fail); r != nil {
			addResiliency(res, r, file, opts, seen, fail)
		}
		return
	case "Configuration", "HTTPEndpoint":
		// Read by the building blocks that use them; not an error.
		return
	default:
		fail("unknown kind %q", h.Kind)
		return
	}
	if h.APIVersion != "dapr.io/v1alpha1" {
		fail("apiVersion %q is not dapr.io/v1alpha1", h.APIVersion)
		return
	}
	if h.Metadata.Name == "" {
		fail("missing metadata.name")
		return
	}
	var body struct {
		Spec ComponentSpec `yaml:"spec"`
		Auth Auth          `yaml:"auth"`
	}
	if err := doc.Decode(&body); err != nil {
		fail("invalid spec: %v", err)
		return
	}
	c := Component{ObjectMeta: h.Metadata, Spec: body.Spec, Auth: body.Auth, Scopes: h.Scopes, File: file}
	if err := validateComponent(&c); err != nil {
		fail("%v", err)
		return
	}
	if h.Metadata.Namespace != "" && opts.Namespace != "" && h.Metadata.Namespace != opts.Namespace {
		res.Skipped = append(res.Skipped, fmt.Sprintf("Component/%s (namespace %s, sidecar is in %s)", c.Name, h.Metadata.Namespace, opts.Namespace))
		return
	}
	if !InScope(c.Scopes, opts.AppID) {
		res.Skipped = append(res.Skipped, fmt.Sprintf("Component/%s (scopes %v do not include %q)", c.Name, c.Scopes, opts.AppID))
		return
	}
	if prev, dup := seen[c.Name]; dup {
		fail("duplicate component name %q (first defined in %s)", c.Name, prev)
		return
	}
	seen[c.Name] = file
	res.Components = append(res.Components, c)
}

func validateComponent(c *Component) error {
	t := c.Spec.Type
	if t == "" {
		return errors.New("missing spec.type")
	}
	kind, impl, ok := strings.Cut(t, ".")
	if !ok || kind == "" || impl == "" {
		return fmt.Errorf("spec.type %q is not of the form <kind>.<name>, e.g. state.redis", t)
	}
	if _, err := c.InitTimeout(0); err != nil {
		return err
	}
	names := map[string]bool{}
	for i, m := range c.Spec.Metadata {
		if m.Name == "" {
			return fmt.Errorf("spec.metadata[%d] has no name", i)
		}
		lower := strings.ToLower(m.Name)
		if names[lower] {
			return fmt.Errorf("spec.metadata %q is set twice", m.Name)
		}
		names[lower] = true
		sources := 0
		if m.Value.Set {
			sources++
		}
		if m.SecretKeyRef.Name != "" {
			sources++
		}
		if m.EnvRef != "" {
			sources++
		}
		if sources > 1 {
			return fmt.Errorf("spec.metadata %q sets more than one of value, secretKeyRef and envRef", m.Name)
		}
	}
	return nil
}
