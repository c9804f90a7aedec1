package admin_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/httpmirror/httpmirror"
	"github.com/httpmirror/httpmirror/internal/testutil"
	"github.com/httpmirror/httpmirror/policy"
	"github.com/httpmirror/httpmirror/storage"
)

// store puts body under key through e's backend, with the digest of body
// in its metadata when digest is set.
func (e *env) storeObject(t *testing.T, key string, body []byte, digest bool) {
	t.Helper()
	info := storage.Info{Size: int64(len(body)), StoredAt: time.Now()}
	if digest {
		sum := sha256.Sum256(body)
		info.Header = http.Header{policy.DigestHeader: {policy.FormatSHA256(sum[:])}}
	}
	ctx := context.Background()
	w, err := e.store.Create(ctx, key, info)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.Write(body); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

// corrupt flips the byte at off of the body of the object under key in
// its file on local disk.
func (e *env) corrupt(t *testing.T, key string, off int64) {
	t.Helper()
	p, err := e.store.(storage.Locator).Location(key)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func hexSHA(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// startVerify posts a verify job with the query q and body, as auth, and
// returns its id.
func startVerify(t *testing.T, base, auth, q string, body []byte) string {
	t.Helper()
	resp, raw := send(t, "POST", base+"/verify?"+q, auth, body)
	var started struct {
		ID     string `json:"id"`
		Prefix string `json:"prefix"`
		Rate   int64  `json:"rate"`
		Status string `json:"status"`
	}
	if err := json.Unmarshal(raw, &started); err != nil || resp.StatusCode != 202 || started.ID == "" ||
		resp.Header.Get("Location") != "/verify/"+started.ID || started.Status != "/verify/"+started.ID {
		t.Fatalf("POST /verify?%s: %d %s (Location %q)", q, resp.StatusCode, raw, resp.Header.Get("Location"))
	}
	return started.ID
}

// verifyStatus gets the job's status, waiting up to wait for its end.
func verifyStatus(t *testing.T, base, auth, id, wait string) httpmirror.VerifyStatus {
	t.Helper()
	resp, raw := send(t, "GET", base+"/verify/"+id+"?wait="+wait, auth, nil)
	var st httpmirror.VerifyStatus
	if err := json.Unmarshal(raw, &st); err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /verify/%s: %d %s", id, resp.StatusCode, raw)
	}
	return st
}

// The verify endpoints find an object corrupted on disk, record the
// digest of one stored without, purge on request, resume, cancel, and
// audit who did each.
func TestVerifyEndpoints(t *testing.T) {
	e := newEnv(t, "file")
	base, logs := adminServer(t, e, twoTokens, false)
	alice, ci := "Bearer "+aliceToken, "Bearer "+ciToken
	const size = 100000 // kept on disk only, not in memory
	a, b, c := testutil.Payload(1, size), testutil.Payload(2, size), testutil.Payload(3, size)
	e.storeObject(t, "example.com/pool/a.bin", a, true)
	e.storeObject(t, "example.com/pool/b.bin", b, true)
	e.storeObject(t, "example.com/pool/c.bin", c, false)
	e.corrupt(t, "example.com/pool/b.bin", size-1)
	bad := append([]byte(nil), b...)
	bad[size-1] ^= 0xff
	want := []httpmirror.VerifyMismatch{{Key: "example.com/pool/b.bin", Expected: hexSHA(b), Got: hexSHA(bad)}}

	id := startVerify(t, base, alice, "prefix=example.com/pool/&rate=64MiB", nil)
	st := verifyStatus(t, base, alice, id, "30s")
	if st.State != "done" || st.Prefix != "example.com/pool/" || st.Rate != 64<<20 || st.Checked != 3 || st.OK != 1 ||
		st.Recorded != 1 || st.Mismatched != 1 || st.Purged != 0 || st.Bytes != 3*size || !slices.Equal(st.Mismatches, want) {
		t.Errorf("job %+v; want done: 1 ok, 1 recorded, mismatch %+v", st, want)
	}
	info, err := e.store.Stat(context.Background(), "example.com/pool/c.bin")
	if got, ok := policy.StoredSHA256(info); err != nil || !ok || hex.EncodeToString(got) != hexSHA(c) {
		t.Errorf("c.bin after verify: %v %v; want the digest of its bytes recorded", info.Header, err)
	}
	// Without a token nothing starts.
	if resp, raw := send(t, "POST", base+"/verify?prefix=example.com", "", nil); resp.StatusCode != 401 || !strings.Contains(string(raw), "needs a token") {
		t.Errorf("POST /verify without a token: %d %s; want 401", resp.StatusCode, raw)
	}

	// A job that cannot end before it is cancelled (a byte a second), then
	// resumed from its next by JSON at full speed, with purge.
	id = startVerify(t, base, ci, "", []byte(`{"prefix": "https://example.com/pool", "rate": 1}`))
	resp, raw := send(t, "DELETE", base+"/verify/"+id, ci, nil)
	if err := json.Unmarshal(raw, &st); err != nil || resp.StatusCode != 200 || st.State != "cancelled" || st.Checked != 0 || st.Next == "" {
		t.Fatalf("DELETE /verify/%s: %d %s; want cancelled before its first object, with next", id, resp.StatusCode, raw)
	}
	body, _ := json.Marshal(map[string]any{"prefix": "example.com/pool", "purge": true, "from": st.Next, "rate": "1GiB/s"})
	id = startVerify(t, base, ci, "", body)
	st = verifyStatus(t, base, ci, id, "30s")
	want[0].Purged = true
	if st.State != "done" || st.Checked != 3 || st.OK != 2 || st.Mismatched != 1 || st.Purged != 1 || !slices.Equal(st.Mismatches, want) {
		t.Errorf("resumed job with purge %+v; want 2 ok, b.bin purged", st)
	}
	if _, err := e.store.Stat(context.Background(), "example.com/pool/b.bin"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("b.bin after the purge: %v; want not found", err)
	}

	for _, line := range []struct{ msg, has string }{
		{`msg="admin verify start"`, "by=alice purge=false resumed=false prefix=example.com/pool/ rate=67108864 id="},
		{`msg="admin verify start"`, "by=ci purge=true resumed=true prefix=example.com/pool rate=1073741824 id=" + id + " status=202"},
		{`msg="admin verify cancel"`, "by=ci id="},
		{`msg="admin verify end"`, "by=alice id="},
		{`msg="admin verify end"`, "by=ci id=" + id + " prefix=example.com/pool purge=true state=done checked=3 bytes=300000 ok=2 recorded=0 changed=0 mismatched=1 purged=1 errors=0 resumable=false"},
	} {
		found := false
		for _, l := range logs.lines(line.msg) {
			found = found || strings.Contains(l, line.has)
		}
		if !found {
			t.Errorf("no audit line %s with %q in:\n%s", line.msg, line.has, logs)
		}
	}
	if n := len(logs.lines(`msg="admin verify end"`)); n != 3 {
		t.Errorf("%d end lines; want 3 (one per job)", n)
	}
}

// Bad requests get a JSON error with the right status, and nothing
// starts.
func TestVerifyEndpointErrors(t *testing.T) {
	e := newEnv(t, "file")
	for _, c := range []struct {
		method, path, body string
		status             int
		msg                string
	}{
		{"POST", "/verify?prefix=" + url.QueryEscape("ftp://example.com/"), "", 400, "neither http nor https"},
		{"POST", "/verify?prefix=example.com&rate=fast", "", 400, "rate must be a positive number"},
		{"POST", "/verify?rate=0", "", 400, "rate must be a positive number"},
		{"POST", "/verify", `{"rate": -5}`, 400, "rate must be a positive number"},
		{"POST", "/verify?purge=maybe", "", 400, "purge must be true or false"},
		{"POST", "/verify", `{"prefix": 3}`, 400, "not a JSON object"},
		{"POST", "/verify", `{"prefx": "example.com"}`, 400, "not a JSON object"},
		{"POST", "/verify?from=garbage", "", 400, "invalid resume token"},
		{"POST", "/verify", `{"prefix": "a.example", "from": "eyJwIjoiYi5leGFtcGxlIn0"}`, 400, "invalid resume token"},
		{"POST", "/verify", strings.Repeat(" ", 300<<10), 413, "over 256 KiB"},
		{"GET", "/verify", "", 405, "use POST"},
		{"GET", "/verify/0123456789abcdef", "", 404, "unknown verify id"},
		{"DELETE", "/verify/0123456789abcdef", "", 404, "unknown verify id"},
		{"PUT", "/verify/0123456789abcdef", "", 405, "use GET, HEAD, DELETE"},
		{"GET", "/verify/0123456789abcdef?wait=2m", "", 400, "wait must be a duration"},
	} {
		var got apiErr
		if code := e.api(t, c.method, c.path, []byte(c.body), &got); code != c.status || !strings.Contains(got.Error, c.msg) {
			t.Errorf("%s %s %.40q: %d %q; want %d with %q", c.method, c.path, c.body, code, got.Error, c.status, c.msg)
		}
	}
	// A mirror without a cache cannot verify.
	none := newEnv(t, "file", func(h *httpmirror.MirrorHandler) { h.RemoteCache = nil })
	var got apiErr
	if code := none.api(t, "POST", "/verify", nil, &got); code != 501 || !strings.Contains(got.Error, "without a cache") {
		t.Errorf("verify without a cache: %d %q; want 501", code, got.Error)
	}
}
