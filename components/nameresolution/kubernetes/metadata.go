package kubernetes

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"text/template/parse"

	"github.com/mecha-dev/mecha/components"
)

// DefaultClusterDomain is Kubernetes' default DNS domain.
const DefaultClusterDomain = "cluster.local"

type config struct {
	ClusterDomain string
	Template      string

	tmpl *template.Template // nil without a template
}

func parseConfig(md components.Metadata) (config, error) {
	var c config
	domain, domainSet := md.Get("clusterDomain")
	c.Template = md.String("template", "")
	domain = strings.TrimSuffix(strings.TrimSpace(domain), ".")
	if c.Template != "" {
		if domainSet && domain != "" {
			return c, errors.New(`metadata "template" and "clusterDomain" are mutually exclusive: the template writes the whole address`)
		}
		t, err := parseTemplate(c.Template)
		if err != nil {
			return c, fmt.Errorf(`metadata "template": %w`, err)
		}
		c.tmpl = t
		return c, nil
	}
	if domain == "" {
		domain = DefaultClusterDomain
	}
	if err := checkDomain(domain); err != nil {
		return c, fmt.Errorf(`metadata "clusterDomain": %w`, err)
	}
	c.ClusterDomain = domain
	return c, nil
}

// checkDomain accepts a DNS name: dot-separated labels of letters, digits
// and inner hyphens.
func checkDomain(d string) error {
	if len(d) > 253 {
		return fmt.Errorf("%q is longer than 253 characters", d)
	}
	for l := range strings.SplitSeq(d, ".") {
		if !validLabel(l) {
			return fmt.Errorf("%q is not a DNS domain (label %q)", d, l)
		}
	}
	return nil
}

func validLabel(l string) bool {
	if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
		return false
	}
	for _, r := range l {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

// parseTemplate parses the template and renders it once with sample
// values, so that every mistake a user can make shows at Init: syntax,
// unknown fields or functions, an output that is not host:port, and
// {{.Data.<key>}}, which no request carries.
func parseTemplate(text string) (*template.Template, error) {
	t, err := template.New("address").Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, err
	}
	if keys := dataKeys(t.Tree.Root); len(keys) > 0 {
		return nil, fmt.Errorf("{{.Data.%s}}: resolve requests carry no data (daprd's neither: it would render %q), so this template cannot produce a usable address", keys[0], "<no value>")
	}
	sample := request{ID: "app", Namespace: "default", Port: InternalPort}
	var b strings.Builder
	if err := t.Execute(&b, sample); err != nil {
		return nil, err
	}
	host, port, err := net.SplitHostPort(b.String())
	if err != nil {
		return nil, fmt.Errorf("renders %q for app id %q, not host:port: %w", b.String(), sample.ID, err)
	}
	if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 || host == "" {
		return nil, fmt.Errorf("renders %q for app id %q, not host:port with a port number", b.String(), sample.ID)
	}
	return t, nil
}

// dataKeys lists the keys of {{.Data.<key>}} fields the template uses, in
// order of appearance.
func dataKeys(n parse.Node) []string {
	var keys []string
	var walk func(parse.Node)
	walk = func(n parse.Node) {
		switch n := n.(type) {
		case nil:
		case *parse.ListNode:
			if n == nil {
				return
			}
			for _, c := range n.Nodes {
				walk(c)
			}
		case *parse.ActionNode:
			walk(n.Pipe)
		case *parse.PipeNode:
			if n == nil {
				return
			}
			for _, c := range n.Cmds {
				walk(c)
			}
		case *parse.CommandNode:
			for _, a := range n.Args {
				walk(a)
			}
		case *parse.FieldNode:
			if len(n.Ident) >= 1 && n.Ident[0] == "Data" {
				key := "<key>"
				if len(n.Ident) >= 2 {
					key = n.Ident[1]
				}
				if !slices.Contains(keys, key) {
					keys = append(keys, key)
				}
			}
		case *parse.VariableNode: // {{$.Data.key}}
			if len(n.Ident) >= 2 && n.Ident[0] == "$" && n.Ident[1] == "Data" {
				key := "<key>"
				if len(n.Ident) >= 3 {
					key = n.Ident[2]
				}
				if !slices.Contains(keys, key) {
					keys = append(keys, key)
				}
			}
		case *parse.ChainNode:
			walk(n.Node)
		case *parse.BranchNode:
			walk(n.Pipe)
			walk(n.List)
			walk(n.ElseList)
		case *parse.IfNode:
			walk(&n.BranchNode)
		case *parse.RangeNode:
			walk(&n.BranchNode)
		case *parse.WithNode:
			walk(&n.BranchNode)
		case *parse.TemplateNode:
			walk(n.Pipe)
		}
	}
	walk(n)
	return keys
}
