package httpmirror

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/httpmirror/httpmirror/fill"
	"github.com/httpmirror/httpmirror/internal/pipeline"
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

	// errPrefetchCancelled is the cause of a job's context ended by
	// CancelPrefetch, told apart from the mirror shutting down.
	errPrefetchCancelled = errors.New("prefetch cancelled")
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
	// PrefetchCancelled: not fetched for the job, because the job was
	// cancelled (CancelPrefetch) or a purge of its key came first.
	PrefetchCancelled = "cancelled"
)

// PrefetchStatus reports a prefetch job: its URLs' states and bytes.
type PrefetchStatus struct {
	ID       string    `json:"id"`
	Created  time.Time `json:"created"`
	Finished time.Time `json:"finished,omitzero"`
	// State is "running" or "done" (every URL ended, failed or not; a
	// cancelled job is done once its running URLs have stopped).
	State string `json:"state"`
	// URL counts by state.
	Total     int `json:"total"`
	Queued    int `json:"queued"`
	Running   int `json:"running"`
	Done      int `json:"done"`
	Cached    int `json:"cached"`
	NotStored int `json:"notStored"`
	Failed    int `json:"failed"`
	Cancelled int `json:"cancelled"`
	// Bytes have arrived (or were stored already) of Size, the sum of the
	// sizes known so far.
	Bytes int64 `json:"bytes"`
	Size  int64 `json:"size"`
	// URLs is every URL's state; the status page's summaries leave it
	// out.
	URLs []PrefetchURL `json:"urls,omitempty"`
}

// Ended counts the URLs that have ended, in any state but queued and
// running.
func (s PrefetchStatus) Ended() int {
	return s.Done + s.Cached + s.NotStored + s.Failed + s.Cancelled
}

// PrefetchURL is one URL of a prefetch job.
type PrefetchURL struct {
	URL   string `json:"url"`
	Key   string `json:"key"`
	State string `json:"state"`
	// Bytes have arrived of Size (-1 while unknown).
	Bytes int64 `json:"bytes"`
	Size  int64 `json:"size"`
	// Error says why the URL failed: the status a client would have got
	// and, when the origin answered otherwise (a 500 a client sees as
	// 502), the origin's status.
	Error string `json:"error,omitempty"`
	// OriginStatus is, for a URL that failed on the origin's answer, the
	// status the origin answered (remembered or not); 0 otherwise.
	OriginStatus int `json:"originStatus,omitempty"`
}

type prefetchJob struct {
	id      string
	created time.Time
	done    chan struct{} // closed when every URL has ended
	// ctx ends when the job is cancelled (cause errPrefetchCancelled) or
	// the mirror closes.
	ctx    context.Context
	cancel context.CancelCauseFunc

	mu       sync.Mutex
	finished time.Time
	items    []prefetchItem
}

