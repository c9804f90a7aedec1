package netguard

import (
	"errors"
	"net/netip"
	"strings"
)

// ErrBadIPv4 is returned by ParseIPv4Loose for a host that is an IPv4
// address by its form but not a valid one.
var ErrBadIPv4 = errors.New("invalid numeric IPv4 host")

// ParseIPv4Loose reads host as the WHATWG URL standard's host parser does,
// which accepts every IPv4 spelling inet_aton accepts (and so do the
// resolvers of many proxies): a host whose last label (a trailing dot
// removed) is all ASCII digits, or "0x"/"0X" followed by hex digits
// (possibly none), is an IPv4 address, never a DNS name. Its labels, at
// most four, are each decimal, octal with a leading 0, or hex with 0x; the
// last one fills the bytes left over, so "a" is 32 bits, "a.b" is 8+24 and
// "a.b.c" is 8+8+16: 0177.0.0.1, 0x7f.1, 127.1 and 2130706433 are all
// 127.0.0.1.
//
// It returns the address for such a host, ErrBadIPv4 when a label is not a
// number or a value is out of range, and the zero Addr and nil for any
// other host: a DNS name, or an IPv6 literal (anything with a colon,
// bracketed or not). It does not allocate.
func ParseIPv4Loose(host string) (netip.Addr, error) {
	s := strings.TrimSuffix(host, ".")
	if !numericLabel(s[strings.LastIndexByte(s, '.')+1:]) || strings.IndexByte(s, ':') >= 0 {
		return netip.Addr{}, nil
	}
	var parts [4]uint32
	n := 0
	for rest, more := s, true; more; n++ {
		var label string
		label, rest, more = strings.Cut(rest, ".")
		v, ok := ipv4Number(label)
		if !ok || n == len(parts) {
			return netip.Addr{}, ErrBadIPv4
		}
		parts[n] = v
	}
	v := uint64(parts[n-1])
	if v >= 1<<(8*(5-n)) {
		return netip.Addr{}, ErrBadIPv4
	}
	for i := range n - 1 {
		if parts[i] > 255 {
			return netip.Addr{}, ErrBadIPv4
		}
		v |= uint64(parts[i]) << (8 * (3 - i))
	}
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), nil
}

// numericLabel reports whether a host's last label makes it an IPv4
// address: all ASCII digits, or 0x followed by hex digits.
func numericLabel(s string) bool {
	if s == "" {
		return false
	}
	hex := len(s) >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')
	if hex {
		s = s[2:]
	}
	for i := 0; i < len(s); i++ {
		if _, ok := digit(s[i], hex); !ok {
			return false
		}
	}
	return true
}

// ipv4Number parses one label: hex after 0x, octal after a leading 0,
// decimal otherwise. Values over 32 bits fail, whatever their place.
func ipv4Number(s string) (uint32, bool) {
	if s == "" {
		return 0, false
	}
	base := uint64(10)
	switch {
	case len(s) >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X'):
		base, s = 16, s[2:]
	case len(s) >= 2 && s[0] == '0':
		base, s = 8, s[1:]
	}
	var v uint64
	for i := 0; i < len(s); i++ {
		d, ok := digit(s[i], base == 16)
		if !ok || d >= base {
			return 0, false
		}
		if v = v*base + d; v > 0xffffffff {
			return 0, false
		}
	}
	return uint32(v), true
}

// digit returns the value of an ASCII decimal digit, or of a hex digit
// when hex is set.
func digit(c byte, hex bool) (uint64, bool) {
	switch {
	case '0' <= c && c <= '9':
		return uint64(c - '0'), true
	case hex && 'a' <= c && c <= 'f':
		return uint64(c-'a') + 10, true
	case hex && 'A' <= c && c <= 'F':
		return uint64(c-'A') + 10, true
	}
	return 0, false
}
