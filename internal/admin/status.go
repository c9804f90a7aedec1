package admin

import (
	_ "embed"
	"fmt"
	"html/template"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/httpmirror/httpmirror"
)

//go:embed status.html
var statusHTML string

// statusTemplate renders the status page: plain server-side HTML, no
// external assets, and a few lines of script that reload its content.
var statusTemplate = template.Must(template.New("status").Funcs(template.FuncMap{
	"bytes":    func(n int64) string { return humanBytes(float64(n)) },
	"bytes64":  humanBytes,
	"percent":  func(f float64) string { return strconv.FormatFloat(100*f, 'f', 1, 64) + "%" },
	"fraction": fraction,
	"share":    func(a, b int64) string { return fraction(a, a+b) },
	"seconds":  func(s float64) string { return time.Duration(s * float64(time.Second)).Round(time.Second).String() },
	"clock":    func(t time.Time) string { return t.Format("15:04:05 MST") },
	"stamp":    func(t time.Time) string { return t.Format("2006-01-02 15:04 MST") },
	"iso":      func(t time.Time) string { return t.Format(time.RFC3339) },
	"ratio":    ratio,
	"add": func(n ...int64) (s int64) {
		for _, v := range n {
			s += v
		}
		return s
	},
	"duration": duration,
	"ended":    httpmirror.PrefetchStatus.Ended,
	"plural":   plural,
	"request":  request,
}).Parse(statusHTML))

// humanBytes formats a byte count with binary units.
func humanBytes(n float64) string {
	const units = "KMGTPE"
	if n < 1024 {
		return strconv.FormatFloat(n, 'f', 0, 64) + " B"
	}
	i := -1
	for n >= 1024 && i < len(units)-1 {
		n /= 1024
		i++
	}
	return fmt.Sprintf("%.1f %ciB", n, units[i])
}

// plural formats a count of things: "1 object", "2 objects"; a third
// argument is the plural when it is not the singular with an "s".
func plural(n any, thing string, things ...string) string {
	s := fmt.Sprint(n)
	switch {
	case s == "1":
		return "1 " + thing
	case len(things) > 0:
		return s + " " + things[0]
	}
	return s + " " + thing + "s"
}

// request names a failed request by its path, with the origin host
// before it unless the path starts with it (host from the first path).
func request(host, path string) string {
	if host == "" || strings.HasPrefix(path, "/"+host+"/") {
		return path
	}
	return host + path
}

// ratio formats a hit ratio of hits in all to one decimal; "–" before
// any request, as the other cards show no figure for nothing.
func ratio(hits, all int64) string {
	if all <= 0 {
		return "–"
	}
	return strconv.FormatFloat(100*float64(hits)/float64(all), 'f', 1, 64) + "%"
}

// duration formats an uptime in seconds with its two largest units:
// "42s", "5m 3s", "3h 12m", "4d 2h".
func duration(secs int64) string {
	units := []struct {
		n    int64
		name string
	}{{86400, "d"}, {3600, "h"}, {60, "m"}, {1, "s"}}
	for i, u := range units {
		if secs >= u.n || u.n == 1 {
			s := strconv.FormatInt(secs/u.n, 10) + u.name
			if i+1 < len(units) {
				if r := secs % u.n / units[i+1].n; r > 0 {
					s += " " + strconv.FormatInt(r, 10) + units[i+1].name
				}
			}
			return s
		}
	}
	return "0s"
}

// fraction formats a/b as a percentage; "–" when b is not positive.
func fraction(a, b int64) string {
	if b <= 0 {
		return "–"
	}
	return strconv.FormatFloat(100*float64(a)/float64(b), 'f', 0, 64) + "%"
}

// statusPage serves the status page. ?refresh=N sets the reload interval
// in seconds (default 2; 0 turns it off).
func (s *Server) statusPage(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		methodNotAllowed(w, "GET, HEAD")
		return
	}
	refresh := 2
	if v := r.URL.Query().Get("refresh"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 3600 {
			writeError(w, http.StatusBadRequest, "refresh must be a number of seconds from 0 to 3600")
			return
		}
		refresh = n
	}
	data := struct {
		httpmirror.Status
		Refresh int
	}{s.Mirror.Status(r.Context()), refresh}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	// The page is small; a template error here is a programming error,
	// which the tests catch.
	if err := statusTemplate.Execute(w, data); err != nil {
		s.log().Error("rendering the status page", "err", err)
	}
}

// statusJSON serves the status page's data.
func (s *Server) statusJSON(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		methodNotAllowed(w, "GET, HEAD")
		return
	}
	writeJSON(w, http.StatusOK, s.Mirror.Status(r.Context()))
}
