package httpmirror

import (
	"cmp"
	"context"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/httpmirror/httpmirror/fill"
	"github.com/httpmirror/httpmirror/internal/pipeline"
	"github.com/httpmirror/httpmirror/internal/version"
	"github.com/httpmirror/httpmirror/storage"
)

// Status is a snapshot of what the mirror is doing, for its operators.
type Status struct {
	Time time.Time `json:"time"`
	// Traffic is nil when the handler has no Metrics.
	Traffic *Traffic `json:"traffic,omitempty"`
	// Cache is nil for backends that do not report their size.
	Cache *storage.Stats `json:"cache,omitempty"`
	// Fills are the downloads in progress, oldest first.
	Fills []FillStatus `json:"fills"`
	// Largest is nil for backends that cannot list their objects.
	Largest    *LargestObjects  `json:"largest,omitempty"`
	Errors     []RecentError    `json:"errors"`
	Prefetches []PrefetchStatus `json:"prefetches"`
	// Origins is the traffic by origin, busiest first (see
	// MaxOriginLabels); empty without Metrics.
	Origins []OriginStatus `json:"origins"`
	// Version is the running build.
	Version version.Info `json:"version"`
	// Uptime is how long the process has run.
	Uptime Uptime `json:"uptime"`
}

// Uptime is how long the process has run: since it started, in whole
// seconds.
type Uptime struct {
	Seconds int64     `json:"seconds"`
	Since   time.Time `json:"since"`
}

// started is when the process started, as near as the package can tell:
// when it was initialised.
var started = time.Now()

// uptime returns the process's Uptime at now, on the wall clock: the
// handler's clock may be a test's.
func uptime() Uptime {
	return Uptime{Seconds: int64(max(time.Since(started), 0) / time.Second), Since: started}
}

// Traffic counts the requests answered since the start, by outcome, and
// the body bytes sent from the cache and from origins.
type Traffic struct {
	// Hits, Misses and Joined count successful answers (status < 400)
	// from storage, from a download the request started, and from one it
	// joined.
	Hits   int64 `json:"hits"`
	Misses int64 `json:"misses"`
	Joined int64 `json:"joined"`
	// Failed counts the requests that failed on the mirror's or the
	// origin's side.
	Failed int64 `json:"failed"`
	// HitRatio is Hits / (Hits + Misses + Joined); 0 before any.
	HitRatio    float64 `json:"hitRatio"`
	CacheBytes  int64   `json:"cacheBytes"`
	OriginBytes int64   `json:"originBytes"`
}

// FillStatus is a download in progress.
type FillStatus struct {
	Key string `json:"key"`
	URL string `json:"url"`
	// Op is "miss", "revalidate" or "refetch".
	Op string `json:"op"`
	// Bytes have arrived of Size (-1 while unknown).
	Bytes   int64     `json:"bytes"`
	Size    int64     `json:"size"`
	Started time.Time `json:"started"`
	Seconds float64   `json:"seconds"`
	// Rate is the average download rate so far, in bytes per second.
	Rate float64 `json:"bytesPerSecond"`
	// Readers counts the requests and prefetches using the download.
	Readers int `json:"readers"`
	// Prefetch is the id of a prefetch job the download is for (one it
	// started or joined); empty when only clients read it.
	Prefetch string `json:"prefetch,omitempty"`
}

func fillStatus(p fill.Progress, now time.Time) FillStatus {
	secs := max(now.Sub(p.Started).Seconds(), 0)
	fs := FillStatus{Key: p.Key, URL: p.URL, Op: p.Op, Bytes: p.Bytes, Size: p.Size, Started: p.Started, Seconds: secs, Readers: p.Readers}
	if secs > 0 {
		fs.Rate = float64(p.Bytes) / secs
	}
	return fs
}

