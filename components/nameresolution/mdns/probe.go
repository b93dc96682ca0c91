package mdns

import (
	"context"
	"fmt"
	"net"
	"time"

	"golang.org/x/net/ipv4"
)

// Probe reports whether IPv4 multicast sent on the interface ("" for the
// loopback one, the resolver's default) comes back to this host: it joins
// the mDNS group on a free port there, sends one datagram with TTL 0 (so it
// cannot leave the host) and waits for it, until ctx ends or 2s pass. Tests
// and diagnostics use it to tell "mDNS cannot work here" from a bug.
func Probe(ctx context.Context, iface string) error {
	ifi, err := pickInterface(iface)
	if err != nil {
		return err
	}
	free, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return err
	}
	dst := &net.UDPAddr{IP: group.IP, Port: free.LocalAddr().(*net.UDPAddr).Port}
	free.Close()
	l, err := net.ListenMulticastUDP("udp4", ifi, dst)
	if err != nil {
		return fmt.Errorf("join %v on %s: %w", group.IP, ifi.Name, err)
	}
	defer l.Close()
	s, err := net.ListenUDP("udp4", &net.UDPAddr{IP: ipv4Of(ifi)})
	if err != nil {
		return err
	}
	defer s.Close()
	p := ipv4.NewPacketConn(s)
	if err := p.SetMulticastInterface(ifi); err != nil {
		return fmt.Errorf("send multicast on %s: %w", ifi.Name, err)
	}
	if err := p.SetMulticastTTL(0); err != nil {
		return err
	}
	if err := p.SetMulticastLoopback(true); err != nil {
		return err
	}
	if _, err := s.WriteToUDP([]byte("mecha-probe"), dst); err != nil {
		return fmt.Errorf("send to %v via %s: %w", dst, ifi.Name, err)
	}
	deadline := time.Now().Add(2 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	stop := context.AfterFunc(ctx, func() { _ = l.SetReadDeadline(time.Now()) })
	defer stop()
	_ = l.SetReadDeadline(deadline)
	buf := make([]byte, 32)
	n, _, err := l.ReadFromUDP(buf)
	if err != nil || string(buf[:n]) != "mecha-probe" {
		return fmt.Errorf("a datagram multicast to %v via %s did not come back: %v", dst, ifi.Name, err)
	}
	return nil
}
