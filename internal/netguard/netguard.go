// Package netguard keeps upstream connections away from addresses a public
// mirror must never reach on a client's behalf: loopback, private networks,
// link-local (cloud metadata services), unspecified and multicast addresses,
// in every encoding that maps onto them.
//
// The check runs in net.Dialer.Control, after DNS resolution and before the
// connect system call, for every address the dialer tries. A name that
// resolves to a private address is therefore refused without a packet being
// sent, and DNS rebinding between a check and the connect is impossible.
package netguard

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
)

// ErrRefused is matched (with errors.Is) by every refusal.
var ErrRefused = errors.New("upstream address not allowed")

// RefusedError reports the address that was refused.
type RefusedError struct {
	Addr netip.Addr
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("upstream address %s not allowed", e.Addr)
}

// Is makes errors.Is(err, ErrRefused) true.
func (e *RefusedError) Is(target error) bool { return target == ErrRefused }

// blocked lists the IPv4 and IPv6 ranges that are never dialled. IPv4-mapped
// and other IPv6 encodings of IPv4 addresses are unwrapped before checking.
var blocked = func() []netip.Prefix {
	var ps []netip.Prefix
	for _, s := range []string{
		"0.0.0.0/8",      // "this network", includes 0.0.0.0
		"10.0.0.0/8",     // RFC 1918
		"100.64.0.0/10",  // carrier-grade NAT (RFC 6598)
		"127.0.0.0/8",    // loopback
		"169.254.0.0/16", // link-local, cloud metadata
		"172.16.0.0/12",  // RFC 1918
		"192.0.0.0/24",   // IETF protocol assignments
		"192.168.0.0/16", // RFC 1918
		"198.18.0.0/15",  // benchmarking
		"224.0.0.0/4",    // multicast
		"240.0.0.0/4",    // reserved, includes broadcast
		"::/128",         // unspecified
		"::1/128",        // loopback
		"fc00::/7",       // unique local
		"fe80::/10",      // link-local
		"fec0::/10",      // deprecated site-local
		"ff00::/8",       // multicast
		"100::/64",       // discard-only
		"2001:db8::/32",  // documentation
		"64:ff9b:1::/48", // local-use NAT64
	} {
		ps = append(ps, netip.MustParsePrefix(s))
	}
	return ps
}()

// Allowed reports whether addr may be dialled.
func Allowed(addr netip.Addr) bool {
	if !addr.IsValid() {
		return false
	}
	addr = addr.WithZone("")
	if v4, ok := embeddedIPv4(addr); ok {
		addr = v4
	}
	for _, p := range blocked {
		if p.Contains(addr) {
			return false
		}
	}
	return true
}

// embeddedIPv4 returns the IPv4 address carried inside an IPv6 address by
// the encodings a dialer or a translating network would follow:
// IPv4-mapped (::ffff:a.b.c.d), IPv4-compatible (::a.b.c.d), NAT64
// (64:ff9b::a.b.c.d) and 6to4 (2002:AABB:CCDD::).
func embeddedIPv4(a netip.Addr) (netip.Addr, bool) {
	if a.Is4() {
		return a, true
	}
	if a.Is4In6() {
		return a.Unmap(), true
	}
	b := a.As16()
	zero := func(s []byte) bool {
		for _, c := range s {
			if c != 0 {
				return false
			}
		}
		return true
	}
	switch {
	case zero(b[:12]): // ::a.b.c.d; :: and ::1 become 0.0.0.0 and 0.0.0.1
		return netip.AddrFrom4([4]byte(b[12:])), true
	case b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b && zero(b[4:12]):
		return netip.AddrFrom4([4]byte(b[12:])), true
	case b[0] == 0x20 && b[1] == 0x02:
		return netip.AddrFrom4([4]byte(b[2:6])), true
	}
	return a, false
}

// Guard is an address check with exceptions: addresses inside Allow are
// dialled even if they fall in a refused range (an internal artifact server,
// say), everything else is checked as by Allowed.
type Guard struct {
	Allow []netip.Prefix
}

// Control is a net.Dialer.Control function that refuses disallowed
// addresses. The error it returns wraps a *RefusedError.
func (g Guard) Control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return &RefusedError{}
	}
	a := ap.Addr().WithZone("")
	for _, p := range g.Allow {
		if p.Contains(a) || (a.Is4In6() && p.Contains(a.Unmap())) {
			return nil
		}
	}
	if !Allowed(a) {
		return &RefusedError{Addr: ap.Addr()}
	}
	return nil
}

// CheckHost refuses a host that is an IP literal of a disallowed address,
// in any spelling ParseIPv4Loose reads (0177.0.0.1, 0x7f.1, 127.1), and a
// host that is numeric by its form but no valid address. Names are left to
// Control, which sees what they resolve to. It is for paths where
// httpmirror does not dial the origin itself (an upstream proxy resolves
// the name), so only literals can be checked.
func (g Guard) CheckHost(host string) error {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	a, err := ParseIPv4Loose(host)
	if err != nil {
		return &RefusedError{}
	}
	if !a.IsValid() {
		if a, err = netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")); err != nil {
			return nil
		}
	}
	return g.Control("tcp", netip.AddrPortFrom(a, 1).String(), nil)
}
