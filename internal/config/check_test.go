package config

import (
	"errors"
	"flag"
	"io"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// singleDash finds a flag spelt with one dash ("-link-expires"), as the
// flag package words its errors; every message spells flags --name.
var singleDash = regexp.MustCompile(`(^|[\s(])-[a-z]`)

// Every message about a bad flag says which flag, spelt --name, what was
// wrong with the value and what is wanted instead; it names only the
// flag that is wrong.
func TestFlagErrorMessages(t *testing.T) {
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown", []string{"--nope"}, "unknown flag --nope"},
		{"unknown single dash", []string{"-nope"}, "unknown flag --nope"},
		{"unknown near a flag", []string{"--stroage-url", "file:///x"}, "unknown flag --stroage-url (did you mean --storage-url?)"},
		{"no value", []string{"--address"}, "--address needs a value"},
		{"bad duration", []string{"--link-expires", "soon"}, `invalid value "soon" for --link-expires: want a duration such as 30s, 5m or 1h30m`},
		{"duration without unit", []string{"--lease-duration", "5"}, `invalid value "5" for --lease-duration: want a duration such as 30s, 5m or 1h30m`},
		{"bad duration single dash", []string{"-negative-ttl=1 hour"}, `invalid value "1 hour" for --negative-ttl: want a duration such as 30s, 5m or 1h30m`},
		{"negative duration", []string{"--check-sync-timeout", "-1s"}, "invalid value -1s for --check-sync-timeout: want 0 or more, such as 30s or 5m"},
		{"zero auth ttl", []string{"--auth-cache-ttl", "0"}, "invalid value 0s for --auth-cache-ttl: want more than 0, such as 30s or 5m"},
		{"bad number", []string{"--continuation-get-retry", "many"}, `invalid value "many" for --continuation-get-retry: want a whole number such as 4`},
		{"huge number", []string{"--max-ranges", "99999999999999999999999"}, `invalid value "99999999999999999999999" for --max-ranges: out of range`},
		{"bad bool", []string{"--tee-response=maybe"}, `invalid value "maybe" for --tee-response: want true or false`},
		{"bad size", []string{"--cache-max-size", "lots"}, `invalid value "lots" for --cache-max-size: want a size such as 20GiB, 500MB or 1048576`},
		{"negative max ranges", []string{"--max-ranges", "-3"}, "invalid value -3 for --max-ranges: want 1 or more"},
		{"zero max variants", []string{"--max-variants", "0"}, "invalid value 0 for --max-variants: want 1 or more"},
		{"negative retries", []string{"--continuation-get-retry", "-1"}, "invalid value -1 for --continuation-get-retry: want 0 or more"},
		{"zero connections", []string{"--fill-connections", "0"}, "invalid value 0 for --fill-connections: want 1 or more"},
		{"small segments", []string{"--fill-segment-size", "1KiB"}, "invalid value 1024 for --fill-segment-size: want 64KiB or more"},
		{"log level", []string{"--log-level", "loud"}, `invalid value "loud" for --log-level: want debug, info, warn or error`},
		{"log format", []string{"--log-format", "yaml"}, `invalid value "yaml" for --log-format: want text or json`},
		{"upstream scheme", []string{"--upstream-scheme", "ftp"}, `invalid value "ftp" for --upstream-scheme: want https or http`},
		{"two host modes", []string{"--host", "example.com", "--host-from-first-path"}, "--host, --host-from-first-path and --base-domain exclude each other: choose one"},
		{"bad host", []string{"--host", "nodot"}, `invalid value "nodot" for --host: want an origin host name such as example.com or example.com:8443`},
		{"same addresses", []string{"--address", "127.0.0.1:8080", "--admin-address", "127.0.0.1:8080"}, "--address and --admin-address are both 127.0.0.1:8080: each listener needs a port of its own"},
		{"same port, every interface", []string{"--address", ":9090", "--admin-address", "127.0.0.1:9090"}, "--address :9090 and --admin-address 127.0.0.1:9090 take the same port: each listener needs a port of its own"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse(c.args, env(nil), io.Discard)
			if err == nil || err.Error() != c.want {
				t.Fatalf("Parse(%q): %v; want %q", c.args, err, c.want)
			}
			if singleDash.MatchString(err.Error()) {
				t.Errorf("%q spells a flag with one dash", err)
			}
		})
	}
}

// --max-ranges -3 names --max-ranges, and no other flag.
func TestLimitErrorNamesOnlyTheWrongFlag(t *testing.T) {
	_, err := Parse([]string{"--max-ranges", "-3"}, env(nil), io.Discard)
	if err == nil {
		t.Fatal("--max-ranges -3 accepted")
	}
	if n := strings.Count(err.Error(), "--"); n != 1 || !strings.Contains(err.Error(), "--max-ranges") {
		t.Errorf("error %q names %d flags; want --max-ranges only", err, n)
	}
}

