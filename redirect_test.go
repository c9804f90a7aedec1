package httpmirror_test

import (
	"net/http"
	"testing"

	"github.com/httpmirror/httpmirror"
	"github.com/httpmirror/httpmirror/internal/testutil"
)

func TestRedirectPolicy(t *testing.T) {
	o := newOrigin(t)
	o.Put("/real.bin", []byte("real"))
	o.SetHook(func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
		switch r.URL.Path {
		case "/to-real":
			http.Redirect(w, r, "/real.bin", http.StatusFound)
		case "/to-nodot":
			http.Redirect(w, r, "https://intranet:8443/x", http.StatusFound)
		case "/to-blocked":
			http.Redirect(w, r, "/payload.exe", http.StatusFound)
		case "/to-ftp":
			http.Redirect(w, r, "ftp://example.com/x", http.StatusFound)
		case "/loop":
			http.Redirect(w, r, "/loop", http.StatusFound)
		default:
			return false
		}
		return true
	})
	m := newMirror(t, o, func(m *httpmirror.MirrorHandler) { m.BlockSuffix = []string{".exe"} })
	for path, want := range map[string]int{"/to-real": 200, "/to-nodot": 502, "/to-blocked": 403, "/to-ftp": 502, "/loop": 502} {
		if r := get(t, m.url(o, path)); r.StatusCode != want {
			t.Errorf("%s: status %d; want %d", path, r.StatusCode, want)
		}
	}
	// The redirect loop was followed 10 times, then given up.
	loops := 0
	for _, r := range o.Received() {
		if r.URL.Path == "/loop" {
			loops++
		}
	}
	if loops != 11 {
		t.Errorf("origin saw %d requests of the redirect loop; want 11 (the first and 10 redirects)", loops)
	}
}