// LargestObjects are the largest stored objects: from the backend's index
// when it keeps one in order of size (Indexed: the local disk), else as of
// a scan of the listing that may have stopped early in a large cache.
type LargestObjects struct {
	Objects []ListedObject `json:"objects"`
	// Scanned counts the objects the scan read; 0 when Indexed.
	Scanned int `json:"scanned"`
	// Complete is false when the scan stopped early, or when the index
	// is still being built after a start (the objects are then the
	// largest of those indexed so far).
	Complete bool      `json:"complete"`
	Indexed  bool      `json:"indexed,omitempty"`
	At       time.Time `json:"at"`
}

// RecentError is a failed request, without its query string.
type RecentError struct {
	Time   time.Time `json:"time"`
	Status int       `json:"status"`
	Method string    `json:"method"`
	Host   string    `json:"host,omitempty"`
	Path   string    `json:"path"`
	Reason string    `json:"reason"`
	// Prefetch marks the failure of a URL of a prefetch job, not of a
	// client's request.
	Prefetch bool `json:"prefetch,omitempty"`
}

// Status returns a snapshot of the mirror's traffic, storage, downloads in
// progress, largest objects (rescanned at most once a minute), recent
// failures and prefetch jobs.
func (m *MirrorHandler) Status(ctx context.Context) Status {
	st := Status{Time: time.Now(), Fills: []FillStatus{}, Origins: []OriginStatus{}, Version: version.Get(), Uptime: uptime()}
	if m.setup() != nil {
		return st
	}
	now := m.now()
	st.Time, st.Traffic, st.Errors = now, m.Metrics.traffic(), m.admin.errors.list()
	if s, ok := m.RemoteCache.(storage.StatsReporter); ok {
		stats := s.Stats()
		st.Cache = &stats
	}
	prefetching := m.prefetchingKeys()
	for _, p := range m.p.Progress() {
		fs := fillStatus(p, now)
		fs.Prefetch = prefetching[p.Key]
		st.Fills = append(st.Fills, fs)
	}
	if o := m.Metrics.originStatus(); o != nil {
		st.Origins = o
	}
	if _, ok := m.RemoteCache.(storage.Lister); ok {
		l := m.admin.largest.get(ctx, m.p.Store().(storage.Lister), now)
		st.Largest = &l
	}
	st.Prefetches = m.prefetchSummaries()
	return st
}

// prefetchingKeys maps the keys the running prefetch jobs are fetching
// to a job's id. Only running jobs are read, and of them only the items
// being fetched have a fill.
func (m *MirrorHandler) prefetchingKeys() map[string]string {
	a := &m.admin
	a.mu.Lock()
	jobs := make([]*prefetchJob, 0, len(a.order))
	for _, id := range a.order {
		jobs = append(jobs, a.jobs[id])
	}
	a.mu.Unlock()
	keys := map[string]string{}
	for _, j := range jobs {
		j.mu.Lock()
		if j.finished.IsZero() {
			for i := range j.items {
				if it := &j.items[i]; it.f != nil {
					if _, ok := keys[it.Key]; !ok {
						keys[it.Key] = j.id
					}
				}
			}
		}
		j.mu.Unlock()
	}
	return keys
}

// traffic reads the request and byte counters; nil without metrics.
func (m *Metrics) traffic() *Traffic {
	if m == nil {
		return nil
	}
	t := &Traffic{CacheBytes: int64(counterValue(m.servedCache)), OriginBytes: int64(counterValue(m.servedOrigin))}
	ch := make(chan prometheus.Metric, 16)
	go func() { m.requests.Collect(ch); close(ch) }()
	for c := range ch {
		var d dto.Metric
		if c.Write(&d) != nil {
			continue
		}
		var outcome, code string
		for _, l := range d.GetLabel() {
			switch l.GetName() {
			case "outcome":
				outcome = l.GetValue()
			case "code":
				code = l.GetValue()
			}
		}
		n := int64(d.GetCounter().GetValue())
		ok := len(code) == 3 && code < "400"
		switch {
		case outcome == pipeline.OutcomeHit.String() && ok:
			t.Hits += n
		case outcome == pipeline.OutcomeMiss.String() && ok:
			t.Misses += n
		case outcome == pipeline.OutcomeJoined.String() && ok:
			t.Joined += n
		case outcome == pipeline.OutcomeError.String():
			t.Failed += n
		}
	}
	if all := t.Hits + t.Misses + t.Joined; all > 0 {
		t.HitRatio = float64(t.Hits) / float64(all)
	}
	return t
}

