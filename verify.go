package httpmirror

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/httpmirror/httpmirror/fill"
	"github.com/httpmirror/httpmirror/policy"
	"github.com/httpmirror/httpmirror/storage"
)

const (
	// DefaultVerifyRate is the read rate of a verify job, in bytes per
	// second, when VerifyOptions.Rate is zero.
	DefaultVerifyRate = 64 << 20
	// MaxVerifyMismatches is the most mismatched objects a VerifyStatus
	// lists; Mismatched counts them all.
	MaxVerifyMismatches = 1000
	// maxVerifyJobs bounds the verify jobs kept for their status; the
	// oldest ended one makes room for a new one.
	maxVerifyJobs = 8
	// maxVerifyErrors bounds the error samples a VerifyStatus lists.
	maxVerifyErrors = 10
	// maxVerifyPages bounds the listing pages one job walks: far more
	// than any cache holds at the backends' page sizes.
	maxVerifyPages = 10_000_000
	// verifyChunk is the most a verify job reads at once, and so the
	// burst of its rate limiter.
	verifyChunk = 64 << 10
)

// Verify states.
const (
	VerifyRunning   = "running"
	VerifyDone      = "done"      // every object under the prefix was handled
	VerifyCancelled = "cancelled" // by CancelVerify, or the mirror closed
	VerifyFailed    = "failed"    // the listing failed; Error says why
)

var (
	// ErrUnknownVerify: no verify job has the id (any more).
	ErrUnknownVerify = errors.New("unknown verify id")
	// ErrTooManyVerifies: every kept verify job is still running.
	ErrTooManyVerifies = fmt.Errorf("%d verify jobs are running; wait for one to end or cancel one", maxVerifyJobs)
	// ErrInvalidResumeToken: VerifyOptions.From is not the Next of a
	// verify job of the same prefix.
	ErrInvalidResumeToken = errors.New("invalid resume token (from): pass the next of a verify job of the same prefix")

	// errVerifyCancelled is the cause of a job's context ended by
	// CancelVerify, told apart from the mirror shutting down.
	errVerifyCancelled = errors.New("verify cancelled")
)

// VerifyOptions configure a verify job.
type VerifyOptions struct {
	// Prefix names the objects to verify, as for List and PurgePrefix; empty
	// verifies every object.
	Prefix string
	// Purge deletes the objects whose bytes no longer match their digest,
	// so that the next request fetches them again.
	Purge bool
	// Rate bounds the bytes per second the job reads from storage; zero or
	// negative means DefaultVerifyRate.
	Rate int64
	// From resumes a job that stopped early: the Next of its status. Empty
	// starts at the beginning of the listing.
	From string
	// Done, when set, is called with the job's last status once it has
	// ended, from the job's goroutine, before WaitVerify and CancelVerify
	// report the end; it must not block.
	Done func(VerifyStatus)
}

// VerifyStatus reports a verify job.
type VerifyStatus struct {
	ID       string    `json:"id"`
	State    string    `json:"state"`
	Prefix   string    `json:"prefix"`
	Purge    bool      `json:"purge"`
	Rate     int64     `json:"rate"`
	Created  time.Time `json:"created"`
	Finished time.Time `json:"finished,omitzero"`
	// Checked counts the objects the job has handled, in any way; Bytes
	// the bytes it has read.
	Checked int64 `json:"checked"`
	Bytes   int64 `json:"bytes"`
	// OK counts the objects that match their digest, Recorded those that
	// had none and got one, Changed those replaced or removed while the
	// job read them (not judged: the next job verifies what replaced
	// them).
	OK       int64 `json:"ok"`
	Recorded int64 `json:"recorded"`
	Changed  int64 `json:"changed"`
	// Mismatched counts the objects whose bytes differ from their digest;
	// Mismatches lists the first MaxVerifyMismatches of them. Purged counts
	// those deleted (with VerifyOptions.Purge).
	Mismatched int64            `json:"mismatched"`
	Mismatches []VerifyMismatch `json:"mismatches"`
	Purged     int64            `json:"purged"`
	// Errors counts the objects that could not be verified (a read that
	// failed); ErrorSamples lists the first few.
	Errors       int64         `json:"errors"`
	ErrorSamples []VerifyError `json:"errorSamples,omitempty"`
	// Error says why a failed or cancelled job stopped.
	Error string `json:"error,omitempty"`
	// Next resumes the job (VerifyOptions.From) after the last object it
	// has handled; empty once the job is done.
	Next string `json:"next,omitempty"`
}

