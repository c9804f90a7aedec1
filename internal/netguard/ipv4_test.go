package netguard

import (
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"testing"
)

func TestParseIPv4Loose(t *testing.T) {
	tests := []struct {
		host string
		want string // "" for a DNS name, "bad" for ErrBadIPv4
	}{
		{"127.0.0.1", "127.0.0.1"},
		{"127.0.0.1.", "127.0.0.1"},
		{"0177.0.0.1", "127.0.0.1"},
		{"0x7f.0.0.1", "127.0.0.1"},
		{"0X7F.0.0.1", "127.0.0.1"},
		{"127.1", "127.0.0.1"},
		{"127.0.1", "127.0.0.1"},
		{"0x7f.1", "127.0.0.1"},
		{"2130706433", "127.0.0.1"},
		{"0x7f000001", "127.0.0.1"},
		{"017700000001", "127.0.0.1"},
		{"0251.0376.0251.0376", "169.254.169.254"},
		{"169.254.43518", "169.254.169.254"},
		{"0xa9fea9fe", "169.254.169.254"},
		{"0", "0.0.0.0"},
		{"0x", "0.0.0.0"},
		{"0.0x", "0.0.0.0"},
		{"00", "0.0.0.0"},
		{"1.2.3.4", "1.2.3.4"},
		{"001.002.003.004", "1.2.3.4"},
		{"255.255.255.255", "255.255.255.255"},
		{"4294967295", "255.255.255.255"},
		{"1.16777215", "1.255.255.255"},
		{"1.2.65535", "1.2.255.255"},
		{"93.184.216.34", "93.184.216.34"},

		{"4294967296", "bad"},
		{"0x100000000", "bad"},
		{"99999999999999999999999", "bad"},
		{"256.0.0.1", "bad"},
		{"1.2.3.256", "bad"},
		{"1.16777216", "bad"},
		{"1.2.65536", "bad"},
		{"1.2.3.4.5", "bad"},
		{"08.0.0.1", "bad"},
		{"1.2.3.09", "bad"},
		{"0xg.1", "bad"},
		{"1..2", "bad"},
		{".1", "bad"},
		{"example.1", "bad"},
		{"example.0x", "bad"},
		{"example.0x1f", "bad"},
		{"1e3.1", "bad"},
		{"+1.1", "bad"},

		{"", ""},
		{".", ""},
		{"example.com", ""},
		{"huggingface.co.", ""},
		{"1.2.3.4.nip.io", ""},
		{"0x7f.example.com", ""},
		{"example.0xg", ""},
		{"example.1e3", ""},
		{"1.2.3.4a", ""},
		{"example.com..", ""},
		{"1.2.3.4..", ""}, // an empty last label: a name, and an invalid one
		{"[::1]", ""},
		{"::ffff:1.2.3.4", ""},
		{"[::ffff:127.0.0.1]", ""},
	}
	for _, tc := range tests {
		a, err := ParseIPv4Loose(tc.host)
		var got string
		switch {
		case errors.Is(err, ErrBadIPv4):
			got = "bad"
		case err != nil:
			t.Errorf("ParseIPv4Loose(%q): unexpected error %v", tc.host, err)
		case a.IsValid():
			got = a.String()
		}
		if got != tc.want {
			t.Errorf("ParseIPv4Loose(%q) = %q; want %q", tc.host, got, tc.want)
		}
	}
}

func TestParseIPv4LooseDoesNotAllocate(t *testing.T) {
	for _, host := range []string{"huggingface.co", "objects.githubusercontent.com.", "0251.0376.0251.0376", "1.2.3.256"} {
		if n := testing.AllocsPerRun(100, func() { ParseIPv4Loose(host) }); n != 0 {
			t.Errorf("ParseIPv4Loose(%q) allocates %v times", host, n)
		}
	}
}