// Listeners on different ports, or on port 0 (any free one), are no
// conflict; the peer listener is checked against the others too.
func TestAddressesApart(t *testing.T) {
	for _, args := range [][]string{
		{"--address", "127.0.0.1:0", "--admin-address", "127.0.0.1:0"},
		{"--address", ":8080", "--admin-address", "127.0.0.1:9090"},
		{"--address", "127.0.0.2:8080", "--admin-address", "127.0.0.1:8080"},
	} {
		if _, err := Parse(args, env(nil), io.Discard); err != nil {
			t.Errorf("Parse(%q): %v; want no error", args, err)
		}
	}
	_, err := Parse([]string{"--storage-url", "s3://k:s@b.eu-west-1/", "--address", ":8081", "--peer-address", ":8081",
		"--advertise-url", "http://10.0.0.1:8081", "--peer-secret", "0123456789abcdef"}, env(nil), io.Discard)
	if want := "--address and --peer-address are both :8081: each listener needs a port of its own"; err == nil || err.Error() != want {
		t.Errorf("peer on the public port: %v; want %q", err, want)
	}
}

// An environment variable's bad value is reported under the variable's
// name, with what the flag wants.
func TestEnvironmentValueErrors(t *testing.T) {
	for name, c := range map[string]struct {
		env  map[string]string
		want string
	}{
		"duration": {map[string]string{"HTTPMIRROR_NEGATIVE_TTL": "1 hour"}, `invalid value "1 hour" for HTTPMIRROR_NEGATIVE_TTL: want a duration such as 30s, 5m or 1h30m`},
		"bool":     {map[string]string{"HTTPMIRROR_TEE_RESPONSE": "yes please"}, `invalid value "yes please" for HTTPMIRROR_TEE_RESPONSE: want true or false`},
		"limit":    {map[string]string{"HTTPMIRROR_MAX_RANGES": "-3"}, "invalid value -3 for --max-ranges: want 1 or more"},
	} {
		if _, err := Parse(nil, env(c.env), io.Discard); err == nil || err.Error() != c.want {
			t.Errorf("%s: %v; want %q", name, err, c.want)
		}
	}
}

func TestCheckEnviron(t *testing.T) {
	for _, c := range []struct {
		name    string
		environ []string
		want    string // "" for no error
	}{
		{"none", []string{"HOME=/root", "PATH=/bin"}, ""},
		{"flags", []string{"HTTPMIRROR_STORAGE_URL=file:///x", "HTTPMIRROR_ALLOW_HOST=a.example", "HTTPMIRROR_PEER_SECRET="}, ""},
		{"the cache command's", []string{"HTTPMIRROR_ADMIN=http://127.0.0.1:9090", "HTTPMIRROR_ADMIN_TOKEN=t"}, ""},
		{"misspelt", []string{"HTTPMIRROR_STORAGE_ULR=file:///x"}, "unknown environment variable HTTPMIRROR_STORAGE_ULR: no flag reads it (did you mean HTTPMIRROR_STORAGE_URL?)"},
		{"far from any", []string{"HTTPMIRROR_COLOUR=blue"}, "unknown environment variable HTTPMIRROR_COLOUR: no flag reads it"},
		{"no value", []string{"HTTPMIRROR_ALOW_HOST"}, "unknown environment variable HTTPMIRROR_ALOW_HOST: no flag reads it (did you mean HTTPMIRROR_ALLOW_HOST?)"},
		{"cli only", []string{"HTTPMIRROR_VERSION=true"}, "unknown environment variable HTTPMIRROR_VERSION: no flag reads it"},
		// Of several, the first by name, whatever the order.
		{"several", []string{"HTTPMIRROR_ZZZ=1", "HTTPMIRROR_LOG_LEVLE=debug", "HTTPMIRROR_ADDRES=:1"}, "unknown environment variable HTTPMIRROR_ADDRES: no flag reads it (did you mean HTTPMIRROR_ADDRESS?)"},
		{"other prefix", []string{"XHTTPMIRROR_NOPE=1", "httpmirror_nope=1"}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := CheckEnviron(c.environ)
			if c.want == "" {
				if err != nil {
					t.Fatalf("CheckEnviron(%q): %v; want nil", c.environ, err)
				}
				return
			}
			if err == nil || err.Error() != c.want {
				t.Fatalf("CheckEnviron(%q): %v; want %q", c.environ, err, c.want)
			}
		})
	}
}

// FlagNames lists every flag that configures the mirror, each with its
// variable, and not the command line's own --version.
func TestFlagNames(t *testing.T) {
	names := FlagNames()
	for _, want := range []string{"address", "admin-address", "storage-url", "peer-address", "peer-secret-file", "allow-host", "log-format"} {
		if !slices.Contains(names, want) {
			t.Errorf("FlagNames lacks %s: %q", want, names)
		}
	}
	if slices.Contains(names, "version") || slices.Contains(names, "help") {
		t.Errorf("FlagNames holds a command-line-only flag: %q", names)
	}
	if !slices.IsSorted(names) {
		t.Errorf("FlagNames not sorted: %q", names)
	}
}

