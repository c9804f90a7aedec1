package httpmirror

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/httpmirror/httpmirror/fill"
)

const (
	// DefaultPrefetchConcurrency is how many prefetched URLs are fetched at
	// once when MirrorHandler.PrefetchConcurrency is zero.
	DefaultPrefetchConcurrency = 4
	// MaxPrefetchURLs is the most URLs one Prefetch takes.
	MaxPrefetchURLs = 10000
	// maxPrefetchJobs bounds the jobs kept for their status; the oldest
	// finished one makes room for a new one.
	maxPrefetchJobs = 64
)

var (
	// ErrTooManyURLs: a Prefetch of more than MaxPrefetchURLs URLs.
	ErrTooManyURLs = fmt.Errorf("too many URLs (at most %d per prefetch)", MaxPrefetchURLs)
	// ErrUnknownPrefetch: no prefetch job has the id (any more).
	ErrUnknownPrefetch = errors.New("unknown prefetch id")
	// ErrTooManyPrefetches: every kept job is still running.
	ErrTooManyPrefetches = fmt.Errorf("%d prefetch jobs are running; wait for one to finish", maxPrefetchJobs)
)

// PrefetchError is the error of a Prefetch whose list has URLs that name
// nothing the mirror could cache; nothing is prefetched. It matches
// ErrInvalidRef.
type PrefetchError struct {
	// Invalid lists the first invalid URLs (at most 100), by index in the
	// list, and Count how many there are.
	Invalid []InvalidURL
	Count   int
}

// InvalidURL is an invalid entry of a prefetch list. The URL itself is not
// repeated: it may carry credentials.
type InvalidURL struct {
	Index  int    `json:"index"`
	Reason string `json:"reason"`
}

func (e *PrefetchError) Error() string {
	return fmt.Sprintf("%d invalid URLs (the first at index %d: %s)", e.Count, e.Invalid[0].Index, e.Invalid[0].Reason)
}

func (e *PrefetchError) Unwrap() error { return ErrInvalidRef }

// Prefetch states of a URL.
const (
	PrefetchQueued    = "queued"
	PrefetchRunning   = "running"
	PrefetchDone      = "done"       // fetched and stored
	PrefetchCached    = "cached"     // stored already; not fetched
	PrefetchNotStored = "not_stored" // fetched, but the origin forbids storing it or storage failed
	PrefetchFailed    = "failed"
)

// PrefetchStatus reports a prefetch job: its URLs' states and bytes.
type PrefetchStatus struct {
	ID       string    `json:"id"`
	Created  time.Time `json:"created"`
	Finished time.Time `json:"finished,omitzero"`
	// State is "running" or "done" (every URL ended, failed or not).
	State string `json:"state"`
	// URL counts by state.
	Total     int `json:"total"`
	Queued    int `json:"queued"`
	Running   int `json:"running"`
	Done      int `json:"done"`
	Cached    int `json:"cached"`
	NotStored int `json:"notStored"`
	Failed    int `json:"failed"`
	// Bytes have arrived (or were stored already) of Size, the sum of the
	// sizes known so far.
	Bytes int64 `json:"bytes"`
	Size  int64 `json:"size"`
	// URLs is every URL's state; PrefetchSummary leaves it out.
	URLs []PrefetchURL `json:"urls,omitempty"`
}

// PrefetchSummary is a PrefetchStatus without its URLs.
type PrefetchSummary = PrefetchStatus

// PrefetchURL is one URL of a prefetch job.
type PrefetchURL struct {
	URL   string `json:"url"`
	Key   string `json:"key"`
	State string `json:"state"`
	// Bytes have arrived of Size (-1 while unknown).
	Bytes int64 `json:"bytes"`
	Size  int64 `json:"size"`
	// Error says why the URL failed: the status a client would have got.
	Error string `json:"error,omitempty"`
}

type prefetchJob struct {
	id      string
	created time.Time
	done    chan struct{} // closed when every URL has ended

	mu       sync.Mutex
	finished time.Time
	items    []prefetchItem
}

type prefetchItem struct {
	PrefetchURL
	t target
	f *fill.Fill // while running
}