func counterValue(c prometheus.Counter) float64 {
	var d dto.Metric
	if c.Write(&d) != nil {
		return 0
	}
	return d.GetCounter().GetValue()
}

// recentErrors is how many failed requests the status page remembers.
const recentErrors = 32

// errorRing keeps the last recentErrors failed requests. The zero value is
// ready.
type errorRing struct {
	mu  sync.Mutex
	buf [recentErrors]RecentError
	n   int // failures recorded so far
}

// add records the request x, which failed with f. Only the path is kept,
// shortened: never the query string, which may carry tokens.
func (e *errorRing) add(now time.Time, x *pipeline.Exchange, f *pipeline.Failure) {
	e.mu.Lock()
	e.buf[e.n%recentErrors] = RecentError{Time: now, Status: f.Status, Method: x.Method, Host: x.Host, Path: x.Path, Reason: f.Message}
	e.n++
	e.mu.Unlock()
}

// addPrefetch records the failure of a prefetch job's URL t: status
// is what a client would have got, reason why (with "prefetch: " before
// it). Only the path is kept, as for a request.
func (e *errorRing) addPrefetch(now time.Time, t pipeline.Target, status int, reason string) {
	path, _, _ := strings.Cut(strings.TrimPrefix(t.Key(), t.Host()), "?")
	e.mu.Lock()
	e.buf[e.n%recentErrors] = RecentError{Time: now, Status: status, Method: http.MethodGet, Host: t.Host(), Path: pipeline.LogPath(path), Reason: "prefetch: " + reason, Prefetch: true}
	e.n++
	e.mu.Unlock()
}

// list returns the remembered failures, newest first.
func (e *errorRing) list() []RecentError {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]RecentError, 0, min(e.n, recentErrors))
	for i := e.n - 1; i >= 0 && i >= e.n-recentErrors; i-- {
		out = append(out, e.buf[i%recentErrors])
	}
	return out
}

// Bounds of the scan for the largest objects: the status page must stay
// quick on a cache of millions of objects.
const (
	largestCount  = 10
	largestMaxAge = time.Minute
	largestScan   = 100000
	largestTime   = 3 * time.Second
)

// largestCache keeps the last scan for the largest objects.
type largestCache struct {
	mu   sync.Mutex
	last LargestObjects
}

// get returns the largest objects: from the backend's index when it has
// one (reading a few entries: asked at every view), else from a scan of
// the listing, done again when the last one is older than largestMaxAge.
func (c *largestCache) get(ctx context.Context, l storage.Lister, now time.Time) LargestObjects {
	if ll, ok := l.(storage.LargestLister); ok {
		objs, complete, err := ll.Largest(ctx, largestCount)
		if err == nil {
			res := LargestObjects{Objects: []ListedObject{}, Complete: complete, Indexed: true, At: now}
			for _, o := range objs {
				res.Objects = append(res.Objects, listed(o))
			}
			return res
		}
		// ErrNotSupported (the decorator over a backend without an
		// index), or the index failed: scan.
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.last.At.IsZero() && now.Sub(c.last.At) < largestMaxAge {
		return c.last
	}
	ctx, cancel := context.WithTimeout(ctx, largestTime)
	defer cancel()
	res := LargestObjects{Objects: []ListedObject{}, At: now}
	token := ""
	for res.Scanned < largestScan {
		objs, next, err := l.List(ctx, "", token, 0)
		if err != nil {
			break
		}
		for _, o := range objs {
			res.Objects = append(res.Objects, listed(o))
		}
		res.Scanned += len(objs)
		slices.SortFunc(res.Objects, func(a, b ListedObject) int { return cmp.Compare(b.Size, a.Size) })
		res.Objects = res.Objects[:min(len(res.Objects), largestCount)]
		if token = next; token == "" {
			res.Complete = true
			break
		}
	}
	c.last = res
	return res
}
