package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/httpmirror/httpmirror"
	"github.com/httpmirror/httpmirror/internal/config"
)

const cacheUsage = `Usage: httpmirror cache <command> [flags] [arguments]

A client of a running mirror's admin API (its --admin-address).

Commands:
  ls [PREFIX]              list the cached objects under PREFIX (a host,
                           host/path or https:// URL prefix; all when absent)
                           with their size, store time, last access and hits
  info URL|KEY...          show the stored object of each URL or cache key,
                           or the progress of its download when it is not
                           stored yet (exit status 0: it is on its way)
  rm URL|KEY...            purge objects (a download in progress is cancelled);
                           those not cached are named, and the status is 1
  rm --prefix PREFIX       purge every object under PREFIX
  invalidate URL|KEY...    mark objects stale without deleting them: the next
                           request for each asks the origin (304 keeps the
                           stored bytes, 200 replaces them); variants included
  invalidate --prefix PREFIX | --glob GLOB | --all
                           invalidate every object under PREFIX, whose key
                           matches GLOB ('*' matches any characters, '/'
                           included: example.com/dists/*/InRelease), or all
  warm URL...              prefetch URLs into the cache and show the progress;
                           --file FILE reads them one per line (- for stdin)
  verify [PREFIX]          re-read the objects under PREFIX (all when absent),
                           compare each with the SHA-256 kept when it was
                           stored, and print those that no longer match;
                           objects stored without one get it recorded

Flags of every command:
  --admin URL              the admin listener (default $HTTPMIRROR_ADMIN,
                           else http://127.0.0.1:9090)
  --token-file FILE        send the first token of FILE (a line TOKEN [NAME],
                           as in the mirror's --admin-token-file); without it
                           $HTTPMIRROR_ADMIN_TOKEN, the token itself, if set
  --json                   print the API's JSON answers
Flags of ls: --limit N (stop after N objects; when more exist, stderr says
  so), --sort size|access|hits (largest, least recently read or most read
  first: the client reads the whole listing under PREFIX, up to 100000
  objects, before it prints; without --sort objects come in key order as
  they are listed), --json (one JSON array of the objects), --json-lines
  (one JSON object per line).
Flags of warm: --file FILE, --no-wait (print the job id and return),
  --timeout D (stop following the job after D, default 24h). Interrupted
  (Ctrl-C, SIGTERM) while following its job, warm cancels the job.
Flags of verify: --purge (delete the objects that do not match, so that
  the next request fetches them again), --rate R (bytes read per second,
  such as 64MiB, the default), --from TOKEN (resume a job that stopped
  early: the token it printed), --no-wait, --timeout D (as for warm).
  Interrupted while following its job, verify cancels the job and prints
  the command that resumes it.

Exit status: 0 on success, 1 when the mirror says no (not cached, nothing
invalidated, failed or cancelled URLs, objects that do not match their
digest or could not be verified, a missing or wrong token), cannot be
reached, or warm or verify was interrupted or stopped early, 2 for bad
usage.
`

// errUsage marks a command line to refuse with status 2.
var errUsage = errors.New("usage")

// cacheCmd is one run of "httpmirror cache".
type cacheCmd struct {
	admin  string
	json   bool
	token  string // sent as a bearer token when set
	ctx    context.Context
	client *http.Client
	stdout io.Writer
	stderr io.Writer
	stdin  io.Reader
	tty    bool // stderr is a terminal: warm draws a progress line there
}

// runCache runs "httpmirror cache ..." and returns the exit status.
func runCache(args []string, stdout, stderr io.Writer, lookupEnv func(string) (string, bool)) int {
	c := &cacheCmd{stdout: stdout, stderr: stderr, stdin: os.Stdin, client: &http.Client{}, ctx: context.Background()}
	if f, ok := stderr.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			c.tty = true
		}
	}
	if len(args) == 0 {
		fmt.Fprint(stderr, cacheUsage)
		return 2
	}
	if args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, cacheUsage)
		return 0
	}
	err := c.run(args[0], args[1:], lookupEnv)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stdout, cacheUsage)
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "httpmirror cache: %v (see httpmirror cache --help)\n", strings.TrimPrefix(err.Error(), "usage: "))
		return 2
	default:
		fmt.Fprintf(stderr, "httpmirror cache %s: %v\n", args[0], err)
		return 1
	}
}

