package admin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
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
