package admin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/httpmirror/httpmirror"
	"github.com/httpmirror/httpmirror/internal/admin"
	"github.com/httpmirror/httpmirror/internal/testutil"
)

// chromium returns the path of a Chromium or Chrome binary, or skips the
// test.
func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no chromium binary found: the status page browser test needs one " +
		"(scripts/test.sh installs Debian's chromium when it runs as root)")
	return ""
}

// browser starts a headless Chromium for the test and returns a tab's
// context, and the messages the page writes to its console: a func that
// returns those received before a marker it logs in the page itself, so
// that none still on its way is missed.
func browser(t *testing.T) (context.Context, func() []chromedp.ConsoleMessage) {
	bin := chromium(t)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(bin),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	ctx, cancelTab := chromedp.NewContext(alloc)
	stopped := make(chan struct{})
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
		<-stopped
	})
	// Start the browser on a context without a deadline; each step below
	// has its own.
	if err := chromedp.Do(ctx); err != nil {
		close(stopped)
		t.Fatalf("starting %s: %v", bin, err)
	}
	var mu sync.Mutex
	var msgs []chromedp.ConsoleMessage
	marked := make(chan struct{})
	const marker = "httpmirror-test-end-of-messages"
	messages := chromedp.Console(ctx)
	go func() {
		defer close(stopped)
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.Text == marker {
				close(marked)
				continue
			}
			mu.Lock()
			msgs = append(msgs, m)
			mu.Unlock()
		}
	}()
	flush := func() []chromedp.ConsoleMessage {
		t.Helper()
		run(t, ctx, chromedp.Evaluate[chromedp.Void](`console.log(`+strconv.Quote(marker)+`)`))
		select {
		case <-marked:
		case <-time.After(30 * time.Second):
			t.Fatal("the console marker did not arrive")
		}
		mu.Lock()
		defer mu.Unlock()
		return append([]chromedp.ConsoleMessage(nil), msgs...)
	}
	return ctx, flush
}

// run runs a browser action within 30 seconds.
func run[T any](t *testing.T, ctx context.Context, a chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("browser: %v", err)
	}
	return v
}

// twoStops serves the first and second megabyte of a file, each after its
// gate opens; the first after first, the rest after second.
func twoStops(first, second *testutil.Gate) testutil.Hook {
	return func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
		if f == nil || r.Method != http.MethodGet {
			return false
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(f.Data)))
		for i, g := range []*testutil.Gate{nil, first, second} {
			if g != nil {
				g.Wait()
			}
			end := min((i+1)<<20, len(f.Data))
			if i == 2 {
				end = len(f.Data)
			}
			w.Write(f.Data[i<<20 : end])
			w.(http.Flusher).Flush()
		}
		return true
	}
}