// --version is answered before anything else is read: a bad environment
// or another bad flag does not hide it.
func TestVersionFlag(t *testing.T) {
	_, err := Parse([]string{"--version"}, env(map[string]string{"HTTPMIRROR_LINK_EXPIRES": "never"}), io.Discard)
	if !errors.Is(err, ErrVersion) {
		t.Fatalf("--version: %v; want ErrVersion", err)
	}
	c, err := Parse(nil, env(map[string]string{"HTTPMIRROR_VERSION": "true"}), io.Discard)
	if err != nil || c == nil {
		t.Fatalf("HTTPMIRROR_VERSION: %v; want it ignored by Parse (CheckEnviron refuses it)", err)
	}
	var out strings.Builder
	Parse([]string{"--help"}, env(nil), &out)
	if !strings.Contains(out.String(), "--version") || strings.Contains(out.String(), "HTTPMIRROR_VERSION") {
		t.Errorf("usage: want --version without a variable:\n%s", out.String())
	}
}

// The default cache directory: StorageDefault marks it; without a user
// cache directory the error says there is no default and how to choose.
func TestDefaultStorage(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", "/var/cache/test")
	c, err := Parse(nil, env(nil), io.Discard)
	if err != nil || !c.StorageDefault {
		t.Fatalf("no --storage-url: StorageDefault %v, err %v; want true", c != nil && c.StorageDefault, err)
	}
	for _, args := range [][]string{{"--storage-url", "file:///srv/cache"}, {"--storage-url="}} {
		if c, err := Parse(args, env(nil), io.Discard); err != nil || c.StorageDefault {
			t.Errorf("Parse(%q): StorageDefault %v, err %v; want false", args, c != nil && c.StorageDefault, err)
		}
	}
	t.Setenv("XDG_CACHE_HOME", "")
	t.Setenv("HOME", "")
	_, err = Parse(nil, env(nil), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "no default cache directory") || !strings.Contains(err.Error(), "--storage-url file:///") {
		t.Errorf("no user cache directory: %v; want one saying there is no default and suggesting --storage-url", err)
	}
}

// CheckArgs refuses what the command line would, without reading files
// or checking flags against each other; CheckEnv does the same for one
// variable.
func TestCheckArgsAndEnv(t *testing.T) {
	ok := []string{"--address=:8080", "--admin-token-file", "/nonexistent/tokens", "--peer-address=:8081", "--host-from-first-path", "--cache-max-size", "1GiB"}
	if err := CheckArgs(ok); err != nil {
		t.Errorf("CheckArgs(%q): %v; want nil", ok, err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--nope"}, "unknown flag --nope"},
		{[]string{"--lease-duration=5"}, `invalid value "5" for --lease-duration: want a duration such as 30s, 5m or 1h30m`},
		{[]string{"--log-format", "json", "serve"}, `unexpected argument "serve"`},
		{[]string{"--version"}, "unknown flag --version"},
	} {
		if err := CheckArgs(c.args); err == nil || err.Error() != c.want {
			t.Errorf("CheckArgs(%q): %v; want %q", c.args, err, c.want)
		}
	}
	for _, c := range []struct{ name, value, want string }{
		{"HTTPMIRROR_LEASE_DURATION", "30s", ""},
		{"POD_IP", "anything", ""},
		{"HTTPMIRROR_LEASE_DURATION", "30", `invalid value "30" for HTTPMIRROR_LEASE_DURATION: want a duration such as 30s, 5m or 1h30m`},
		{"HTTPMIRROR_ALLOWHOST", "a.example", "unknown environment variable HTTPMIRROR_ALLOWHOST: no flag reads it (did you mean HTTPMIRROR_ALLOW_HOST?)"},
	} {
		err := CheckEnv(c.name, c.value)
		if (c.want == "" && err != nil) || (c.want != "" && (err == nil || err.Error() != c.want)) {
			t.Errorf("CheckEnv(%s, %q): %v; want %q", c.name, c.value, err, c.want)
		}
	}
}

// Reword gives another flag set of the command the same wording.
func TestReword(t *testing.T) {
	fs := flag.NewFlagSet("httpmirror cache ls", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Int("limit", 0, "")
	reword := Reword(fs)
	for args, want := range map[string]string{
		"--limit=x": `invalid value "x" for --limit: want a whole number such as 4`,
		"--lmit=3":  "unknown flag --lmit (did you mean --limit?)",
		"-limit":    "--limit needs a value",
	} {
		err := fs.Parse([]string{args})
		if err == nil {
			t.Fatalf("%s accepted", args)
		}
		if got := reword(err).Error(); got != want {
			t.Errorf("%s: %s; want %q", args, got, want)
		}
	}
}