func usageErr(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errUsage}, a...)...)
}

// parse parses flags anywhere among the arguments and returns the
// arguments.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	reword := config.Reword(fs)
	for range len(args) + 1 {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageErr("%v", reword(err))
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	return pos, nil
}

func (c *cacheCmd) run(cmd string, args []string, lookupEnv func(string) (string, bool)) error {
	fs := flag.NewFlagSet("httpmirror cache "+cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	def := "http://127.0.0.1:9090"
	if v, ok := lookupEnv("HTTPMIRROR_ADMIN"); ok && v != "" {
		def = v
	}
	fs.StringVar(&c.admin, "admin", def, "")
	fs.BoolVar(&c.json, "json", false, "")
	tokenFile := fs.String("token-file", "", "")
	limit := fs.Int("limit", 0, "")
	prefix := fs.String("prefix", "", "")
	file := fs.String("file", "", "")
	noWait := fs.Bool("no-wait", false, "")
	timeout := fs.Duration("timeout", 24*time.Hour, "")
	purge := fs.Bool("purge", false, "")
	rate := fs.String("rate", "", "")
	from := fs.String("from", "", "")
	glob := fs.String("glob", "", "")
	all := fs.Bool("all", false, "")
	sortBy := fs.String("sort", "", "")
	jsonLines := fs.Bool("json-lines", false, "")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	allowed := map[string][]string{"ls": {"limit", "sort", "json-lines"}, "info": nil, "rm": {"prefix"}, "warm": {"file", "no-wait", "timeout"},
		"verify": {"purge", "rate", "from", "no-wait", "timeout"}, "invalidate": {"prefix", "glob", "all"}}
	extra, known := allowed[cmd]
	if !known {
		return usageErr("unknown command %q; want ls, info, rm, invalidate, warm or verify", cmd)
	}
	for name := range set {
		if name != "admin" && name != "json" && name != "token-file" && !contains(extra, name) {
			return usageErr("--%s does not apply to %s", name, cmd)
		}
	}
	if !strings.Contains(c.admin, "://") {
		c.admin = "http://" + c.admin
	}
	if u, err := url.Parse(c.admin); err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return usageErr("--admin wants the admin listener's URL, such as http://127.0.0.1:9090")
	}
	c.admin = strings.TrimSuffix(c.admin, "/")
	if *tokenFile != "" {
		if c.token, err = readToken(*tokenFile); err != nil {
			return err
		}
	} else if v, ok := lookupEnv("HTTPMIRROR_ADMIN_TOKEN"); ok {
		c.token = strings.TrimSpace(v)
	}
	switch cmd {
	case "ls":
		if len(pos) > 1 || *limit < 0 {
			return usageErr("ls takes at most one prefix and a --limit >= 0")
		}
		a := lsArgs{limit: *limit, sort: *sortBy, format: lsTable}
		if len(pos) == 1 {
			a.prefix = pos[0]
		}
		switch {
		case c.json && *jsonLines:
			return usageErr("ls takes one of --json and --json-lines")
		case c.json:
			a.format = lsJSON
		case *jsonLines:
			a.format = lsJSONLines
		}
		if !contains([]string{"", "size", "access", "hits"}, a.sort) {
			return usageErr("--sort wants size, access or hits")
		}
		return c.ls(a)
	case "info":
		if len(pos) == 0 {
			return usageErr("info needs a URL or cache key")
		}
		return c.info(pos)
	case "rm":
		if (len(pos) == 0) == (*prefix == "") {
			return usageErr("rm takes URLs or keys, or --prefix PREFIX")
		}
		if *prefix != "" {
			return c.rmPrefix(*prefix)
		}
		return c.rm(pos)
	case "invalidate":
		return c.invalidate(pos, *prefix, *glob, *all, set)
	case "verify":
		if len(pos) > 1 {
			return usageErr("verify takes at most one prefix")
		}
		if *timeout <= 0 {
			return usageErr("--timeout must be positive")
		}
		v := verifyArgs{purge: *purge, from: *from, noWait: *noWait, timeout: *timeout}
		if len(pos) == 1 {
			v.prefix = pos[0]
		}
		if set["rate"] {
			n, err := config.ParseSize(strings.TrimSuffix(*rate, "/s"))
			if err != nil || n < 1 {
				return usageErr("--rate wants bytes per second, such as 64MiB or 100MB")
			}
			v.rate = n
		}
		return c.verify(v)
	default: // warm
		urls := pos
		if *file != "" {
			more, err := c.readList(*file)
			if err != nil {
				return err
			}
			urls = append(urls, more...)
		}
		if len(urls) == 0 {
			return usageErr("warm needs URLs, or --file FILE")
		}
		if *timeout <= 0 {
			return usageErr("--timeout must be positive")
		}
		return c.warm(urls, *noWait, *timeout)
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// readList reads URLs one per line from file ("-": standard input),
// skipping blank lines and # comments.
func (c *cacheCmd) readList(file string) ([]string, error) {
	r := c.stdin
	if file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return nil, usageErr("%v", err)
		}
		defer f.Close()
		r = f
	}
	var urls []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" && !strings.HasPrefix(line, "#") {
			urls = append(urls, line)
		}
	}
	return urls, sc.Err()
}

