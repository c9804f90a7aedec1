package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/httpmirror/httpmirror"
)

// lsFormat is how ls prints the objects.
type lsFormat int

const (
	lsTable     lsFormat = iota // columns, and a line of totals
	lsJSON                      // one JSON array
	lsJSONLines                 // one JSON object per line
)

// maxSorted bounds the objects ls --sort reads: sorting needs the whole
// listing, which the admin API gives in key order only.
const maxSorted = 100000

// lsPage is the page size ls asks the admin API for.
const lsPage = 1000

// lsArgs are the arguments of ls.
type lsArgs struct {
	prefix string
	limit  int    // 0: all
	sort   string // "", "size", "access" or "hits"
	format lsFormat
}

// ls lists the objects under the prefix: in key order, page by page as
// the admin API lists them, or sorted once they are all read. When more
// objects exist than --limit lets it print, it says so on stderr.
func (c *cacheCmd) ls(a lsArgs) error {
	p := newLsPrinter(c.stdout, a.format)
	var more, capped bool
	var err error
	if a.sort == "" {
		more, err = c.lsKeyOrder(a, p.add)
	} else {
		more, capped, err = c.lsSorted(a, p.add)
	}
	// A listing cut short by an error still ends as valid JSON; the exit
	// status says it is not whole.
	p.end()
	if err != nil {
		return err
	}
	if capped {
		fmt.Fprintf(c.stderr, "httpmirror cache ls: sorted only the first %d objects in key order under %q: name a narrower prefix to sort them all\n", maxSorted, a.prefix)
	}
	if more {
		fmt.Fprintf(c.stderr, "httpmirror cache ls: more objects exist than --limit %d: pass a larger --limit, or --limit 0 for all\n", a.limit)
	}
	return nil
}

// lsKeyOrder passes the objects to add as the admin API lists them, up
// to a.limit, and reports whether more exist.
func (c *cacheCmd) lsKeyOrder(a lsArgs, add func(httpmirror.ListedObject)) (more bool, err error) {
	count := 0
	err = c.listPages(a.prefix, func(objs []httpmirror.ListedObject) bool {
		for _, o := range objs {
			if a.limit > 0 && count == a.limit {
				more = true
				return false
			}
			count++
			add(o)
		}
		return true
	})
	return more, err
}

// lsSorted reads the listing (up to maxSorted objects), sorts it and
// passes the first a.limit objects to add. more says objects were left
// out by the limit, capped that the listing was longer than maxSorted.
func (c *cacheCmd) lsSorted(a lsArgs, add func(httpmirror.ListedObject)) (more, capped bool, err error) {
	var all []httpmirror.ListedObject
	err = c.listPages(a.prefix, func(objs []httpmirror.ListedObject) bool {
		for _, o := range objs {
			if len(all) == maxSorted {
				capped = true
				return false
			}
			all = append(all, o)
		}
		return true
	})
	if err != nil {
		return false, false, err
	}
	slices.SortStableFunc(all, lsOrder(a.sort))
	if a.limit > 0 && len(all) > a.limit {
		all, more = all[:a.limit], true
	}
	for _, o := range all {
		add(o)
	}
	return more, capped, nil
}

// lsOrder compares two objects for --sort by: the largest, the least
// recently read or the most read first, then by key.
func lsOrder(by string) func(a, b httpmirror.ListedObject) int {
	return func(a, b httpmirror.ListedObject) int {
		var c int
		switch by {
		case "size":
			c = cmp.Compare(b.Size, a.Size)
		case "access":
			c = a.LastAccess.Compare(b.LastAccess)
		case "hits":
			c = cmp.Compare(b.Hits, a.Hits)
		}
		return cmp.Or(c, cmp.Compare(a.Key, b.Key))
	}
}

// listPages passes the pages of the listing under prefix to page until
// it returns false or the listing ends.
func (c *cacheCmd) listPages(prefix string, page func([]httpmirror.ListedObject) bool) error {
	next := ""
	for range 1 << 20 {
		q := url.Values{"prefix": {prefix}, "limit": {strconv.Itoa(lsPage)}}
		if next != "" {
			q.Set("next", next)
		}
		var p httpmirror.ListPage
		if _, err := c.call("GET", "/cache/?"+q.Encode(), nil, http.StatusOK, &p); err != nil {
			return err
		}
		if !page(p.Objects) || p.Next == "" {
			return nil
		}
		next = p.Next
	}
	return nil
}

// lsPrinter prints the objects of ls in its format.
type lsPrinter struct {
	w      io.Writer
	format lsFormat
	enc    *json.Encoder
	n      int64
	bytes  int64
	vars   int64
}

func newLsPrinter(w io.Writer, format lsFormat) *lsPrinter {
	p := &lsPrinter{w: w, format: format, enc: json.NewEncoder(w)}
	switch format {
	case lsTable:
		fmt.Fprintf(w, "%10s  %-16s  %-16s  %8s  %s\n", "SIZE", "STORED", "LAST ACCESS", "HITS", "KEY")
	case lsJSON:
		io.WriteString(w, "[")
	}
	return p
}

func (p *lsPrinter) add(o httpmirror.ListedObject) {
	p.n++
	p.bytes += o.Size
	if o.VariantOf != "" {
		p.vars++
	}
	switch p.format {
	case lsTable:
		fmt.Fprintf(p.w, "%10s  %-16s  %-16s  %8d  %s\n", humanBytes(o.Size), lsTime(o.StoredAt), lsTime(o.LastAccess), o.Hits, o.Key)
	case lsJSON:
		if p.n > 1 {
			io.WriteString(p.w, ",")
		}
		io.WriteString(p.w, "\n")
		b, _ := json.Marshal(o)
		p.w.Write(b)
	case lsJSONLines:
		p.enc.Encode(o)
	}
}

// end closes the array, or prints the totals under the table.
func (p *lsPrinter) end() {
	switch p.format {
	case lsTable:
		if p.vars > 0 {
			fmt.Fprintf(p.w, "%d objects (%d of them variants of another), %s\n", p.n, p.vars, humanBytes(p.bytes))
		} else {
			fmt.Fprintf(p.w, "%d objects, %s\n", p.n, humanBytes(p.bytes))
		}
	case lsJSON:
		if p.n > 0 {
			io.WriteString(p.w, "\n")
		}
		io.WriteString(p.w, "]\n")
	}
}

// lsTime is a time of the table, in local time; "-" when unknown.
func lsTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04")
}