type prefetchItem struct {
	PrefetchURL
	t pipeline.Target
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
		t, err := m.p.ResolveRef(u)
		if err != nil {
			if bad.Count++; len(bad.Invalid) < 100 {
				bad.Invalid = append(bad.Invalid, InvalidURL{Index: i, Reason: err.Error()})
			}
			continue
		}
		j.items[i] = prefetchItem{PrefetchURL: PrefetchURL{URL: m.p.URL(t), Key: t.Key(), State: PrefetchQueued, Size: -1}, t: t}
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
	j.ctx, j.cancel = context.WithCancelCause(a.ctx)
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
// shared semaphore is free. URLs cancelled while queued are skipped.
func (m *MirrorHandler) runPrefetch(j *prefetchJob) {
	a := &m.admin
	defer a.wg.Done()
	defer j.cancel(nil) // releases the context's resources; a cause set before is kept
	var wg sync.WaitGroup
	for i := range j.items {
		acquired := false
		if j.queued(i) {
			select {
			case a.sem <- struct{}{}:
				acquired = true
			case <-j.ctx.Done():
			}
		}
		if state, ok := j.start(i, acquired); !ok {
			if acquired {
				<-a.sem
			}
			m.Metrics.prefetched(state)
			continue
		}
		wg.Go(func() {
			defer func() { <-a.sem }()
			state, n, size, reason := m.prefetchOne(j.ctx, j, i)
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

// stopped returns how a URL ends whose job's context ended before it did:
// cancelled with the job, or failed with the mirror shutting down.
func stopped(ctx context.Context) (state, reason string) {
	if context.Cause(ctx) == errPrefetchCancelled {
		return PrefetchCancelled, "cancelled"
	}
	return PrefetchFailed, "stopped: the mirror is shutting down"
}

// prefetchOne fetches item i of j as a client's miss would, and returns
// how it ended. When ctx ends (the job is cancelled, the mirror closes),
// it stops waiting for the download; see CancelPrefetch for what becomes
// of the download itself.
func (m *MirrorHandler) prefetchOne(ctx context.Context, j *prefetchJob, i int) (state string, n, size int64, reason string) {
	t := j.items[i].t // set before the job started; never changed
	res, err := m.p.Prefetch(ctx, t)
	switch {
	case err == nil && res.Stored != nil:
		return PrefetchCached, res.Stored.Size, res.Stored.Size, ""
	case ctx.Err() != nil && res.Fill == nil:
		// The lookup may have failed for that very reason: no fill.
		state, reason = stopped(ctx)
		return state, -1, -1, reason
	case err != nil:
		return PrefetchFailed, 0, -1, m.prefetchFailed(j, i, err)
	}
	f := res.Fill
	defer func() {
		if !res.Joined && context.Cause(ctx) == errPrefetchCancelled {
			// Started for this job alone: it stops unless a client reads it
			// by now.
			f.Withdraw()
			return
		}
		f.Release()
	}()
	j.mu.Lock()
	j.items[i].f = f
	j.mu.Unlock()
	err = f.Wait(ctx)
	n, size = f.Progress()
	switch {
	case err == nil && !f.Stored():
		return PrefetchNotStored, n, size, ""
	case err == nil:
		return PrefetchDone, n, size, ""
	case ctx.Err() != nil:
		state, reason = stopped(ctx)
		return state, n, size, reason
	case errors.Is(err, fill.ErrCancelled):
		return PrefetchCancelled, n, size, "cancelled by a purge"
	}
	m.p.Remember(t, err)
	return PrefetchFailed, n, size, m.prefetchFailed(j, i, err)
}

// prefetchFailed returns why item i of j failed with err: the status and
// message a client would have got and, when the origin answered another
// status, that one too, which the item keeps (OriginStatus). An operator
// told "502" must be able to tell an origin's 500 from an unreachable one.
// The failure joins the recent errors of the status page, as a client's
// would.
func (m *MirrorHandler) prefetchFailed(j *prefetchJob, i int, err error) string {
	fl := pipeline.Classify(context.Background(), err)
	reason := fmt.Sprintf("%d %s", fl.Status, fl.Message)
	origin := 0
	var se *fill.StatusError
	if errors.As(err, &se) {
		origin = se.Code
	}
	switch {
	case errors.Is(err, pipeline.ErrRemembered):
		reason += " (the origin's answer, remembered)"
	case origin != 0 && origin != fl.Status:
		reason += fmt.Sprintf(" (the origin answered %d)", origin)
	}
	j.mu.Lock()
	j.items[i].OriginStatus = origin
	t := j.items[i].t
	j.mu.Unlock()
	m.admin.errors.addPrefetch(m.now(), t, fl.Status, reason)
	return reason
}

// queued reports whether item i still waits to be fetched.
func (j *prefetchJob) queued(i int) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.items[i].State == PrefetchQueued
}

// start marks item i running and reports true, unless it is no longer
// queued (a purge or CancelPrefetch ended it) or the job's context has
// ended (!acquired, or ended while a token was free too), which ends it.
// It returns the item's state.
func (j *prefetchJob) start(i int, acquired bool) (string, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	it := &j.items[i]
	switch {
	case it.State != PrefetchQueued:
	case !acquired || j.ctx.Err() != nil:
		it.State, it.Error = stopped(j.ctx)
	default:
		it.State = PrefetchRunning
		return it.State, true
	}
	return it.State, false
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

// cancelQueued ends the queued items that match as cancelled, with
// reason, and returns how many it ended.
func (j *prefetchJob) cancelQueued(match func(key string) bool, reason string) int {
	j.mu.Lock()
	defer j.mu.Unlock()
	n := 0
	for i := range j.items {
		it := &j.items[i]
		if it.State == PrefetchQueued && match(it.Key) {
			it.State, it.Error = PrefetchCancelled, reason
			n++
		}
	}
	return n
}

// CancelPrefetch cancels the prefetch job id and reports it once its
// running URLs have stopped (or ctx ends first); ErrUnknownPrefetch when
// there is no such job. Cancelling a job that is done changes nothing.
//
// Cancelling ends the job's queued URLs as PrefetchCancelled at once:
// the origin is never asked for them. Its running URLs stop being waited
// for and end as PrefetchCancelled too (with the bytes that had arrived),
// while their downloads are the fill engine's, as those of a client that
// went away: a download the job started that nobody else reads by now is
// stopped and stores nothing; one a client reads too (or that a client
// started and the job joined) goes on for its clients and is stored as
// usual. A client is never cut off by a cancel.
func (m *MirrorHandler) CancelPrefetch(ctx context.Context, id string) (PrefetchStatus, error) {
	j := m.prefetchJob(id)
	if j == nil {
		return PrefetchStatus{}, ErrUnknownPrefetch
	}
	// Queued items first, so that none starts between the cancel and the
	// marking.
	j.cancelQueued(func(string) bool { return true }, "cancelled")
	j.cancel(errPrefetchCancelled)
	select {
	case <-j.done:
	case <-ctx.Done():
	}
	return j.status(true), nil
}

// cancelQueuedPrefetches ends the queued URLs of every prefetch job whose
// keys match as cancelled, so that a purge is not undone by a prefetch
// queued before it. Running ones are the purge's: it cancels their
// downloads, and they end as cancelled too.
func (m *MirrorHandler) cancelQueuedPrefetches(match func(key string) bool) {
	a := &m.admin
	a.mu.Lock()
	jobs := make([]*prefetchJob, 0, len(a.jobs))
	for _, j := range a.jobs {
		jobs = append(jobs, j)
	}
	a.mu.Unlock()
	for _, j := range jobs {
		j.cancelQueued(match, "dropped by a purge before it was fetched")
	}
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
		case PrefetchCancelled:
			st.Cancelled++
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
func (m *MirrorHandler) prefetchSummaries() []PrefetchStatus {
	a := &m.admin
	a.mu.Lock()
	jobs := make([]*prefetchJob, 0, len(a.order))
	for i := len(a.order) - 1; i >= 0; i-- {
		jobs = append(jobs, a.jobs[a.order[i]])
	}
	a.mu.Unlock()
	out := make([]PrefetchStatus, 0, len(jobs))
	for _, j := range jobs {
		out = append(out, j.status(false))
	}
	return out
}

// stopPrefetches ends the prefetch jobs (URLs still queued fail; the
// downloads themselves are the fill engine's, which the mirror shuts down
// next) and waits for their goroutines.
func (m *MirrorHandler) stopPrefetches() {
	a := m.adminInit()
	a.stop()
	a.wg.Wait()
}