// readToken returns the first token of file: the first field of its first
// line that is neither blank nor a # comment, so that a file of the
// mirror's --admin-token-file format serves the client too. Errors never
// show the token.
func readToken(file string) (string, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", usageErr("--token-file: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line != "" && !strings.HasPrefix(line, "#") {
			return strings.Fields(line)[0], nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", usageErr("--token-file %s: %v", file, err)
	}
	return "", usageErr("--token-file %s holds no token", file)
}

// refPath is the admin path of a URL or key: kept as written, but for the
// bytes a request target cannot carry.
func refPath(ref string) string {
	var b strings.Builder
	b.WriteString("/cache/")
	for i := 0; i < len(ref); i++ {
		ch := ref[i]
		if ch <= ' ' || ch >= 0x7f || ch == '#' || ch == '"' || ch == '<' || ch == '>' || ch == '\\' || ch == '^' || ch == '`' || ch == '{' || ch == '|' || ch == '}' {
			fmt.Fprintf(&b, "%%%02X", ch)
			continue
		}
		b.WriteByte(ch)
	}
	return b.String()
}

// call sends a request to the admin API and decodes its JSON answer into
// out. An answer with another status than want is returned as an error
// with the API's message, and its body still decoded into out.
func (c *cacheCmd) call(method, path string, body []byte, want int, out any) ([]byte, error) {
	req, err := http.NewRequestWithContext(c.ctx, method, c.admin+path, bytes.NewReader(body))
	if err != nil {
		return nil, usageErr("%v", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.client.Do(req)
	if errors.Is(err, syscall.ECONNREFUSED) {
		host := req.URL.Host
		return nil, fmt.Errorf("no admin API at %s: start the mirror with --admin-address %s, or pass --admin URL", c.admin, host)
	}
	if err != nil {
		return nil, fmt.Errorf("admin API unreachable: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	if out != nil {
		json.Unmarshal(raw, out)
	}
	switch {
	case resp.StatusCode == want:
	case resp.StatusCode == http.StatusUnauthorized && c.token == "":
		return raw, fmt.Errorf("the admin API at %s needs a token: pass --token-file FILE or set HTTPMIRROR_ADMIN_TOKEN", c.admin)
	case resp.StatusCode == http.StatusUnauthorized, resp.StatusCode == http.StatusForbidden:
		return raw, fmt.Errorf("the admin API at %s refused the token (%s): pass --token-file FILE or set HTTPMIRROR_ADMIN_TOKEN to a token of the mirror's --admin-token-file", c.admin, resp.Status)
	}
	if resp.StatusCode != want {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(raw, &e) != nil || e.Error == "" {
			return raw, fmt.Errorf("%s %s: %s (is %s the admin listener?)", method, path, resp.Status, c.admin)
		}
		return raw, errors.New(e.Error)
	}
	return raw, nil
}

// info shows the stored object of each reference; those not cached are
// named on stderr.
func (c *cacheCmd) info(refs []string) error {
	missing := 0
	for _, ref := range refs {
		var st httpmirror.ObjectStatus
		raw, err := c.call("GET", refPath(ref), nil, http.StatusOK, &st)
		if err != nil && st.Key == "" {
			return err // not an answer about this object
		}
		if c.json {
			c.stdout.Write(raw)
		}
		if err != nil {
			missing++
			fmt.Fprintf(c.stderr, "%s: %v\n", st.Key, err)
			continue
		}
		if !c.json {
			printStatus(c.stdout, st)
		}
	}
	if missing > 0 {
		return fmt.Errorf("%d of %d not cached", missing, len(refs))
	}
	return nil
}

func printStatus(w io.Writer, st httpmirror.ObjectStatus) {
	line := func(k, v string) {
		if v != "" {
			fmt.Fprintf(w, "%-14s %s\n", k+":", v)
		}
	}
	line("key", st.Key)
	line("url", st.URL)
	if !st.Stored {
		// A download in progress: nothing of the stored object to show.
		line("stored", "not yet: downloading")
		if f := st.Fill; f != nil {
			line("downloading", fmt.Sprintf("%s of %s (%d bytes so far, %s)", humanBytes(f.Bytes), sizeOrUnknown(f.Size), f.Bytes, f.Op))
		}
		fmt.Fprintln(w)
		return
	}
	line("size", fmt.Sprintf("%d (%s)", st.Size, humanBytes(st.Size)))
	line("stored at", st.StoredAt.Local().Format(time.RFC3339))
	line("etag", st.ETag)
	line("sha256", st.SHA256)
	if !st.LastModified.IsZero() {
		line("last modified", st.LastModified.UTC().Format(http.TimeFormat))
	}
	line("content type", st.ContentType)
	if f := st.Freshness; f != nil {
		s := f.Rule + ", fresh"
		if !f.Fresh {
			s = f.Rule + ", stale (revalidated at the next request)"
		}
		if !f.StaleAt.IsZero() && f.Fresh {
			s += " until " + f.StaleAt.Local().Format(time.RFC3339)
		}
		line("freshness", s)
		if !f.Invalidated.IsZero() {
			line("invalidated", f.Invalidated.Local().Format(time.RFC3339))
		}
	}
	line("location", st.Location)
	if st.Variants > 0 {
		line("variants", fmt.Sprintf("%d more (%s), purged with it", st.Variants, humanBytes(st.VariantBytes)))
	}
	if f := st.Fill; f != nil {
		line("downloading", fmt.Sprintf("%s of %s", humanBytes(f.Bytes), sizeOrUnknown(f.Size)))
	}
	fmt.Fprintln(w)
}

// rm purges each reference; those of which nothing was stored nor
// downloading are named on stderr and make the exit status 1, as for
// info: a typo in a URL must not pass for a purge.
func (c *cacheCmd) rm(refs []string) error {
	missing := 0
	for _, ref := range refs {
		var res httpmirror.PurgeResult
		raw, err := c.call("DELETE", refPath(ref), nil, http.StatusOK, &res)
		if err != nil {
			return err
		}
		if c.json {
			c.stdout.Write(raw)
		}
		if res.Purged == 0 && res.CancelledFills == 0 {
			missing++
			fmt.Fprintf(c.stderr, "%s: not cached\n", res.Key)
			continue
		}
		if !c.json {
			fmt.Fprintf(c.stdout, "%s: %d object purged, %d download cancelled\n", res.Key, res.Purged, res.CancelledFills)
		}
	}
	if missing > 0 {
		return fmt.Errorf("%d of %d not cached", missing, len(refs))
	}
	return nil
}

func (c *cacheCmd) rmPrefix(prefix string) error {
	var res httpmirror.PurgeResult
	raw, err := c.call("DELETE", "/cache/?"+url.Values{"prefix": {prefix}}.Encode(), nil, http.StatusOK, &res)
	if err != nil {
		return err
	}
	if c.json {
		c.stdout.Write(raw)
		return nil
	}
	fmt.Fprintf(c.stdout, "%s: %d objects purged, %d downloads cancelled\n", res.Key, res.Purged, res.CancelledFills)
	return nil
}
