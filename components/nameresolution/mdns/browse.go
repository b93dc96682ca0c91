package mdns

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"
)

// group is the IPv4 mDNS group and port (RFC 6762).
var group = &net.UDPAddr{IP: net.IPv4(224, 0, 0, 251), Port: 5353}

// sighting is one complete answer: an instance of the service, where it
// is, and in which namespace (nsKnown is false for daprd, whose TXT record
// carries the app id only).
type sighting struct {
	instance string // the instance's DNS name, lower case
	addr     string // host:port
	ns       string
	nsKnown  bool
	ttl      time.Duration
	gone     bool // a goodbye (TTL 0): the instance withdrew
}

// querier sends one browse's question and reads the answers. Answers come
// back by unicast (the question asks for it, RFC 6762 §5.4, and
// hashicorp/mdns responders always answer so), so it joins no multicast
// group: nothing is sent but the question, on the chosen interface only.
type querier struct {
	conn     *net.UDPConn
	question []byte

	mu       sync.Mutex
	lastSent time.Time
}

func newQuerier(ifi *net.Interface, src net.IP, service string) (*querier, error) {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: src})
	if err != nil {
		return nil, fmt.Errorf("mdns: open query socket: %w", err)
	}
	p := ipv4.NewPacketConn(conn)
	if err := p.SetMulticastInterface(ifi); err != nil {
		conn.Close()
		return nil, fmt.Errorf("mdns: send multicast on %s: %w", ifi.Name, err)
	}
	// RFC 6762 §11: 255. On loopback it never leaves the host anyway.
	if err := p.SetMulticastTTL(255); err != nil {
		conn.Close()
		return nil, fmt.Errorf("mdns: multicast TTL: %w", err)
	}
	if err := p.SetMulticastLoopback(true); err != nil {
		conn.Close()
		return nil, fmt.Errorf("mdns: multicast loopback: %w", err)
	}
	m := new(dns.Msg)
	m.SetQuestion(service, dns.TypePTR)
	m.Id = 0
	m.RecursionDesired = false
	m.Question[0].Qclass |= 1 << 15 // QU: answer by unicast
	q, err := m.Pack()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("mdns: pack question for %s: %w", service, err)
	}
	return &querier{conn: conn, question: q}, nil
}

// send multicasts the question, at most once per minGap.
func (q *querier) send(minGap time.Duration) error {
	q.mu.Lock()
	if time.Since(q.lastSent) < minGap {
		q.mu.Unlock()
		return nil
	}
	q.lastSent = time.Now()
	q.mu.Unlock()
	if _, err := q.conn.WriteToUDP(q.question, group); err != nil {
		return fmt.Errorf("mdns: send question: %w", err)
	}
	return nil
}

// read calls found for every complete answer until deadline() passes or
// the socket is closed; deadline may move later while it reads.
func (q *querier) read(service string, deadline func() time.Time, found func(sighting)) error {
	asm := newAssembler(service)
	buf := make([]byte, 65536)
	for {
		dl := deadline()
		if !time.Now().Before(dl) {
			return nil
		}
		if err := q.conn.SetReadDeadline(dl); err != nil {
			return err
		}
		n, src, err := q.conn.ReadFromUDP(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue // the deadline may have moved
			}
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("mdns: read answers: %w", err)
		}
		var m dns.Msg
		if err := m.Unpack(buf[:n]); err != nil || !m.Response || m.Opcode != dns.OpcodeQuery || m.Rcode != 0 {
			continue // not an mDNS answer (RFC 6762 §18: ignore)
		}
		for _, s := range asm.add(&m, src) {
			found(s)
		}
	}
}

func (q *querier) close() { q.conn.Close() }

// assembler puts the records of a browse's answers together: a PTR names
// an instance, whose SRV gives the port and host, whose A/AAAA give the
// address, and whose TXT gives the namespace. Responders put them in the
// answer or the additional section, in one message or several.
type assembler struct {
	service   string // lower-case FQDN, e.g. "orders.local."
	instances map[string]*instance
	hosts     map[string]*host
}

type instance struct {
	port   int
	target string
	txt    []string
	hasSRV bool
	hasTXT bool
	ttl    uint32
	gone   bool
}

type host struct {
	v4 []net.IP
	v6 []net.IPAddr
}

func newAssembler(service string) *assembler {
	return &assembler{service: strings.ToLower(service), instances: map[string]*instance{}, hosts: map[string]*host{}}
}

