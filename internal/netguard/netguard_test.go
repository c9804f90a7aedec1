package netguard

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
)

func TestAllowed(t *testing.T) {
	tests := []struct {
		addr string
		want bool
	}{
		{"93.184.216.34", true},
		{"8.8.8.8", true},
		{"2606:4700::1111", true},
		{"2002:5db8:d822::1", true}, // 6to4 of a public address
		{"127.0.0.1", false},
		{"127.0.0.2", false},
		{"127.255.255.254", false},
		{"0.0.0.0", false},
		{"10.1.2.3", false},
		{"172.16.0.1", false},
		{"172.31.255.255", false},
		{"192.168.1.1", false},
		{"100.64.0.1", false},
		{"169.254.169.254", false},
		{"224.0.0.1", false},
		{"239.255.255.250", false},
		{"255.255.255.255", false},
		{"::", false},
		{"::1", false},
		{"::ffff:127.0.0.1", false},
		{"::ffff:10.0.0.1", false},
		{"::ffff:169.254.169.254", false},
		{"::127.0.0.1", false},
		{"64:ff9b::7f00:1", false},
		{"2002:7f00:1::", false},
		{"fc00::1", false},
		{"fd12:3456::1", false},
		{"fe80::1", false},
		{"fe80::1%eth0", false},
		{"ff02::1", false},
	}
	for _, tc := range tests {
		a := netip.MustParseAddr(tc.addr)
		if got := Allowed(a); got != tc.want {
			t.Errorf("Allowed(%s) = %v; want %v", tc.addr, got, tc.want)
		}
	}
	if Allowed(netip.Addr{}) {
		t.Error("Allowed(invalid) = true; want false")
	}
}

func TestControlRefusesBeforeConnect(t *testing.T) {
	// Port 1 on loopback has no listener: a connect would fail with
	// ECONNREFUSED. Getting ErrRefused instead proves the guard stopped the
	// dial before the connect system call.
	d := net.Dialer{Control: Guard{}.Control}
	_, err := d.DialContext(context.Background(), "tcp", "127.0.0.1:1")
	if !errors.Is(err, ErrRefused) {
		t.Fatalf("dial loopback: error = %v; want ErrRefused", err)
	}
	var re *RefusedError
	if !errors.As(err, &re) || re.Addr.String() != "127.0.0.1" {
		t.Errorf("refused address = %v; want 127.0.0.1", re)
	}
}

func TestCheckHost(t *testing.T) {
	for host, want := range map[string]bool{
		"example.com":       true,
		"example.com:443":   true,
		"127.0.0.1":         false,
		"127.0.0.1:8443":    false,
		"[::1]:443":         false,
		"::ffff:127.0.0.1":  false,
		"93.184.216.34:443": true,
	} {
		if got := (Guard{}).CheckHost(host) == nil; got != want {
			t.Errorf("CheckHost(%q) allowed = %v; want %v", host, got, want)
		}
	}
}