// Prefetch starts fetching urls (upstream URLs or cache keys, see
// CacheKey) into the cache in the background, and returns the job's id
// for PrefetchProgress. Every URL goes through the fill engine as a client's
// miss would, so a client asking for one meanwhile joins its download (and
// a prefetch of a URL being downloaded joins that), and the origin sends
// it once. URLs already stored are not fetched again (stale ones are not
// revalidated: the next request does that), nor are those the origin
// recently answered 404 for. At most PrefetchConcurrency URLs, across all
// jobs, are fetched at once. The whole list is checked first: an invalid
// URL fails the call with a *PrefetchError and nothing is prefetched.
func (m *MirrorHandler) Prefetch(urls []string) (string, error) {
	if err := m.adminReady(); err != nil {
		return "", err
	}
	if len(urls) == 0 {
		return "", fmt.Errorf("%w: no URLs to prefetch", ErrInvalidRef)
	}
	if len(urls) > MaxPrefetchURLs {
		return "", ErrTooManyURLs
	}
	id := make([]byte, 8)
	rand.Read(id)
	j := &prefetchJob{id: hex.EncodeToString(id), created: m.now(), done: make(chan struct{}), items: make([]prefetchItem, len(urls))}
	var bad PrefetchError
	for i, u := range urls {
		t, err := m.refTarget(u)
		if err != nil {
			if bad.Count++; len(bad.Invalid) < 100 {
				bad.Invalid = append(bad.Invalid, InvalidURL{Index: i, Reason: err.Error()})
			}
			continue
		}
		j.items[i] = prefetchItem{PrefetchURL: PrefetchURL{URL: t.url(m.scheme), Key: t.key, State: PrefetchQueued, Size: -1}, t: t}
	}
	if bad.Count > 0 {
		return "", &bad
	}
	a := &m.admin
	a.mu.Lock()
	if len(a.jobs) >= maxPrefetchJobs && !a.dropFinishedLocked() {
		a.mu.Unlock()
		return "", ErrTooManyPrefetches
	}
	a.jobs[j.id] = j
	a.order = append(a.order, j.id)
	a.wg.Add(1)
	a.mu.Unlock()
	go m.runPrefetch(j)
	return j.id, nil
}

// dropFinishedLocked forgets the oldest finished job; it reports whether
// there was one.
func (a *adminState) dropFinishedLocked() bool {
	for i, id := range a.order {
		j := a.jobs[id]
		j.mu.Lock()
		done := !j.finished.IsZero()
		j.mu.Unlock()
		if done {
			delete(a.jobs, id)
			a.order = append(a.order[:i], a.order[i+1:]...)
			return true
		}
	}
	return false
}

// runPrefetch fetches the job's URLs in order, each once a token of the
// shared semaphore is free.
func (m *MirrorHandler) runPrefetch(j *prefetchJob) {
	a := &m.admin
	defer a.wg.Done()
	var wg sync.WaitGroup
	for i := range j.items {
		acquired := false
		if a.ctx.Err() == nil {
			select {
			case a.sem <- struct{}{}:
				acquired = true
			case <-a.ctx.Done():
			}
		}
		if !acquired {
			j.end(i, PrefetchFailed, -1, -1, "stopped: the mirror is shutting down")
			continue
		}
		j.start(i)
		wg.Go(func() {
			defer func() { <-a.sem }()
			state, n, size, reason := m.prefetchOne(a.ctx, j, i)
			j.end(i, state, n, size, reason)
			m.Metrics.prefetched(state)
		})
	}
	wg.Wait()
	j.mu.Lock()
	j.finished = m.now()
	j.mu.Unlock()
	close(j.done)
}

