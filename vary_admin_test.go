package httpmirror_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/httpmirror/httpmirror"
	"github.com/httpmirror/httpmirror/internal/testutil"
)

// languages answers /page with a body naming the request's
// Accept-Language, Vary: Accept-Language, and counts its GETs.
func languages(o *testOrigin) {
	o.SetHook(func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
		if r.URL.Path != "/page" && r.URL.Path != "/dir/" {
			return false
		}
		w.Header().Set("Vary", "Accept-Language")
		w.Header().Set("ETag", `"`+r.Header.Get("Accept-Language")+`"`)
		fmt.Fprintf(w, "page in %q\n", r.Header.Get("Accept-Language"))
		return true
	})
}

func getLang(t *testing.T, u, lang string) response {
	t.Helper()
	r := do(t, "GET", u, http.Header{"Accept-Language": {lang}})
	if want := fmt.Sprintf("page in %q\n", lang); r.StatusCode != 200 || string(r.body) != want {
		t.Fatalf("Accept-Language %q: status %d, body %q; want %q", lang, r.StatusCode, r.body, want)
	}
	return r
}

// A URL purge removes every variant of the URL, so none is served again
// without the origin; the listing and Lookup show the variants (count and
// bytes) until then. A directory URL's variants go with it too, by URL
// and by prefix.
func TestPurgeRemovesVariants(t *testing.T) {
	o := newOrigin(t)
	languages(o)
	m := newMirror(t, o)
	ctx := context.Background()
	langs := []string{"", "de", "fr", "ja"}
	for _, p := range []string{"/page", "/dir/"} {
		u := m.url(o, p)
		for _, l := range langs {
			getLang(t, u, l)
			waitFills(t, m)
		}
		ref := o.URL + p
		st, err := m.h.Lookup(ctx, ref)
		if err != nil || st.Variants != 3 || st.VariantBytes == 0 {
			t.Fatalf("%s: Lookup: %d variants, %d bytes, %v; want 3 variants", p, st.Variants, st.VariantBytes, err)
		}
		page, err := m.h.List(ctx, o.HostPort()+strings.TrimSuffix(p, "/"), "", 0)
		if err != nil || len(page.Objects) != 4 || page.Variants != 3 {
			t.Fatalf("%s: List: %d objects, %d variants, %v; want 4 objects, 3 of them variants", p, len(page.Objects), page.Variants, err)
		}
		var bytes int64
		for _, obj := range page.Objects {
			bytes += obj.Size
			if (obj.VariantOf != "") != strings.Contains(obj.Key, "#vary=") {
				t.Errorf("%s: listed %q as a variant of %q", p, obj.Key, obj.VariantOf)
			}
		}
		if page.Bytes != bytes || bytes != st.Size+st.VariantBytes {
			t.Errorf("%s: listing bytes %d (objects %d); Lookup %d + %d", p, page.Bytes, bytes, st.Size, st.VariantBytes)
		}
		var res httpmirror.PurgeResult
		if p == "/page" {
			res, err = m.h.Purge(ctx, ref)
		} else {
			res, err = m.h.PurgePrefix(ctx, ref)
		}
		if err != nil || res.Purged != 4 {
			t.Fatalf("%s: purge: %+v, %v; want 4 objects purged", p, res, err)
		}
		before := o.Gets.Load()
		for _, l := range langs {
			getLang(t, u, l)
			waitFills(t, m)
		}
		if n := o.Gets.Load() - before; n != int64(len(langs)) {
			t.Errorf("%s: after the purge the origin sent %d variants; want all %d again", p, n, len(langs))
		}
	}
}

// The variants of one URL are capped: past --max-variants, a new variant
// is served (each request an origin download) but not stored, and
// counted; the stored ones keep being hits.
func TestMaxVariants(t *testing.T) {
	o := newOrigin(t)
	languages(o)
	m := newMirror(t, o, func(m *httpmirror.MirrorHandler) { m.MaxVariants = 3 })
	u := m.url(o, "/page")
	// The first request, without Accept-Language, stores the object and
	// with it what it varies on; the first two languages fill the limit.
	getLang(t, u, "")
	waitFills(t, m)
	for i := range 20 {
		getLang(t, u, fmt.Sprintf("x-%d", i))
		waitFills(t, m)
	}
	if n := countFiles(t, m.root+"/objects"); n != 3 {
		t.Errorf("%d objects stored; want 3", n)
	}
	before := o.Gets.Load()
	for _, l := range []string{"", "x-0", "x-1"} {
		getLang(t, u, l)
	}
	getLang(t, u, "x-2")
	waitFills(t, m)
	if n := o.Gets.Load() - before; n != 1 {
		t.Errorf("origin GETs %d for 3 stored variants and one over the limit; want 1", n)
	}
}

// A literal '#' in a request path is refused on both of the public
// listener's paths: in a cache key it separates a variant from its object,
// and no request may name a variant's key (nor have a fill store another
// representation under it).
func TestHashInPathRefused(t *testing.T) {
	o := newOrigin(t)
	languages(o)
	m := newMirror(t, o)
	u := m.url(o, "/page")
	for _, l := range []string{"", "de"} {
		getLang(t, u, l)
		waitFills(t, m)
	}
	st, err := m.h.Lookup(context.Background(), o.URL+"/page")
	if err != nil || st.Variants != 1 {
		t.Fatalf("Lookup: %d variants, %v", st.Variants, err)
	}
	page, _ := m.h.List(context.Background(), o.HostPort()+"/page", "", 0)
	var variant string
	for _, obj := range page.Objects {
		if obj.VariantOf != "" {
			variant = strings.TrimPrefix(obj.Key, o.HostPort())
		}
	}
	c, err := net.Dial("tcp", strings.TrimPrefix(m.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET /%s%s HTTP/1.1\r\nHost: mirror\r\nAccept-Language: ja\r\nConnection: close\r\n\r\n", o.HostPort(), variant)
	buf := make([]byte, 4096)
	n, _ := readAll(c, buf)
	if !strings.HasPrefix(string(buf[:n]), "HTTP/1.1 400") {
		t.Errorf("GET of a variant's key: %q; want 400", buf[:min(n, 200)])
	}
	if strings.Contains(string(buf[:n]), "page in") {
		t.Errorf("a variant was served under its own key")
	}
}

// readAll reads from c into buf until EOF or buf is full.
func readAll(c net.Conn, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		k, err := c.Read(buf[n:])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
