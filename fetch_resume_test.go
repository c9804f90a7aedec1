package httpmirror_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/httpmirror/httpmirror"
	"github.com/httpmirror/httpmirror/internal/testutil"
	"github.com/httpmirror/httpmirror/storage"
)

func TestCutWithoutRetryAbortsEveryClient(t *testing.T) {
	o := newOrigin(t)
	data := payload(6, 1<<20)
	o.Put("/cut.bin", data)
	m := newMirror(t, o)
	// The cut happens once both clients are in: the origin sends half,
	// waits for the second client to join, then drops the connection.
	half := 512 << 10
	joined := newGate(t)
	var cuts atomic.Int64
	o.SetHook(func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
		if cuts.Add(1) > 1 {
			return false
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(f.Data)))
		w.Header().Set("ETag", f.ETag)
		w.Write(f.Data[:half])
		w.(http.Flusher).Flush()
		joined.Wait()
		panic(http.ErrAbortHandler)
	})

	clients := make([]*http.Response, 2)
	for i := range clients {
		resp, err := http.Get(m.url(o, "/cut.bin"))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		// Each client has bytes before the cut, so it is in the fill.
		if _, err := io.ReadFull(resp.Body, make([]byte, 1000)); err != nil {
			t.Fatal(err)
		}
		clients[i] = resp
	}
	joined.Open()
	for i, resp := range clients {
		n, err := io.Copy(io.Discard, resp.Body)
		if err == nil {
			t.Errorf("client %d: body ended cleanly after %d more bytes; want an aborted transfer", i, n)
		}
		if resp.ContentLength != int64(len(data)) {
			t.Errorf("client %d: Content-Length %d; want %d", i, resp.ContentLength, len(data))
		}
	}
	if _, err := m.store.Stat(context.Background(), o.HostPort()+"/cut.bin"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("after the cut, Stat = %v; want ErrNotFound", err)
	}
	// The next request fetches the whole object again.
	r := get(t, m.url(o, "/cut.bin"))
	if r.StatusCode != 200 || !bytes.Equal(r.body, data) {
		t.Fatalf("refetch: status %d, %d bytes", r.StatusCode, len(r.body))
	}
	reqs := o.Received()
	if len(reqs) != 2 || !firstRequest(reqs[1]) {
		t.Fatalf("origin requests: %d, second Range %q, If-Range %q; want 2 and a new first request", len(reqs), reqs[len(reqs)-1].Header.Get("Range"), reqs[len(reqs)-1].Header.Get("If-Range"))
	}
}

func TestCutWithRetryResumes(t *testing.T) {
	for _, validator := range []string{"etag", "last-modified"} {
		t.Run(validator, func(t *testing.T) {
			o := newOrigin(t)
			data := payload(7, 1<<20)
			f := o.Put("/resume.bin", data)
			if validator == "last-modified" {
				f.ETag = ""
			}
			m := newMirror(t, o, func(m *httpmirror.MirrorHandler) {
				m.ContinuationGetRetry = 3
				m.ContinuationGetInterval = time.Millisecond
			})
			// Cut twice: the fill resumes twice.
			o.SetHook(cuttingHookOnce(300<<10, 2))
			r := get(t, m.url(o, "/resume.bin"))
			if r.StatusCode != 200 || r.err != nil || !bytes.Equal(r.body, data) {
				t.Fatalf("status %d, %d bytes, err %v; want the whole object", r.StatusCode, len(r.body), r.err)
			}
			var ranged int
			for _, req := range o.Received() {
				if rg := req.Header.Get("Range"); rg != "" && !firstRequest(req) {
					ranged++
					want := f.ETag
					if validator == "last-modified" {
						want = f.ModTime.Format(http.TimeFormat)
					}
					if req.Header.Get("If-Range") != want {
						t.Errorf("resume %q carried If-Range %q; want %q", rg, req.Header.Get("If-Range"), want)
					}
				}
			}
			if ranged != 2 {
				t.Fatalf("origin saw %d Range requests; want 2", ranged)
			}
			// Stored: a hit now.
			before := o.Gets.Load()
			if r := get(t, m.url(o, "/resume.bin")); !bytes.Equal(r.body, data) || o.Gets.Load() != before {
				t.Fatalf("after the resumed fill: not a correct hit")
			}
		})
	}
}

// cuttingHookOnce cuts each of the first `times` responses (whole or
// ranged) after `chunk` bytes of body.
func cuttingHookOnce(chunk int, times int64) testutil.Hook {
	var n atomic.Int64
	return func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
		if f == nil || n.Add(1) > times {
			return false
		}
		cw := &cutWriter{ResponseWriter: w, left: chunk}
		testutil.ServeFile(cw, r, f)
		return true
	}
}