// The status page, in a real headless Chromium, shows a download in
// progress from a slow origin with a progress bar that advances as bytes
// arrive, reloads itself without errors, and reads well (the screenshot).
func TestStatusPageInBrowser(t *testing.T) {
	e := newEnv(t, "file")
	const size = 4 << 20
	data := testutil.Payload(9, size)
	e.origin.Put("/models/weights.bin", data)
	e.origin.Put("/models/config.json", testutil.Payload(10, 2500))
	e.get(t, "/models/config.json")
	e.waitFills(t)
	e.get(t, "/models/config.json")
	e.get(t, "/models/missing.json")
	first, second := testutil.NewGate(t), testutil.NewGate(t)
	e.origin.SetHook(twoStops(first, second))
	resp, err := http.Get(e.public.URL + "/" + e.key("/models/weights.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	// The client has the first megabyte: so has the download.
	if _, err := io.ReadFull(resp.Body, make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}

	ctx, console := browser(t)
	run(t, ctx, chromedp.EmulateViewport(1100, 760))
	run(t, ctx, chromedp.Navigate(e.admin.URL+"/?refresh=1"))
	sel, _ := json.Marshal(fmt.Sprintf(`.fill[data-key=%q] progress`, e.key("/models/weights.bin")))
	progress := func() [2]float64 {
		t.Helper()
		v := run(t, ctx, chromedp.Evaluate[[]float64](fmt.Sprintf(`(() => { const p = document.querySelector(%s); return p ? [p.value, p.max] : [-1, -1]; })()`, sel)))
		if len(v) != 2 {
			t.Fatalf("progress read %v", v)
		}
		return [2]float64{v[0], v[1]}
	}
	if got := progress(); got != [2]float64{1 << 20, size} {
		t.Fatalf("progress of the download: value %v, max %v; want %d of %d", got[0], got[1], 1<<20, size)
	}
	first.Open()
	if _, err := io.ReadFull(resp.Body, make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	// The page reloads its content every second; wait for it to show the
	// second megabyte.
	run(t, ctx, chromedp.Poll[bool](fmt.Sprintf(`(document.querySelector(%s) || {}).value >= %d`, sel, 2<<20),
		chromedp.WithPollingTimeout(20*time.Second)))
	if got := progress(); got != [2]float64{2 << 20, size} {
		t.Fatalf("progress after the second megabyte: value %v, max %v; want %d of %d", got[0], got[1], 2<<20, size)
	}
	text := run(t, ctx, chromedp.Evaluate[string](`document.body.textContent`))
	for _, want := range []string{e.key("/models/weights.bin"), "2.0 MiB of 4.0 MiB (50%)", "Hit ratio", e.key("/models/config.json"), "404"} {
		if !strings.Contains(text, want) {
			t.Errorf("page text lacks %q:\n%s", want, text)
		}
	}

	png := run(t, ctx, chromedp.CaptureScreenshot())
	shot := filepath.Join(t.TempDir(), "status.png")
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) || len(png) < 10000 {
		t.Errorf("screenshot: %d bytes, not a PNG of the page", len(png))
	}
	if dir := os.Getenv("HTTPMIRROR_SCREENSHOT_DIR"); dir != "" {
		os.WriteFile(filepath.Join(dir, "status.png"), png, 0o644)
	}
	for _, m := range console() {
		if m.Type == chromedp.ConsoleError || m.IsException() {
			t.Errorf("console %s at %s:%d: %s", m.Type, m.URL, m.Line+1, m.Text)
		}
	}
	second.Open()
	if rest, err := io.ReadAll(resp.Body); err != nil || len(rest) != size-2<<20 {
		t.Errorf("the client's download: %d more bytes, %v", len(rest), err)
	}
}

// adminListener serves the admin endpoints of e's mirror on a listener of
// its own, which the test can stop and start again on the same address,
// as a mirror that goes away and comes back.
type adminListener struct {
	t    *testing.T
	e    *env
	addr string
	srv  *http.Server
	done chan struct{}
}

func newAdminListener(t *testing.T, e *env) *adminListener {
	a := &adminListener{t: t, e: e, addr: "127.0.0.1:0"}
	a.start()
	t.Cleanup(a.stop)
	return a
}

// start serves on a.addr (the address it had, after a stop).
func (a *adminListener) start() {
	a.t.Helper()
	ln, err := net.Listen("tcp", a.addr)
	if err != nil {
		a.t.Fatalf("listening on %s again: %v", a.addr, err)
	}
	a.addr = ln.Addr().String()
	a.srv = &http.Server{Handler: (&admin.Server{Gatherer: a.e.reg, Mirror: a.e.h}).Handler()}
	a.done = make(chan struct{})
	go func(srv *http.Server, done chan struct{}) {
		defer close(done)
		srv.Serve(ln)
	}(a.srv, a.done)
}

// stop closes the listener and every connection, and waits for Serve to
// return.
func (a *adminListener) stop() {
	if a.srv == nil {
		return
	}
	a.srv.Close()
	<-a.done
	a.srv = nil
}

func (a *adminListener) url() string { return "http://" + a.addr }

// text returns the text of the element with the id, "" when there is
// none.
func text(t *testing.T, ctx context.Context, id string) string {
	t.Helper()
	return run(t, ctx, chromedp.Evaluate[string](fmt.Sprintf(`(document.getElementById(%q) || {}).textContent || ""`, id)))
}

// waitFor waits until the JavaScript expression cond is true in the page,
// for at most 20 s.
func waitFor(t *testing.T, ctx context.Context, what, cond string) {
	t.Helper()
	pctx, cancel := context.WithTimeout(ctx, 25*time.Second)
	defer cancel()
	if _, err := chromedp.Run(pctx, chromedp.Poll[bool](cond, chromedp.WithPollingTimeout(20*time.Second))); err != nil {
		body, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
		t.Fatalf("the page never showed %s (%s): %v\n%s", what, cond, err, body)
	}
}

// screenshot saves the page as it looks to a PNG in dir (a temporary
// directory of the test, or $HTTPMIRROR_SCREENSHOT_DIR) and checks it is
// one.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png := run(t, ctx, chromedp.FullScreenshot(100))
	if !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) || len(png) < 5000 {
		t.Errorf("screenshot %s: %d bytes, not a PNG of the page", name, len(png))
	}
	dir := os.Getenv("HTTPMIRROR_SCREENSHOT_DIR")
	if dir == "" {
		dir = t.TempDir()
	}
	if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// noExceptions fails the test for every uncaught exception the page
// threw, and for errors in its console other than failed loads while
// the mirror was away (when away is set).
func noExceptions(t *testing.T, msgs []chromedp.ConsoleMessage, away bool) {
	t.Helper()
	for _, m := range msgs {
		if m.IsException() || m.Type == chromedp.ConsoleError && !(away && strings.Contains(m.Text, "net::ERR_")) {
			t.Errorf("console %s at %s:%d: %s", m.Type, m.URL, m.Line+1, m.Text)
		}
	}
}

// The status page, live: its figures (the hit ratio, the per-origin
// table, busiest first) follow the traffic without a reload.
func TestStatusPageLive(t *testing.T) {
	e := newEnv(t, "file")
	e.origin.Put("/a.bin", testutil.Payload(1, 10000))
	e.get(t, "/a.bin")
	e.waitFills(t)
	ctx, console := browser(t)
	run(t, ctx, chromedp.EmulateViewport(1100, 760))
	run(t, ctx, chromedp.Navigate(e.admin.URL+"/?refresh=1"))
	if got := text(t, ctx, "hit-ratio"); got != "0.0%" {
		t.Errorf("hit ratio after one miss: %q; want 0.0%%", got)
	}
	rows := `Array.from(document.querySelectorAll("#origins tr[data-origin]")).map(r => r.dataset.origin + " " + r.cells[1].textContent + " " + r.cells[2].textContent).join("|")`
	if got := run(t, ctx, chromedp.Evaluate[string](rows)); got != e.origin.HostPort()+" 1 0.0%" {
		t.Errorf("origins table %q; want %s with 1 request, 0.0%%", got, e.origin.HostPort())
	}
	for range 3 {
		e.get(t, "/a.bin")
	}
	waitFor(t, ctx, "3 hits of 4", `document.getElementById("hit-ratio").textContent == "75.0%"`)
	want := e.origin.HostPort() + " 4 75.0%"
	if got := run(t, ctx, chromedp.Evaluate[string](rows)); got != want {
		t.Errorf("origins table %q; want %q", got, want)
	}
	// Another origin, busier: nothing listens on 127.0.1.1, every request
	// fails.
	_, port, _ := strings.Cut(e.origin.HostPort(), ":")
	other := "127.0.1.1:" + port
	for range 5 {
		resp, err := http.Get(e.public.URL + "/" + other + "/f")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	want = other + " 5 –|" + want
	waitFor(t, ctx, "the busier origin first", rows+` == `+strconv.Quote(want))
	if got := run(t, ctx, chromedp.Evaluate[string](`document.querySelector("#origins tr[data-origin] td:last-child").textContent`)); got != "5" {
		t.Errorf("errors of %s: %q; want 5", other, got)
	}
	screenshot(t, ctx, "status-live.png")
	noExceptions(t, console(), false)
}

// When the mirror stops answering, the page says at once that it is
// disconnected, no longer claims to refresh, and greys out its old
// figures; when the mirror is back on the same address, the page
// recovers by itself with fresh figures.
func TestStatusPageDisconnected(t *testing.T) {
	e := newEnv(t, "file")
	e.origin.Put("/a.bin", testutil.Payload(1, 1000))
	e.get(t, "/a.bin")
	e.waitFills(t)
	a := newAdminListener(t, e)
	ctx, console := browser(t)
	run(t, ctx, chromedp.EmulateViewport(1100, 760))
	run(t, ctx, chromedp.Navigate(a.url()+"/?refresh=1"))
	if got := text(t, ctx, "asof"); !strings.Contains(got, "refreshes every 1 s") {
		t.Fatalf("header %q; want it to say it refreshes", got)
	}
	const banner = `(() => { const c = document.getElementById("conn"); return !c.hidden && c.getBoundingClientRect().height > 0; })()`
	if run(t, ctx, chromedp.Evaluate[bool](banner)) {
		t.Fatalf("the page says it is disconnected while the mirror answers: %q", text(t, ctx, "conn"))
	}

	a.stop()
	waitFor(t, ctx, "the disconnection", banner+` && document.body.classList.contains("disconnected")`)
	if got := text(t, ctx, "conn"); !strings.HasPrefix(got, "Disconnected: the mirror is not answering since ") {
		t.Errorf("banner %q; want it to say the mirror is not answering", got)
	}
	if got := text(t, ctx, "asof"); strings.Contains(got, "refreshes") || !strings.Contains(got, "disconnected") {
		t.Errorf("header while disconnected: %q; want \"disconnected\", no refresh promise", got)
	}
	if o := run(t, ctx, chromedp.Evaluate[string](`getComputedStyle(document.querySelector("main")).opacity`)); o == "1" {
		t.Errorf("the old figures are not greyed out (opacity %s)", o)
	}
	screenshot(t, ctx, "status-disconnected.png")

	// Meanwhile the figures change; the page shows them once it is back.
	e.get(t, "/a.bin")
	a.start()
	waitFor(t, ctx, "the recovery", `document.getElementById("conn").hidden && !document.body.classList.contains("disconnected")`)
	waitFor(t, ctx, "the hit made while disconnected", `document.getElementById("hit-ratio").textContent == "50.0%"`)
	if got := text(t, ctx, "asof"); !strings.Contains(got, "refreshes every 1 s") {
		t.Errorf("header after the recovery: %q; want it to say it refreshes", got)
	}
	noExceptions(t, console(), true)
}

// At 400 px wide (a phone) the page never scrolls sideways, with long
// keys, a prefetch job and its download, several origins and a failure
// with a long path on it; the prefetch's download is marked as such.
func TestStatusPageNarrow(t *testing.T) {
	e := newEnv(t, "file")
	long := "/" + strings.Repeat("very-long-directory-name-without-breaks", 4) + "/model-00001-of-00042.safetensors"
	e.origin.Put(long, testutil.Payload(1, 300000))
	e.origin.Put("/held/"+strings.Repeat("x", 150)+".bin", testutil.Payload(2, 3<<20))
	e.get(t, long)
	e.waitFills(t)
	e.get(t, long)
	e.get(t, "/missing/"+strings.Repeat("y", 200))
	_, port, _ := strings.Cut(e.origin.HostPort(), ":")
	for i := range 3 {
		resp, err := http.Get(fmt.Sprintf("%s/127.0.1.%d:%s/%s", e.public.URL, i+1, port, strings.Repeat("z", 100)))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	release := testutil.NewGate(t)
	e.origin.SetHook(holdAfter(1<<20, release))
	held := "/held/" + strings.Repeat("x", 150) + ".bin"
	id := e.startPrefetch(t, e.ref(held))
	e.waitStatus(t, "the prefetch's download", func(st httpmirror.Status) bool {
		return len(st.Fills) == 1 && st.Fills[0].Prefetch == id && st.Fills[0].Bytes == 1<<20
	})

	ctx, console := browser(t)
	run(t, ctx, chromedp.EmulateViewport(400, 900))
	run(t, ctx, chromedp.Navigate(e.admin.URL+"/?refresh=1"))
	if got := run(t, ctx, chromedp.Evaluate[float64](`innerWidth`)); got != 400 {
		t.Fatalf("window %v px wide; want 400", got)
	}
	sel, _ := json.Marshal(fmt.Sprintf(`.fill[data-key=%q] .tag.prefetch`, e.key(held)))
	tag := fmt.Sprintf(`document.querySelector(%s)`, sel)
	if got := run(t, ctx, chromedp.Evaluate[string](`(`+tag+` || {}).textContent || ""`)); got != "prefetch" {
		t.Errorf("the prefetch's download is not marked as such: tag %q", got)
	}
	for _, sel := range []string{"#origins", ".fill", "table"} {
		if !run(t, ctx, chromedp.Evaluate[bool](fmt.Sprintf(`!!document.querySelector(%q)`, sel))) {
			t.Errorf("the page has no %s: the test must cover it", sel)
		}
	}
	// Wider than the window or than the space beside the vertical
	// scroll bar: either scrolls sideways.
	width := `Math.max(document.scrollingElement.scrollWidth - innerWidth, document.scrollingElement.scrollWidth - document.documentElement.clientWidth)`
	if w := run(t, ctx, chromedp.Evaluate[float64](width)); w > 0 {
		t.Errorf("at 400 px the page is %v px too wide: it scrolls sideways", w)
	}
	// The tables fit too: none needs scrolling inside its box.
	wide := `Array.from(document.querySelectorAll(".table")).filter(d => d.scrollWidth > d.clientWidth).map(d => d.querySelector("table").id || d.previousElementSibling.textContent).join(", ")`
	if got := run(t, ctx, chromedp.Evaluate[string](wide)); got != "" {
		t.Errorf("at 400 px these tables scroll inside their box: %s", got)
	}
	// After a reload of the content too.
	e.get(t, long)
	waitFor(t, ctx, "the new hit", `document.getElementById("hit-ratio").textContent == "66.7%"`)
	if w := run(t, ctx, chromedp.Evaluate[float64](width)); w > 0 {
		t.Errorf("at 400 px, after a refresh, the page is %v px too wide", w)
	}
	screenshot(t, ctx, "status-narrow.png")
	noExceptions(t, console(), false)
	release.Open()
}