// VerifyMismatch is a stored object whose bytes no longer match its
// digest. Digests are hex SHA-256.
type VerifyMismatch struct {
	Key string `json:"key"`
	// Expected is the digest kept in the object's metadata; empty when it
	// had none (Reason then says what is wrong).
	Expected string `json:"expected"`
	Got      string `json:"got"`
	// Reason is set when the body's length differs from the object's size.
	Reason string `json:"reason,omitempty"`
	// Purged says the object was deleted.
	Purged bool `json:"purged,omitempty"`
}

// VerifyError is an object a verify job could not verify.
type VerifyError struct {
	Key   string `json:"key"`
	Error string `json:"error"`
}

// verifyJobs are the kept verify jobs.
type verifyJobs struct {
	mu    sync.Mutex
	jobs  map[string]*verifyJob
	order []string // oldest first
	wg    sync.WaitGroup
}

type verifyJob struct {
	opts    VerifyOptions
	prefix  string
	from    resumeToken
	done    chan struct{} // closed when the job has ended
	ctx     context.Context
	cancel  context.CancelCauseFunc
	limiter *rate.Limiter
	bytes   atomic.Int64 // read so far; updated while an object is read

	mu  sync.Mutex
	st  VerifyStatus // Bytes, Next and Mismatches are filled in by status
	pos resumeToken  // after the last object handled
	end bool         // the listing is complete
}

// resumeToken is a listing position: the page that begins at the
// backend's page token Page, after the object Key of it ("" for none),
// in a listing of Prefix.
type resumeToken struct {
	Prefix string `json:"p"`
	Page   string `json:"t,omitempty"`
	Key    string `json:"k,omitempty"`
}