func (a *assembler) belongs(name string) bool {
	return strings.HasSuffix(strings.ToLower(name), "."+a.service)
}

func (a *assembler) inst(name string) *instance {
	name = strings.ToLower(name)
	in := a.instances[name]
	if in == nil {
		in = &instance{}
		a.instances[name] = in
	}
	return in
}

func (a *assembler) host(name string) *host {
	name = strings.ToLower(name)
	h := a.hosts[name]
	if h == nil {
		h = &host{}
		a.hosts[name] = h
	}
	return h
}

// add takes in a message and returns the complete instances it speaks of
// (each answer is a sighting: it keeps the instance cached).
func (a *assembler) add(m *dns.Msg, src *net.UDPAddr) []sighting {
	touched := map[string]bool{}
	hostsSeen := map[string]bool{}
	rrs := make([]dns.RR, 0, len(m.Answer)+len(m.Extra))
	rrs = append(append(rrs, m.Answer...), m.Extra...)
	for _, rr := range rrs {
		h := rr.Header()
		switch rr := rr.(type) {
		case *dns.PTR:
			if !strings.EqualFold(h.Name, a.service) || !a.belongs(rr.Ptr) {
				continue
			}
			in := a.inst(rr.Ptr)
			in.gone, in.ttl = h.Ttl == 0, h.Ttl
			touched[strings.ToLower(rr.Ptr)] = true
		case *dns.SRV:
			if !a.belongs(h.Name) {
				continue
			}
			in := a.inst(h.Name)
			in.port, in.target, in.hasSRV = int(rr.Port), strings.ToLower(rr.Target), true
			touched[strings.ToLower(h.Name)] = true
		case *dns.TXT:
			if !a.belongs(h.Name) {
				continue
			}
			in := a.inst(h.Name)
			in.txt, in.hasTXT = rr.Txt, true
			touched[strings.ToLower(h.Name)] = true
		case *dns.A:
			hostsSeen[strings.ToLower(h.Name)] = true
			h := a.host(h.Name)
			h.v4 = appendIP(h.v4, rr.A)
		case *dns.AAAA:
			ip := net.IPAddr{IP: rr.AAAA}
			if rr.AAAA.IsLinkLocalUnicast() && src != nil {
				ip.Zone = src.Zone // the zone is this host's, not in the record
			}
			hostsSeen[strings.ToLower(h.Name)] = true
			h := a.host(h.Name)
			if !slices.ContainsFunc(h.v6, func(x net.IPAddr) bool { return x.IP.Equal(ip.IP) }) {
				h.v6 = append(h.v6, ip)
			}
		}
	}
	// Address records may arrive after the SRV naming their host.
	for name, in := range a.instances {
		if in.hasSRV && hostsSeen[in.target] {
			touched[name] = true
		}
	}
	var out []sighting
	for name := range touched {
		in := a.instances[name]
		if in == nil || !in.hasSRV || !in.hasTXT {
			continue
		}
		addr := a.address(in)
		if addr == "" {
			continue
		}
		s := sighting{instance: name, addr: addr, gone: in.gone, ttl: time.Duration(in.ttl) * time.Second}
		s.ns, s.nsKnown = namespaceOf(in.txt)
		out = append(out, s)
	}
	return out
}

// address prefers the host's IPv4 address, then IPv6 (as Dapr does).
func (a *assembler) address(in *instance) string {
	h := a.hosts[in.target]
	if h == nil || in.port <= 0 {
		return ""
	}
	p := strconv.Itoa(in.port)
	if len(h.v4) > 0 {
		return net.JoinHostPort(h.v4[0].String(), p)
	}
	if len(h.v6) > 0 {
		return net.JoinHostPort(h.v6[0].String(), p)
	}
	return ""
}

func appendIP(ips []net.IP, ip net.IP) []net.IP {
	for _, x := range ips {
		if x.Equal(ip) {
			return ips
		}
	}
	return append(ips, ip)
}

// txt builds the TXT strings of an announcement: the app id first (what
// daprd writes), then the namespace.
func txt(appID, namespace string) []string {
	return []string{appID, "namespace=" + namespace}
}

func namespaceOf(fields []string) (string, bool) {
	for _, f := range fields {
		if ns, ok := strings.CutPrefix(f, "namespace="); ok {
			return ns, true
		}
	}
	return "", false
}