func TestOriginChangedDuringResume(t *testing.T) {
	o := newOrigin(t)
	data := payload(8, 1<<20)
	o.Put("/moving.bin", data)
	m := newMirror(t, o, func(m *httpmirror.MirrorHandler) {
		m.ContinuationGetRetry = 3
		m.ContinuationGetInterval = time.Millisecond
	})
	changed := payload(9, 1<<20) // same size, other bytes and ETag
	var n atomic.Int64
	o.SetHook(func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
		if n.Add(1) > 1 {
			return false
		}
		// Cut the first response, and replace the file before the resume.
		o.Put("/moving.bin", changed)
		testutil.ServeFile(&cutWriter{ResponseWriter: w, left: 300 << 10}, r, f)
		return true
	})
	resp, err := http.Get(m.url(o, "/moving.bin"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil {
		t.Fatal("client got a clean body from a fill whose origin changed; want an aborted transfer")
	}
	reqs := o.Received()
	if len(reqs) != 2 || reqs[1].Header.Get("If-Range") == "" {
		t.Fatalf("origin requests %d; want the cut GET and one guarded resume", len(reqs))
	}
	if _, err := m.store.Stat(context.Background(), o.HostPort()+"/moving.bin"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Stat after the aborted fill = %v; want ErrNotFound", err)
	}
	if r := get(t, m.url(o, "/moving.bin")); !bytes.Equal(r.body, changed) {
		t.Fatalf("next request: %d bytes; want the changed object", len(r.body))
	}
}

func TestIdleOriginTimesOut(t *testing.T) {
	o := newOrigin(t)
	o.Put("/stuck.bin", payload(19, 1<<20))
	o.SetHook(stallingHook(1000, nil, newGate(t)))
	m := newMirror(t, o, func(m *httpmirror.MirrorHandler) { m.UpstreamIdleTimeout = 100 * time.Millisecond })
	resp, err := http.Get(m.url(o, "/stuck.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := io.ReadAll(resp.Body); err == nil {
		t.Fatal("body ended cleanly from an origin that stalled")
	}
}

// An origin with only Last-Modified that ignores If-Range answers the
// resume with a 206 of a newer version: the fill must not splice the two
// versions. It aborts, stores nothing, and the client's transfer is
// aborted; the next request gets the new version whole.
func TestResumeRefusesAnotherVersion(t *testing.T) {
	for _, tc := range []struct {
		name     string
		etag     string                                // of both versions' first response
		tweak206 func(h http.Header, f *testutil.File) // how the 206 differs
	}{
		{"newer Last-Modified", "", func(h http.Header, f *testutil.File) {
			h.Set("Last-Modified", f.ModTime.Add(time.Hour).Format(http.TimeFormat))
		}},
		{"Last-Modified missing", "", func(h http.Header, f *testutil.File) { h.Del("Last-Modified") }},
		{"ETag appears", "", func(h http.Header, f *testutil.File) { h.Set("ETag", `"v2"`) }},
		{"ETag changed", `W/"v1"`, func(h http.Header, f *testutil.File) { h.Set("ETag", `W/"v2"`) }},
		{"total length changed", "", func(h http.Header, f *testutil.File) {
			h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", 300<<10, len(f.Data), len(f.Data)+1))
			h.Set("Content-Length", strconv.Itoa(len(f.Data)-300<<10+1))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := newOrigin(t)
			v1 := payload(91, 1<<20)
			v2 := payload(92, 1<<20)
			f := o.Put("/spliced.bin", v1)
			f.ETag = tc.etag
			m := newMirror(t, o, func(m *httpmirror.MirrorHandler) {
				m.ContinuationGetRetry = 3
				m.ContinuationGetInterval = time.Millisecond
			})
			cut := 300 << 10
			var n atomic.Int64
			o.SetHook(func(w http.ResponseWriter, r *http.Request, file *testutil.File) bool {
				switch n.Add(1) {
				case 1:
					testutil.ServeFile(&cutWriter{ResponseWriter: w, left: cut}, r, file)
				case 2:
					// v2, sent as if it continued v1, If-Range ignored.
					o.Put("/spliced.bin", v2)
					h := w.Header()
					h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", cut, len(v2)-1, len(v2)))
					h.Set("Content-Length", strconv.Itoa(len(v2)-cut))
					h.Set("Last-Modified", file.ModTime.UTC().Format(http.TimeFormat))
					if file.ETag != "" {
						h.Set("ETag", file.ETag)
					}
					tc.tweak206(h, file)
					w.WriteHeader(http.StatusPartialContent)
					w.Write(v2[cut:])
				default:
					return false
				}
				return true
			})
			resp, err := http.Get(m.url(o, "/spliced.bin"))
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil {
				t.Fatalf("client got a clean %d-byte body (v1 prefix + v2 suffix: %v); want an aborted transfer",
					len(body), bytes.Equal(body[cut:], v2[cut:]))
			}
			waitFills(t, m)
			if _, err := m.store.Stat(context.Background(), o.HostPort()+"/spliced.bin"); !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("Stat after the refused resume = %v; want ErrNotFound", err)
			}
			if r := get(t, m.url(o, "/spliced.bin")); r.StatusCode != 200 || !bytes.Equal(r.body, v2) {
				t.Fatalf("next request: status %d, %d bytes; want v2 whole", r.StatusCode, len(r.body))
			}
		})
	}
}

// An origin that trickles a byte now and then, never idle for the whole
// idle timeout, is still cut off: below --upstream-min-rate a fill is
// aborted (or resumed) instead of being held for ever.
func TestTricklingOriginIsCutOff(t *testing.T) {
	o := newOrigin(t)
	o.Put("/trickle.bin", payload(97, 1<<20))
	stop := newGate(t)
	o.SetHook(func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
		w.Header().Set("Content-Length", strconv.Itoa(len(f.Data)))
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for i := 0; i < len(f.Data); i++ {
			select {
			case <-tick.C:
			case <-stop.Chan():
				return true
			case <-r.Context().Done():
				return true
			}
			w.Write(f.Data[i : i+1])
			w.(http.Flusher).Flush()
		}
		return true
	})
	m := newMirror(t, o, func(h *httpmirror.MirrorHandler) {
		h.UpstreamIdleTimeout = 200 * time.Millisecond // 100 bytes/s pass the idle check
		h.UpstreamMinRate = 10 << 10
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", m.url(o, "/trickle.bin"), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err == nil || ctx.Err() != nil {
		t.Fatalf("after %d bytes: err %v (deadline: %v); want the transfer aborted by the mirror", n, err, ctx.Err())
	}
}