func (t resumeToken) encode() string {
	b, _ := json.Marshal(t)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeResumeToken(s, prefix string) (resumeToken, error) {
	var t resumeToken
	if s == "" {
		return resumeToken{Prefix: prefix}, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || json.Unmarshal(b, &t) != nil || t.Prefix != prefix {
		return resumeToken{}, ErrInvalidResumeToken
	}
	return t, nil
}

// Verify starts a job in the background that reads every stored object
// under opts.Prefix at a bounded rate, and compares the SHA-256 of its
// bytes with the digest kept in its metadata (see policy.DigestHeader). It
// returns the job's id for VerifyProgress.
//
// An object that matches is counted OK. One that does not is reported as
// a mismatch (bit rot, a tampered store) and logged at error level; with
// opts.Purge it is deleted, as Purge would (a download of it in progress is
// cancelled first), unless it was replaced meanwhile. An object without a
// digest, stored before digests were kept, gets the one of its bytes
// recorded through the backend's storage.Refresher; one replaced or
// removed while it was read is counted Changed. A job cancelled or stopped
// early can be resumed from its status's Next. Backends without
// storage.Lister give storage.ErrNotSupported; a mirror closed (Close)
// gives fill.ErrShutdown.
func (m *MirrorHandler) Verify(opts VerifyOptions) (string, error) {
	if err := m.adminReady(); err != nil {
		return "", err
	}
	if _, ok := m.RemoteCache.(storage.Lister); !ok {
		return "", storage.ErrNotSupported
	}
	p, err := m.p.KeyPrefix(opts.Prefix)
	if err != nil {
		return "", err
	}
	from, err := decodeResumeToken(opts.From, p)
	if err != nil {
		return "", err
	}
	if opts.Rate <= 0 {
		opts.Rate = DefaultVerifyRate
	}
	id := make([]byte, 8)
	rand.Read(id)
	burst := int(min(opts.Rate, verifyChunk))
	j := &verifyJob{
		opts: opts, prefix: p, from: from, pos: from, done: make(chan struct{}),
		limiter: rate.NewLimiter(rate.Limit(opts.Rate), burst),
		st: VerifyStatus{ID: hex.EncodeToString(id), State: VerifyRunning, Prefix: p, Purge: opts.Purge, Rate: opts.Rate,
			Created: m.now(), Mismatches: []VerifyMismatch{}},
	}
	a := m.adminInit()
	v := &a.verifies
	v.mu.Lock()
	if v.jobs == nil {
		v.jobs = map[string]*verifyJob{}
	}
	if a.ctx.Err() != nil {
		// Closed: stopVerifies may be waiting for the jobs already.
		v.mu.Unlock()
		return "", fill.ErrShutdown
	}
	if len(v.jobs) >= maxVerifyJobs && !v.dropEndedLocked() {
		v.mu.Unlock()
		return "", ErrTooManyVerifies
	}
	j.ctx, j.cancel = context.WithCancelCause(a.ctx)
	v.jobs[j.st.ID] = j
	v.order = append(v.order, j.st.ID)
	v.wg.Add(1)
	v.mu.Unlock()
	go m.runVerify(j)
	return j.st.ID, nil
}

// dropEndedLocked forgets the oldest ended job; it reports whether there
// was one.
func (v *verifyJobs) dropEndedLocked() bool {
	for i, id := range v.order {
		select {
		case <-v.jobs[id].done:
			delete(v.jobs, id)
			v.order = append(v.order[:i], v.order[i+1:]...)
			return true
		default:
		}
	}
	return false
}

// runVerify walks the listing page by page from the job's position and
// verifies each object under the prefix, until the listing ends or the
// job's context does.
func (m *MirrorHandler) runVerify(j *verifyJob) {
	v := &m.admin.verifies
	defer v.wg.Done()
	defer j.cancel(nil) // releases the context's resources; a cause set before is kept
	lister := m.p.Store().(storage.Lister)
	buf := make([]byte, verifyChunk)
	var failure error
	pos := j.from
pages:
	for range maxVerifyPages {
		objs, next, err := lister.List(j.ctx, j.prefix, pos.Page, 0)
		if err != nil {
			if j.ctx.Err() == nil {
				failure = err
			}
			break
		}
		// Resuming within a page: skip up to the object handled last. If it
		// is gone from the page meanwhile, the whole page is verified
		// again, which costs time but misses nothing.
		skip := pos.Key != "" && listsKey(objs, pos.Key)
		for _, o := range objs {
			if skip {
				skip = o.Key != pos.Key
				continue
			}
			if j.ctx.Err() != nil {
				break pages
			}
			if underPrefix(j.prefix, o.Key) && !m.verifyOne(j, o.Key, buf) {
				break pages // stopped while reading it: not handled
			}
			pos.Key = o.Key
			j.moved(pos, false)
		}
		if next == "" {
			j.moved(pos, true)
			break
		}
		pos = resumeToken{Prefix: j.prefix, Page: next}
		j.moved(pos, false)
	}
	j.mu.Lock()
	switch {
	case j.end:
		j.st.State = VerifyDone
	case failure != nil:
		j.st.State = VerifyFailed
		j.st.Error = "listing the stored objects failed (see the mirror's log)"
		if errors.Is(failure, storage.ErrInvalidToken) {
			j.st.Error = "the resume token (from) is not valid for this cache"
		}
		m.log.Error("verify: listing failed", "job", j.st.ID, "prefix", j.prefix, "err", failure)
	case context.Cause(j.ctx) == errVerifyCancelled:
		j.st.State = VerifyCancelled
	case j.ctx.Err() != nil:
		j.st.State, j.st.Error = VerifyCancelled, "stopped: the mirror is shutting down"
	default:
		j.st.State, j.st.Error = VerifyFailed, "the listing has too many pages; resume from next"
	}
	j.st.Finished = m.now()
	j.mu.Unlock()
	if j.opts.Done != nil {
		j.opts.Done(j.status())
	}
	close(j.done)
}

func listsKey(objs []storage.Info, key string) bool {
	for _, o := range objs {
		if o.Key == key {
			return true
		}
	}
	return false
}

// moved records pos as the position after the last object handled, and
// end when the listing is complete.
func (j *verifyJob) moved(pos resumeToken, end bool) {
	j.mu.Lock()
	j.pos, j.end = pos, end
	j.mu.Unlock()
}

// verifyOne verifies the object under key and reports whether it was
// handled; false when the job's context ended first.
func (m *MirrorHandler) verifyOne(j *verifyJob, key string, buf []byte) bool {
	ctx, store := j.ctx, m.p.Store()
	// What the medium holds, not a copy in memory; not a use of the
	// object either.
	var obj storage.Object
	var err error
	if r, ok := store.(storage.Rereader); ok {
		obj, err = r.Reread(ctx, key)
	} else {
		obj, err = store.Open(ctx, key)
	}
	switch {
	case errors.Is(err, storage.ErrNotFound):
		j.count(&j.st.Changed) // removed since it was listed
		return true
	case err != nil && ctx.Err() != nil:
		return false
	case err != nil:
		m.verifyFailed(j, key, "opening the object failed", err)
		return true
	}
	info := obj.Info()
	h := sha256.New()
	n, err := io.CopyBuffer(h, &limitedReader{r: obj, j: j, max: j.limiter.Burst()}, buf)
	obj.Close()
	if err != nil {
		if ctx.Err() != nil {
			return false
		}
		if m.replaced(ctx, key, info) {
			j.count(&j.st.Changed)
		} else {
			m.verifyFailed(j, key, "reading the object failed", err)
		}
		return true
	}
	got := h.Sum(nil)
	want, has := policy.StoredSHA256(info)
	switch {
	case n == info.Size && has && bytes.Equal(got, want):
		j.count(&j.st.OK)
	case n == info.Size && !has:
		return m.recordDigest(j, key, info, got)
	default:
		mm := VerifyMismatch{Key: key, Got: hex.EncodeToString(got)}
		if has {
			mm.Expected = hex.EncodeToString(want)
		}
		if n != info.Size {
			mm.Reason = fmt.Sprintf("the body has %d bytes, the object's size is %d", n, info.Size)
		}
		if j.opts.Purge {
			var ok bool
			if mm.Purged, ok = m.purgeMismatched(j, key, info); !ok {
				return false
			}
		}
		args := []any{"job", j.st.ID, "key", key, "expected", mm.Expected, "got", mm.Got, "purged", mm.Purged}
		if mm.Reason != "" {
			args = append(args, "reason", mm.Reason)
		}
		m.log.Error("verify: a stored object does not match its digest", args...)
		j.mu.Lock()
		j.st.Checked++
		j.st.Mismatched++
		if mm.Purged {
			j.st.Purged++
		}
		if len(j.st.Mismatches) < MaxVerifyMismatches {
			j.st.Mismatches = append(j.st.Mismatches, mm)
		}
		j.mu.Unlock()
	}
	return true
}

// count adds one to the counter c of j, and one to Checked.
func (j *verifyJob) count(c *int64) {
	j.mu.Lock()
	*c++
	j.st.Checked++
	j.mu.Unlock()
}

// verifyFailed counts an object that could not be verified; what the
// status says is msg, the details go to the log.
func (m *MirrorHandler) verifyFailed(j *verifyJob, key, msg string, err error) {
	m.log.Warn("verify: "+msg, "job", j.st.ID, "key", key, "err", err)
	j.mu.Lock()
	j.st.Checked++
	j.st.Errors++
	if len(j.st.ErrorSamples) < maxVerifyErrors {
		j.st.ErrorSamples = append(j.st.ErrorSamples, VerifyError{Key: key, Error: msg + " (see the mirror's log)"})
	}
	j.mu.Unlock()
}

// sameObject reports whether a and b describe the same stored object:
// a refetch or a revalidation changes at least StoredAt, recording a
// digest changes the header.
func sameObject(a, b storage.Info) bool {
	return a.Size == b.Size && a.ETag == b.ETag && a.StoredAt.Equal(b.StoredAt) &&
		a.Header.Get(policy.DigestHeader) == b.Header.Get(policy.DigestHeader)
}

// replaced reports whether the object under key is no longer the one
// whose metadata was info.
func (m *MirrorHandler) replaced(ctx context.Context, key string, info storage.Info) bool {
	cur, err := m.p.Store().Stat(ctx, key)
	return errors.Is(err, storage.ErrNotFound) || (err == nil && !sameObject(cur, info))
}

// recordDigest keeps sum, the SHA-256 of the object under key read with
// metadata info, in its metadata, unless the object changed meanwhile.
// It reports false when the job's context ended first.
func (m *MirrorHandler) recordDigest(j *verifyJob, key string, info storage.Info, sum []byte) bool {
	ctx, store := j.ctx, m.p.Store()
	rf, ok := store.(storage.Refresher)
	if !ok {
		m.verifyFailed(j, key, "this storage backend cannot record digests", storage.ErrNotSupported)
		return true
	}
	// The backend's Refresh checks size and ETag only: an object refetched
	// with the same ones (an origin without ETags) must not get the digest
	// of the bytes it replaced.
	if m.replaced(ctx, key, info) {
		if ctx.Err() != nil {
			return false
		}
		j.count(&j.st.Changed)
		return true
	}
	ni := info
	ni.Header = info.Header.Clone()
	if ni.Header == nil {
		ni.Header = make(map[string][]string)
	}
	ni.Header.Set(policy.DigestHeader, policy.FormatSHA256(sum))
	err := rf.Refresh(ctx, key, ni)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		j.count(&j.st.Changed)
	case err != nil && ctx.Err() != nil:
		return false
	case err != nil:
		m.verifyFailed(j, key, "recording the digest failed", err)
	default:
		// Prebuilt response headers of the key predate the digest.
		m.p.Forget(func(k string) bool { return k == key })
		j.count(&j.st.Recorded)
	}
	return true
}

// purgeMismatched deletes the object under key, read with metadata info,
// as Purge does: its download in progress, if any, is cancelled first.
// An object replaced meanwhile is left alone. It reports whether it
// deleted the object, and ok false when the job's context ended first.
func (m *MirrorHandler) purgeMismatched(j *verifyJob, key string, info storage.Info) (purged, ok bool) {
	ctx := j.ctx
	match := func(k string) bool { return k == key }
	if _, err := m.p.Cancel(ctx, match); err != nil {
		return false, false
	}
	if m.replaced(ctx, key, info) {
		return false, ctx.Err() == nil
	}
	if err := m.p.Store().Delete(ctx, key); err != nil {
		if ctx.Err() != nil {
			return false, false
		}
		m.log.Warn("verify: deleting a mismatched object failed", "job", j.st.ID, "key", key, "err", err)
		return false, true
	}
	m.p.Forget(match)
	m.Metrics.purged(1)
	return true, true
}

// limitedReader reads r at most max bytes at a time, waiting for the
// job's rate limiter after each read, and counts the bytes in the job.
type limitedReader struct {
	r   io.Reader
	j   *verifyJob
	max int
}

func (l *limitedReader) Read(p []byte) (int, error) {
	n, err := l.r.Read(p[:min(len(p), l.max)])
	if n > 0 {
		l.j.bytes.Add(int64(n))
		if werr := l.j.limiter.WaitN(l.j.ctx, n); werr != nil {
			return n, werr
		}
	}
	return n, err
}

// status reports the job.
func (j *verifyJob) status() VerifyStatus {
	j.mu.Lock()
	defer j.mu.Unlock()
	st := j.st
	st.Bytes = j.bytes.Load()
	st.Mismatches = append([]VerifyMismatch{}, j.st.Mismatches...)
	st.ErrorSamples = append([]VerifyError(nil), j.st.ErrorSamples...)
	if !j.end {
		st.Next = j.pos.encode()
	}
	return st
}

// VerifyProgress reports the verify job id, or ErrUnknownVerify. The last
// 8 jobs are kept.
func (m *MirrorHandler) VerifyProgress(id string) (VerifyStatus, error) {
	j := m.verifyJob(id)
	if j == nil {
		return VerifyStatus{}, ErrUnknownVerify
	}
	return j.status(), nil
}

// WaitVerify waits until the verify job id has ended, or ctx ends, and
// reports it then.
func (m *MirrorHandler) WaitVerify(ctx context.Context, id string) (VerifyStatus, error) {
	j := m.verifyJob(id)
	if j == nil {
		return VerifyStatus{}, ErrUnknownVerify
	}
	select {
	case <-j.done:
	case <-ctx.Done():
	}
	return j.status(), nil
}

// CancelVerify cancels the verify job id and reports it once it has
// stopped (or ctx ends first); ErrUnknownVerify when there is no such
// job. The object being read when it is cancelled is not counted, and the
// status's Next resumes the job with it. Cancelling an ended job changes
// nothing.
func (m *MirrorHandler) CancelVerify(ctx context.Context, id string) (VerifyStatus, error) {
	j := m.verifyJob(id)
	if j == nil {
		return VerifyStatus{}, ErrUnknownVerify
	}
	j.cancel(errVerifyCancelled)
	select {
	case <-j.done:
	case <-ctx.Done():
	}
	return j.status(), nil
}

func (m *MirrorHandler) verifyJob(id string) *verifyJob {
	v := &m.adminInit().verifies
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.jobs[id]
}

// stopVerifies ends the verify jobs and waits for their goroutines; their
// statuses say where to resume.
func (m *MirrorHandler) stopVerifies() {
	a := m.adminInit()
	a.stop()
	// A Verify that saw the context alive has added its job by the time
	// the lock is free; later ones see it ended and start none.
	a.verifies.mu.Lock()
	a.verifies.mu.Unlock()
	a.verifies.wg.Wait()
}