func TestCheckHostNumericForms(t *testing.T) {
	for host, want := range map[string]bool{
		"0177.0.0.1:443":           false,
		"0x7f.0.0.1":               false,
		"127.1:8080":               false,
		"127.0.1":                  false,
		"0251.0376.0251.0376:80":   false,
		"2852039166":               false,
		"1.2.3.256:443":            false, // numeric, but no address
		"0x5d.0270.55330":          true,  // 93.184.216.34
		"[::ffff:93.184.216.34]:1": true,
		"[::ffff:127.0.0.1]:1":     false,
	} {
		if got := (Guard{}).CheckHost(host) == nil; got != want {
			t.Errorf("CheckHost(%q) allowed = %v; want %v", host, got, want)
		}
	}
}

// referenceIPv4 is the WHATWG IPv4 parser written plainly, with strings.Split
// and strconv, for FuzzParseIPv4Loose to compare against. numeric reports
// whether the host ends in a number; ok whether it parsed.
func referenceIPv4(host string) (a netip.Addr, numeric, ok bool) {
	parts := strings.Split(host, ".")
	if parts[len(parts)-1] == "" && len(parts) > 1 {
		parts = parts[:len(parts)-1]
	}
	if strings.Contains(host, ":") {
		return a, false, false
	}
	number := func(s string) (uint64, bool) {
		base := 10
		switch {
		case strings.HasPrefix(s, "0x") || strings.HasPrefix(s, "0X"):
			base, s = 16, s[2:]
			if s == "" {
				return 0, true
			}
		case len(s) >= 2 && s[0] == '0':
			base, s = 8, s[1:]
		}
		if s == "" || s[0] == '+' || s[0] == '-' || strings.Contains(s, "_") {
			return 0, false
		}
		v, err := strconv.ParseUint(s, base, 64)
		return v, err == nil
	}
	last := parts[len(parts)-1]
	allDigits := last != "" && strings.Trim(last, "0123456789") == ""
	lower := strings.ToLower(last)
	hex := strings.HasPrefix(lower, "0x") && strings.Trim(lower[2:], "0123456789abcdef") == ""
	if !allDigits && !hex {
		return a, false, false
	}
	if len(parts) > 4 {
		return a, true, false
	}
	var nums []uint64
	for _, p := range parts {
		v, ok := number(p)
		if !ok {
			return a, true, false
		}
		nums = append(nums, v)
	}
	for _, v := range nums[:len(nums)-1] {
		if v > 255 {
			return a, true, false
		}
	}
	v := nums[len(nums)-1]
	if v >= 1<<(8*(5-len(nums))) {
		return a, true, false
	}
	for i, n := range nums[:len(nums)-1] {
		v += n << (8 * (3 - i))
	}
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), true, true
}

// FuzzParseIPv4Loose checks ParseIPv4Loose against the plain reference
// parser, and that a parsed address reads back as itself.
func FuzzParseIPv4Loose(f *testing.F) {
	for _, s := range []string{"127.0.0.1", "0177.0.0.1", "0x7f.1", "127.1", "0251.0376.0251.0376", "4294967296",
		"example.com", "0x", "1.2.3.4.", "1..2", "example.0x1f", "08", "0x0x1", "[::1]", "1.2.3.4.5", "0X10000000000000000"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, host string) {
		a, err := ParseIPv4Loose(host)
		ra, numeric, ok := referenceIPv4(host)
		switch {
		case !numeric && (err != nil || a.IsValid()):
			t.Fatalf("ParseIPv4Loose(%q) = %v, %v; the reference reads a DNS name", host, a, err)
		case numeric && !ok && !errors.Is(err, ErrBadIPv4):
			t.Fatalf("ParseIPv4Loose(%q) = %v, %v; the reference refuses it", host, a, err)
		case ok && (err != nil || a != ra):
			t.Fatalf("ParseIPv4Loose(%q) = %v, %v; the reference reads %v", host, a, err, ra)
		}
		if a.IsValid() {
			if again, err := ParseIPv4Loose(a.String()); err != nil || again != a {
				t.Fatalf("%v reads back as %v, %v", a, again, err)
			}
		}
	})
}