// prefetchOne fetches item i of j as a client's miss would, and returns
// how it ended.
func (m *MirrorHandler) prefetchOne(ctx context.Context, j *prefetchJob, i int) (state string, n, size int64, reason string) {
	t := j.items[i].t // set before the job started; never changed
	if code, ok := m.negatives.get(t.key, m.now); ok {
		return PrefetchFailed, 0, -1, fmt.Sprintf("%d %s (the origin's answer, remembered)", code, http.StatusText(code))
	}
	if info, err := m.store.Stat(ctx, t.key); err == nil {
		return PrefetchCached, info.Size, info.Size, ""
	}
	// A prefetch is an anonymous client: no credential, no negotiation.
	f, _ := m.fills.Miss(t.key, m.source(t, &http.Request{Header: http.Header{}}))
	defer f.Release()
	j.mu.Lock()
	j.items[i].f = f
	j.mu.Unlock()
	err := f.Wait(ctx)
	n, size = f.Progress()
	var se *fill.StatusError
	switch {
	case ctx.Err() != nil:
		return PrefetchFailed, n, size, "stopped: the mirror is shutting down"
	case errors.As(err, &se) && (se.Code == http.StatusNotFound || se.Code == http.StatusGone):
		if ttl := m.negativeTTL(); ttl > 0 {
			m.negatives.put(t.key, se.Code, m.now(), ttl)
		}
		fallthrough
	case err != nil:
		fl := classify(context.Background(), err)
		return PrefetchFailed, n, size, fmt.Sprintf("%d %s", fl.status, fl.message)
	case !f.Stored():
		return PrefetchNotStored, n, size, ""
	}
	return PrefetchDone, n, size, ""
}

func (j *prefetchJob) start(i int) {
	j.mu.Lock()
	j.items[i].State = PrefetchRunning
	j.mu.Unlock()
}

func (j *prefetchJob) end(i int, state string, n, size int64, reason string) {
	j.mu.Lock()
	it := &j.items[i]
	it.State, it.f, it.Error = state, nil, reason
	if n >= 0 {
		it.Bytes, it.Size = n, size
	}
	j.mu.Unlock()
}

// status reports the job; with urls, every URL's state too.
func (j *prefetchJob) status(urls bool) PrefetchStatus {
	j.mu.Lock()
	defer j.mu.Unlock()
	st := PrefetchStatus{ID: j.id, Created: j.created, Finished: j.finished, State: "running", Total: len(j.items)}
	if !j.finished.IsZero() {
		st.State = "done"
	}
	if urls {
		st.URLs = make([]PrefetchURL, 0, len(j.items))
	}
	for _, it := range j.items {
		u := it.PrefetchURL
		if it.f != nil {
			u.Bytes, u.Size = it.f.Progress()
		}
		switch u.State {
		case PrefetchQueued:
			st.Queued++
		case PrefetchRunning:
			st.Running++
		case PrefetchDone:
			st.Done++
		case PrefetchCached:
			st.Cached++
		case PrefetchNotStored:
			st.NotStored++
		case PrefetchFailed:
			st.Failed++
		}
		st.Bytes += u.Bytes
		st.Size += max(u.Size, 0)
		if urls {
			st.URLs = append(st.URLs, u)
		}
	}
	return st
}

// PrefetchProgress reports the prefetch job id, or ErrUnknownPrefetch.
// The last 64 jobs are kept.
func (m *MirrorHandler) PrefetchProgress(id string) (PrefetchStatus, error) {
	j := m.prefetchJob(id)
	if j == nil {
		return PrefetchStatus{}, ErrUnknownPrefetch
	}
	return j.status(true), nil
}

// WaitPrefetch waits until the prefetch job id is done, or ctx ends, and
// reports it then.
func (m *MirrorHandler) WaitPrefetch(ctx context.Context, id string) (PrefetchStatus, error) {
	j := m.prefetchJob(id)
	if j == nil {
		return PrefetchStatus{}, ErrUnknownPrefetch
	}
	select {
	case <-j.done:
	case <-ctx.Done():
	}
	return j.status(true), nil
}

func (m *MirrorHandler) prefetchJob(id string) *prefetchJob {
	a := &m.admin
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.jobs[id]
}

// prefetchSummaries reports the kept jobs, newest first, without their
// URLs.
func (m *MirrorHandler) prefetchSummaries() []PrefetchSummary {
	a := &m.admin
	a.mu.Lock()
	jobs := make([]*prefetchJob, 0, len(a.order))
	for i := len(a.order) - 1; i >= 0; i-- {
		jobs = append(jobs, a.jobs[a.order[i]])
	}
	a.mu.Unlock()
	out := make([]PrefetchSummary, 0, len(jobs))
	for _, j := range jobs {
		out = append(out, j.status(false))
	}
	return out
}

// stopPrefetches ends the prefetch jobs (URLs still queued fail; the
// downloads themselves are the fill engine's) and waits for their
// goroutines.
func (m *MirrorHandler) stopPrefetches() {
	a := m.adminInit()
	a.stop()
	a.wg.Wait()
}
