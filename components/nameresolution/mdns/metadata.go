package mdns

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/mecha-dev/mecha/components"
)

// Defaults, as in Dapr's nameresolution.mdns (which has no knobs for them).
const (
	defaultBrowseTimeout   = time.Second
	defaultAddressTTL      = 60 * time.Second
	defaultRefreshInterval = 30 * time.Second
)

type config struct {
	// Interface is the network interface mDNS runs on; "" picks the
	// loopback interface.
	Interface string
	// BrowseTimeout bounds a browse for an app that is not in the cache.
	BrowseTimeout time.Duration
	// AddressTTL is how long an address stays cached after it was last seen.
	AddressTTL time.Duration
	// RefreshInterval is how often the cached apps are browsed again.
	RefreshInterval time.Duration
}

func parseConfig(md components.Metadata) (config, error) {
	c := config{Interface: strings.TrimSpace(md.String("interface", ""))}
	var errs []error
	var err error
	if c.BrowseTimeout, err = md.Duration("browseTimeout", time.Second, defaultBrowseTimeout); err != nil {
		errs = append(errs, err)
	} else if c.BrowseTimeout <= 0 {
		errs = append(errs, fmt.Errorf(`metadata "browseTimeout": %v must be positive`, c.BrowseTimeout))
	}
	if c.AddressTTL, err = md.Duration("addressTTL", time.Second, defaultAddressTTL); err != nil {
		errs = append(errs, err)
	} else if c.AddressTTL <= 0 {
		errs = append(errs, fmt.Errorf(`metadata "addressTTL": %v must be positive`, c.AddressTTL))
	}
	if c.RefreshInterval, err = md.Duration("refreshInterval", time.Second, defaultRefreshInterval); err != nil {
		errs = append(errs, err)
	} else if c.RefreshInterval <= 0 {
		errs = append(errs, fmt.Errorf(`metadata "refreshInterval": %v must be positive`, c.RefreshInterval))
	} else if c.AddressTTL > 0 && c.RefreshInterval >= c.AddressTTL {
		errs = append(errs, fmt.Errorf(`metadata "refreshInterval": %v must be shorter than addressTTL %v, or cached addresses expire before they are refreshed`, c.RefreshInterval, c.AddressTTL))
	}
	return c, errors.Join(errs...)
}

// pickInterface returns the named interface, or the loopback one: Mecha
// sidecars announce 127.0.0.1 addresses, which mean something on this host
// only, and loopback multicast never leaves it.
func pickInterface(name string) (*net.Interface, error) {
	if name != "" {
		ifi, err := net.InterfaceByName(name)
		if err != nil {
			return nil, fmt.Errorf(`metadata "interface": %w`, err)
		}
		if ifi.Flags&net.FlagUp == 0 {
			return nil, fmt.Errorf(`metadata "interface": %s is down`, name)
		}
		if ifi.Flags&(net.FlagMulticast|net.FlagLoopback) == 0 {
			return nil, fmt.Errorf(`metadata "interface": %s does not support multicast`, name)
		}
		return ifi, nil
	}
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("list network interfaces: %w", err)
	}
	for i := range ifs {
		if ifs[i].Flags&net.FlagLoopback != 0 && ifs[i].Flags&net.FlagUp != 0 {
			return &ifs[i], nil
		}
	}
	return nil, errors.New(`no loopback interface is up; name one in metadata "interface"`)
}

// ipv4Of returns the interface's first IPv4 address, the source of queries
// (so that answers come back to it), or nil.
func ipv4Of(ifi *net.Interface) net.IP {
	addrs, err := ifi.Addrs()
	if err != nil {
		return nil
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil {
			return n.IP.To4()
		}
	}
	return nil
}

// validLabel reports whether s can be one DNS label: mDNS service types
// are derived from app ids, which therefore cannot contain dots.
func validLabel(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for _, r := range s {
		if r <= ' ' || r == '.' || r == '\\' || r == 0x7f {
			return false
		}
	}
	return true
}
