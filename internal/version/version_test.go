package version

import (
	"strings"
	"testing"
)

func TestString(t *testing.T) {
	i := Info{Version: "v1.2.3", Revision: "0123456789abcdef", Modified: true, Go: "go1.26"}
	if got, want := i.String(), "httpmirror v1.2.3 (rev 0123456789ab, modified) go1.26"; got != want {
		t.Fatalf("String = %q, want %q", got, want)
	}
	if got := (Info{Version: "(devel)", Go: "go1.26"}).String(); got != "httpmirror (devel) go1.26" {
		t.Fatalf("String without revision = %q", got)
	}
}

func TestGet(t *testing.T) {
	i := Get()
	if i.Version == "" || !strings.HasPrefix(i.Go, "go") {
		t.Fatalf("Get = %+v: want a version and the toolchain", i)
	}
}
