package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/httpmirror/httpmirror/internal/pipeline"
)

// ErrVersion is returned by Parse when the command line asks for the
// version (--version); nothing else has been read or checked.
var ErrVersion = errors.New("version requested")

// cliOnly are the flags of the command line alone: they set nothing in
// Config, have no environment variable and are not for deployments to
// pass.
var cliOnly = map[string]bool{"version": true}

// OtherEnv are the variables under EnvPrefix that set no flag of the
// mirror but are read by something else, so that an environment that
// holds them is no error: "httpmirror cache" reads HTTPMIRROR_ADMIN and
// HTTPMIRROR_ADMIN_TOKEN (an operator's shell may export them for it),
// and the tests read HTTPMIRROR_SCREENSHOT_DIR and, in test builds of
// the command, the HTTPMIRROR_TEST_ timeouts (internal/server).
var OtherEnv = []string{"HTTPMIRROR_ADMIN", "HTTPMIRROR_ADMIN_TOKEN", "HTTPMIRROR_SCREENSHOT_DIR",
	"HTTPMIRROR_TEST_READ_HEADER_TIMEOUT", "HTTPMIRROR_TEST_IDLE_TIMEOUT"}

// FlagNames returns the names (without dashes) of every flag that sets
// the mirror's configuration, sorted; each also has its environment
// variable, EnvName(name). Deployments (the manifests, the Dockerfile,
// the systemd unit) are checked against it.
func FlagNames() []string {
	fs := flag.NewFlagSet("httpmirror", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	defineFlags(fs, &Config{}, &textFlags{})
	var names []string
	fs.VisitAll(func(f *flag.Flag) {
		if !cliOnly[f.Name] {
			names = append(names, f.Name)
		}
	})
	return names
}

// CheckEnviron returns an error for the first variable of environ
// (os.Environ's NAME=value form) under EnvPrefix that sets no flag and is
// not in OtherEnv: a misspelt variable would otherwise be ignored without
// a word, and the mirror start with a default the operator meant to
// change. The error names the variable and, when one is close, the
// variable meant.
func CheckEnviron(environ []string) error {
	known := map[string]bool{}
	for _, n := range FlagNames() {
		known[EnvName(n)] = true
	}
	for _, n := range OtherEnv {
		known[n] = true
	}
	var unknown []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, EnvPrefix) && !known[name] {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	slices.Sort(unknown) // the same error whatever the environment's order
	name := unknown[0]
	msg := fmt.Sprintf("unknown environment variable %s: no flag reads it", name)
	if near := nearest(name, mapKeys(known)); near != "" {
		msg += fmt.Sprintf(" (did you mean %s?)", near)
	}
	return errors.New(msg)
}

func mapKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// nearest returns the candidate closest to s in edit distance, if it is
// close enough to be a typo (at most a third of s's length, and 3, away);
// otherwise "".
func nearest(s string, candidates []string) string {
	best, bestD := "", min(3, len(s)/3)+1
	for _, c := range candidates {
		if d := editDistance(strings.ToLower(s), strings.ToLower(c)); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// valueError is a flag value that could not be set. Parse words it for
// the command line (--name) or the environment (the variable).
type valueError struct {
	name, value, want string
}

func (e *valueError) Error() string {
	return fmt.Sprintf("invalid value %q for --%s: %s", e.value, e.name, e.want)
}

// checkedValue wraps a flag's value so that a value it refuses is
// reported as a valueError saying what the flag wants ("a duration such
// as 30s or 5m") rather than the flag package's "parse error" for
// "-name". The last refusal is kept in bad, since the flag package
// rewords the errors it gets.
type checkedValue struct {
	flag.Value
	name string
	bad  **valueError
}

func (v checkedValue) Set(s string) error {
	if err := v.Value.Set(s); err != nil {
		e := &valueError{name: v.name, value: s, want: wantOf(v.Value, err)}
		*v.bad = e
		return e
	}
	return nil
}

// IsBoolFlag lets the flag package take a bool flag without a value.
func (v checkedValue) IsBoolFlag() bool {
	b, ok := v.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// wantOf says what kind of value v takes, given the error it returned.
func wantOf(v flag.Value, err error) string {
	if _, ok := v.(*sizeFlag); ok {
		return "want a size such as 20GiB, 500MB or 1048576"
	}
	g, ok := v.(flag.Getter)
	if !ok {
		return err.Error()
	}
	switch g.Get().(type) {
	case time.Duration:
		return "want a duration such as 30s, 5m or 1h30m"
	case bool:
		return "want true or false"
	case int, int64, uint, uint64:
		if errors.Is(err, strconv.ErrRange) || strings.Contains(err.Error(), "out of range") {
			return "out of range"
		}
		return "want a whole number such as 4"
	}
	return err.Error()
}

// checkValues wraps every flag of fs in a checkedValue reporting to bad.
func checkValues(fs *flag.FlagSet, bad **valueError) {
	fs.VisitAll(func(f *flag.Flag) {
		f.Value = checkedValue{Value: f.Value, name: f.Name, bad: bad}
	})
}

// commandLineError words an error of fs.Parse with --name, as every other
// message does: bad is the value refused, if that was the error.
func commandLineError(err error, bad *valueError, fs *flag.FlagSet) error {
	if bad != nil {
		return bad
	}
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
		var names []string
		fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
		msg = "unknown flag --" + name
		if near := nearest(name, names); near != "" {
			msg += " (did you mean --" + near + "?)"
		}
		return errors.New(msg)
	}
	if name, ok := strings.CutPrefix(msg, "flag needs an argument: -"); ok {
		return fmt.Errorf("--%s needs a value", name)
	}
	return err
}

// checkOrigin checks the flags that say which origin a request is for,
// before the handler does, so that the message names the flags.
func (c *Config) checkOrigin() error {
	modes := 0
	for _, on := range []bool{c.Host != "", c.HostFromFirstPath, c.BaseDomain != ""} {
		if on {
			modes++
		}
	}
	if modes > 1 {
		return errors.New("--host, --host-from-first-path and --base-domain exclude each other: choose one")
	}
	if c.Host != "" {
		if _, err := pipeline.CanonicalHost(c.Host); err != nil {
			return fmt.Errorf("invalid value %q for --host: want an origin host name such as example.com or example.com:8443", c.Host)
		}
	}
	if c.UpstreamScheme != "http" && c.UpstreamScheme != "https" {
		return fmt.Errorf("invalid value %q for --upstream-scheme: want https or http", c.UpstreamScheme)
	}
	return nil
}

// checkAddresses refuses two listeners given the same address: the
// second would fail to listen with "address already in use", which does
// not say that the configuration, not another process, holds the port.
func (c *Config) checkAddresses() error {
	addrs := []struct{ flag, addr string }{{"address", c.Address}, {"admin-address", c.AdminAddress}, {"peer-address", c.PeerAddress}}
	for i, a := range addrs {
		for _, b := range addrs[i+1:] {
			switch {
			case a.addr == "" || b.addr == "" || !sameListener(a.addr, b.addr):
			case a.addr == b.addr:
				return fmt.Errorf("--%s and --%s are both %s: each listener needs a port of its own", a.flag, b.flag, a.addr)
			default:
				return fmt.Errorf("--%s %s and --%s %s take the same port: each listener needs a port of its own", a.flag, a.addr, b.flag, b.addr)
			}
		}
	}
	return nil
}

// sameListener reports whether listening on a and b (host:port) would
// take the same port: the same port, not 0 (any free port), on the same
// host or with either on every interface ("", 0.0.0.0 or ::).
func sameListener(a, b string) bool {
	ah, ap, errA := net.SplitHostPort(a)
	bh, bp, errB := net.SplitHostPort(b)
	if errA != nil || errB != nil {
		return a == b
	}
	if ap != bp || ap == "0" {
		return false
	}
	every := func(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }
	return strings.EqualFold(ah, bh) || every(ah) || every(bh)
}

// CheckArgs reports the first argument of args (a command line without
// the program name) that the command would refuse on its own: an unknown
// flag, a value of the wrong kind (a duration without a unit, a bad
// size), a flag without its value, or a stray argument. It neither
// checks the flags against each other nor reads the files they name, so
// that a deployment's command line can be checked away from the machine
// it runs on.
func CheckArgs(args []string) error {
	fs := flag.NewFlagSet("httpmirror", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	defineFlags(fs, &Config{}, &textFlags{})
	var bad *valueError
	checkValues(fs, &bad)
	if err := fs.Parse(args); err != nil {
		return commandLineError(err, bad, fs)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return nil
}

// CheckEnv reports whether the environment variable name, set to value,
// would be refused: a variable under EnvPrefix that sets no flag, or a
// value of the wrong kind for its flag. Variables of other names are
// not the command's and pass.
func CheckEnv(name, value string) error {
	if !strings.HasPrefix(name, EnvPrefix) {
		return nil
	}
	if err := CheckEnviron([]string{name + "=" + value}); err != nil {
		return err
	}
	for _, n := range FlagNames() {
		if EnvName(n) == name {
			if err := CheckArgs([]string{"--" + n + "=" + value}); err != nil {
				var ve *valueError
				if errors.As(err, &ve) {
					return fmt.Errorf("invalid value %q for %s: %s", value, name, ve.want)
				}
				return err
			}
		}
	}
	return nil
}

// Reword makes the errors of fs.Parse speak as the command's do (--name,
// what a value should be) for another flag set of the command, such as
// "httpmirror cache"'s. Call it once every flag is defined; the function
// it returns rewords an error of fs.Parse.
func Reword(fs *flag.FlagSet) func(error) error {
	var bad *valueError
	checkValues(fs, &bad)
	return func(err error) error {
		// The value refused belongs to this error only: fs may parse
		// again.
		defer func() { bad = nil }()
		return commandLineError(err, bad, fs)
	}
}
