package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/httpmirror/httpmirror/internal/testutil"
	"github.com/httpmirror/httpmirror/storage"
	"github.com/httpmirror/httpmirror/storage/file"
)

// lsObject is what ls prints of an object in JSON.
type lsObject struct {
	Key        string    `json:"key"`
	Size       int64     `json:"size"`
	StoredAt   time.Time `json:"storedAt"`
	LastAccess time.Time `json:"lastAccess"`
	Hits       int64     `json:"hits"`
}

// seedCache stores n objects under example.com/seed/ in a new cache in
// dir, object i of i+1 bytes, and closes it.
func seedCache(t *testing.T, dir string, n int) {
	t.Helper()
	b, err := file.New(dir, file.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := range n {
		w, err := b.Create(ctx, fmt.Sprintf("example.com/seed/%05d", i), storage.Info{Size: int64(i + 1)})
		if err != nil {
			t.Fatal(err)
		}
		w.Write(make([]byte, i+1))
		if err := w.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		w.Close()
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
}

// ls --json prints one JSON array, whatever the number of pages behind
// it, and honours --limit; --json-lines prints one object a line; a
// --limit that leaves objects out says so on stderr; --sort orders by
// size, last access or hits; the table shows last access and hits.
func TestCacheLs(t *testing.T) {
	o := testutil.NewOrigin(t)
	o.Put("/a", testutil.Payload(1, 3000))
	o.Put("/b", testutil.Payload(2, 5000))
	dir := t.TempDir()
	const seeded = 2500
	seedCache(t, dir, seeded)
	p := start(t, append(mirrorArgs(t, o, dir), "--admin-address", "127.0.0.1:0")...)
	admin := "http://" + p.adminAddr()
	host := o.HostPort()
	run := func(wantCode int, args ...string) (string, string) {
		t.Helper()
		code, out, errOut := cacheCLI(t, "", append(args, "--admin", admin)...)
		if code != wantCode {
			t.Fatalf("cache %q: exit %d; want %d\nstdout: %.2000s\nstderr: %s", args, code, wantCode, out, errOut)
		}
		return out, errOut
	}
	array := func(out string) []lsObject {
		t.Helper()
		var objs []lsObject
		dec := json.NewDecoder(strings.NewReader(out))
		if err := dec.Decode(&objs); err != nil {
			t.Fatalf("not one JSON array: %v\n%.500s", err, out)
		}
		if dec.More() {
			t.Fatalf("more than one JSON document:\n%.500s", out)
		}
		return objs
	}

	// Reads through the mirror: /a three times, /b once.
	for i, path := range []string{"/a", "/b", "/a", "/a", "/a"} {
		resp, err := http.Get(p.url(o, path))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if i < 2 {
			// The first request fills: wait for the object to be stored.
			p.waitLog(t, "key="+host+path+" upstream=https://"+host+path+" bytes")
		}
	}

	out, errOut := run(0, "ls", "--json")
	if objs := array(out); len(objs) != seeded+2 {
		t.Errorf("ls --json listed %d objects; want %d", len(objs), seeded+2)
	}
	if errOut != "" {
		t.Errorf("ls --json of everything: stderr %q", errOut)
	}
	out, errOut = run(0, "ls", "--json", "--limit", "1500")
	if objs := array(out); len(objs) != 1500 || objs[1499].Key != "example.com/seed/01497" {
		t.Errorf("ls --json --limit 1500: %d objects; want 1500 in key order", len(objs))
	}
	if !strings.Contains(errOut, "more objects exist than --limit 1500") {
		t.Errorf("ls --limit 1500: stderr %q; want it to say more exist", errOut)
	}
	out, _ = run(0, "ls", "--json", "nothing.example/")
	if strings.TrimSpace(out) != "[]" {
		t.Errorf("ls --json of nothing = %q; want []", out)
	}
	out, _ = run(0, "ls", "--json-lines", "--limit", "1001", "example.com/")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 1001 {
		t.Errorf("ls --json-lines --limit 1001: %d lines", len(lines))
	}
	for _, l := range lines {
		var o lsObject
		if err := json.Unmarshal([]byte(l), &o); err != nil || o.Key == "" {
			t.Fatalf("line %q: %v", l, err)
		}
	}
	// Exactly the number there is: nothing more to say.
	if _, errOut = run(0, "ls", "--limit", "2", host+"/"); errOut != "" {
		t.Errorf("ls --limit of all there is: stderr %q", errOut)
	}

	out, _ = run(0, "ls", "--json", "--sort", "size", "--limit", "3")
	if objs := array(out); len(objs) != 3 || objs[0].Key != host+"/b" || objs[1].Key != host+"/a" || objs[2].Key != "example.com/seed/02499" {
		t.Errorf("--sort size: %+v", objs)
	}
	out, _ = run(0, "ls", "--json", "--sort", "hits", "--limit", "2")
	if objs := array(out); len(objs) != 2 || objs[0].Key != host+"/a" || objs[0].Hits != 3 || objs[1].Key != host+"/b" || objs[1].Hits != 0 {
		t.Errorf("--sort hits: %+v", objs)
	}
	out, _ = run(0, "ls", "--json", "--sort", "access", host+"/")
	if objs := array(out); len(objs) != 2 || objs[0].Key != host+"/b" || !objs[0].LastAccess.Before(objs[1].LastAccess) {
		t.Errorf("--sort access: %+v; want /b (stored, never read) before /a (read since)", objs)
	}
	out, _ = run(0, "ls", host+"/")
	if !strings.Contains(out, "LAST ACCESS") || !strings.Contains(out, "HITS") {
		t.Errorf("ls table lacks the last access and hits columns:\n%s", out)
	}
	t.Logf("cache ls:\n%s", out)
	for _, bad := range [][]string{{"ls", "--sort", "name"}, {"ls", "--json", "--json-lines"}, {"ls", "--limit", "-1"}} {
		if code, _, errOut := cacheCLI(t, "", append(bad, "--admin", admin)...); code != 2 || errOut == "" {
			t.Errorf("cache %q: exit %d, stderr %q; want 2 with a message", bad, code, errOut)
		}
	}
}
