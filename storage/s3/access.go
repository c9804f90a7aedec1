package s3

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/httpmirror/httpmirror/storage"
)

// # Last access and hits on S3
//
// S3 keeps no time of last read, and writing one per read (a metadata
// copy, or a tag) would cost a write request per hit, and a copy of the
// object's bytes for metadata. Object tags are not offered by every store
// (R2 has none), and a tag read per listed object would make a listing
// page cost a thousand requests. So each process counts the reads of its
// Backend in memory, and writes them, for all objects at once, into one
// object of its own, its access record:
//
//	ROOTDIR/~~access/<random id>   gzip'd JSON: {"objects": {key: [last read (Unix ns), hits]}}
//
// every Config.AccessFlushInterval (5 minutes by default), and at Close:
// one PUT per interval however many reads, none while nothing was read.
// The record holds what this process counted since it started (its
// objects removed since left out), so a crash loses at most one interval
// of reads. A listing and a sweep of Expire read every process's record
// (one LIST and one GET each) and add them up: an object's last access is
// the latest of the records' and of its own store time, its hits their
// sum. A listing reuses the records it read for one interval.
//
// Replicas sharing a bucket count each other's reads this way: Expire
// writes its own record first and reads all the others', so it removes
// nothing another replica read before that replica's last flush. A read
// by another replica within the last flush interval is not seen yet: an
// object idle for --max-idle that another replica reads at the very
// moment of a sweep may be removed and fetched again.
//
// A process writes its record at least every hour while it holds counts,
// even without new reads. A record not written for three hours is a
// stopped process's: at its next flush, another process adopts it, under
// a claim (storage.Claimer) so that only one does: it reads it, deletes
// it, adds its counts to its own and writes its own. So the bucket holds
// about one record per running process, and no count is lost or counted
// twice, but for a process that dies between the delete and the write of
// its own record (the adopted counts are lost) and a process whose writes
// failed for three hours (its counts are then counted twice once it
// writes again).
//
// Expire also removes the records whose every read is before its cutoff,
// which no longer matter to it; their hits are then forgotten (a live
// process writes its whole record again at its next read).
const defaultAccessFlush = 5 * time.Minute

// Adoption of the records of stopped processes.
const (
	// accessStale is how long a record may go unwritten before it is
	// taken for a stopped process's.
	accessStale = 3 * time.Hour
	// adoptClaimStale is how old an adoption claim must be to be taken
	// over: its holder died mid-adoption.
	adoptClaimStale = 10 * time.Minute
)

// DefaultAccessFlushInterval is how often a Backend writes the reads it
// counted to its access record, unless Config.AccessFlushInterval says
// otherwise.
const DefaultAccessFlushInterval = defaultAccessFlush

// maxAccessRecord bounds an access record read back (compressed).
const maxAccessRecord = 256 << 20

// accessUse is an object's reads in a record: last read, Unix ns, and
// how many.
type accessUse struct{ last, hits int64 }

func (u accessUse) MarshalJSON() ([]byte, error) {
	return json.Marshal([2]int64{u.last, u.hits})
}

func (u *accessUse) UnmarshalJSON(b []byte) error {
	var v [2]int64
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	u.last, u.hits = v[0], v[1]
	return nil
}

// accessRecord is the content of an access record.
type accessRecord struct {
	Objects map[string]accessUse `json:"objects"`
}

// last returns the latest read of the record.
func (r accessRecord) last() int64 {
	var t int64
	for _, u := range r.Objects {
		t = max(t, u.last)
	}
	return t
}

// accessLog counts a Backend's reads and writes them to its record.
type accessLog struct {
	b        *Backend
	id       string // the record's name
	interval time.Duration
	now      func() time.Time

	stale time.Duration // accessStale, lowered by tests

	mu      sync.Mutex
	uses    map[string]accessUse // counted by this process
	dirty   bool                 // changed since the last flush
	lastPut time.Time            // when the record was last written
	readers map[string]int       // objects open, by key

	flushMu sync.Mutex // one flush at a time

	viewMu sync.Mutex
	view   map[string]accessUse // the other records, added up
	viewAt time.Time            // when view was read (zero: never)

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

func newAccessLog(b *Backend) *accessLog {
	var id [12]byte
	rand.Read(id[:])
	a := &accessLog{b: b, id: hex.EncodeToString(id[:]), interval: b.cfg.AccessFlushInterval, now: time.Now, stale: accessStale,
		uses: map[string]accessUse{}, readers: map[string]int{}, stop: make(chan struct{}), done: make(chan struct{})}
	if a.interval <= 0 {
		a.interval = DefaultAccessFlushInterval
	}
	go a.run()
	return a
}

// run flushes every interval until close.
func (a *accessLog) run() {
	defer close(a.done)
	t := time.NewTicker(a.interval)
	defer t.Stop()
	for {
		select {
		case <-a.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			if err := a.flush(ctx); err != nil {
				a.b.log.Warn("s3: writing the access record failed; retried at the next flush", "err", err)
			} else if _, err := a.adopt(ctx); err != nil {
				a.b.log.Warn("s3: adopting the access records of stopped processes failed; retried at the next flush", "err", err)
			}
			cancel()
		}
	}
}

// close stops the flushes and writes what is left.
func (a *accessLog) close() error {
	var err error
	a.once.Do(func() {
		close(a.stop)
		<-a.done
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err = a.flush(ctx)
	})
	return err
}

// opened records a read of key, which stays open until closed.
func (a *accessLog) opened(key string) {
	now := a.now().UnixNano()
	a.mu.Lock()
	u := a.uses[key]
	a.uses[key] = accessUse{max(u.last, now), u.hits + 1}
	a.readers[key]++
	a.dirty = true
	a.mu.Unlock()
}

// closed records that a reader of key is done.
func (a *accessLog) closed(key string) {
	a.mu.Lock()
	if a.readers[key]--; a.readers[key] <= 0 {
		delete(a.readers, key)
	}
	a.mu.Unlock()
}

// deleted forgets the reads of key: the object is gone.
func (a *accessLog) deleted(key string) {
	a.mu.Lock()
	if _, ok := a.uses[key]; ok {
		delete(a.uses, key)
		a.dirty = true
	}
	a.mu.Unlock()
}

// recordKey is the object key of the record name.
func (a *accessLog) recordKey(name string) string {
	return a.b.prefix + accessDir + "/" + name
}

// flush writes this process's record if it changed since the last flush,
// or holds counts and was last written a third of a.stale ago.
func (a *accessLog) flush(ctx context.Context) error {
	a.flushMu.Lock()
	defer a.flushMu.Unlock()
	a.mu.Lock()
	if !a.dirty && (len(a.uses) == 0 || time.Since(a.lastPut) < a.stale/3) {
		a.mu.Unlock()
		return nil
	}
	rec := accessRecord{Objects: make(map[string]accessUse, len(a.uses))}
	for k, u := range a.uses {
		rec.Objects[k] = u
	}
	a.dirty = false
	a.mu.Unlock()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if err := json.NewEncoder(zw).Encode(rec); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	key := a.recordKey(a.id)
	_, err := a.b.client.PutObject(ctx, &s3.PutObjectInput{Bucket: &a.b.bucket, Key: &key,
		Body: bytes.NewReader(buf.Bytes()), ContentType: aws.String("application/gzip")})
	a.mu.Lock()
	if err != nil {
		a.dirty = true
		a.mu.Unlock()
		return fmt.Errorf("s3: writing the access record %s: %w", key, err)
	}
	a.lastPut = time.Now()
	a.mu.Unlock()
	return nil
}

// adopt takes over the records not written for a.stale (see the top of
// this file) and returns how many it took.
func (a *accessLog) adopt(ctx context.Context) (int, error) {
	p := a.b.prefix + accessDir + "/"
	out, err := a.b.client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &a.b.bucket, Prefix: &p})
	if err != nil {
		return 0, fmt.Errorf("s3: listing the access records: %w", err)
	}
	adopted := 0
	for _, o := range out.Contents {
		key := aws.ToString(o.Key)
		id := strings.TrimPrefix(key, p)
		if id == a.id || o.LastModified == nil || time.Since(*o.LastModified) < a.stale {
			continue
		}
		ok, err := a.adoptOne(ctx, id, key)
		if err != nil {
			return adopted, err
		}
		if ok {
			adopted++
		}
	}
	if adopted > 0 {
		return adopted, a.flush(ctx)
	}
	return 0, nil
}

// adoptOne adopts the record id at key under a claim; false when
// another process holds the claim.
func (a *accessLog) adoptOne(ctx context.Context, id, key string) (bool, error) {
	name := "access-" + id
	if storage.ValidateClaimName(name) != nil {
		return false, nil // not a record of ours
	}
	stamp := []byte(time.Now().UTC().Format(time.RFC3339))
	cl, err := a.b.Claim(ctx, name, stamp)
	if errors.Is(err, storage.ErrClaimed) {
		t, perr := time.Parse(time.RFC3339, string(cl.Data))
		if cl.Version == "" || perr == nil && time.Since(t) < adoptClaimStale {
			return false, nil
		}
		// Its holder died mid-adoption.
		if cl, err = a.b.Swap(ctx, name, stamp, cl.Version); err != nil {
			return false, nil
		}
	} else if err != nil {
		return false, err
	}
	defer a.b.Release(context.WithoutCancel(ctx), name, cl.Version)
	rec, err := a.read(ctx, key)
	if err != nil {
		return false, err
	}
	// Deleted before the counts are written again: a crash in between
	// loses them rather than counting them twice.
	if _, err := a.b.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &a.b.bucket, Key: &key}); err != nil && !isNotFound(err) {
		return false, fmt.Errorf("s3: removing the adopted access record %s: %w", key, err)
	}
	a.mu.Lock()
	for k, u := range rec.Objects {
		v := a.uses[k]
		a.uses[k] = accessUse{max(v.last, u.last), v.hits + max(u.hits, 0)}
	}
	a.dirty = a.dirty || len(rec.Objects) > 0
	a.mu.Unlock()
	return true, nil
}

// others reads the other processes' records and adds them up; a record
// whose every read is before drop (when not zero) is removed instead.
func (a *accessLog) others(ctx context.Context, drop time.Time) (map[string]accessUse, error) {
	view := map[string]accessUse{}
	p := a.b.prefix + accessDir + "/"
	in := &s3.ListObjectsV2Input{Bucket: &a.b.bucket, Prefix: &p}
	for range claimPages {
		out, err := a.b.client.ListObjectsV2(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("s3: listing the access records: %w", err)
		}
		for _, o := range out.Contents {
			key := aws.ToString(o.Key)
			if strings.TrimPrefix(key, p) == a.id {
				continue
			}
			rec, err := a.read(ctx, key)
			if err != nil {
				return nil, err
			}
			if !drop.IsZero() && rec.last() < drop.UnixNano() {
				// Its process stopped, or read nothing since drop: the
				// record tells a sweep nothing. A live process writes
				// its whole record again once it reads.
				if _, err := a.b.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &a.b.bucket, Key: &key}); err != nil && !isNotFound(err) {
					return nil, fmt.Errorf("s3: removing the access record %s: %w", key, err)
				}
				continue
			}
			for k, u := range rec.Objects {
				v := view[k]
				view[k] = accessUse{max(v.last, u.last), v.hits + max(u.hits, 0)}
			}
		}
		if !aws.ToBool(out.IsTruncated) {
			break
		}
		in.ContinuationToken = out.NextContinuationToken
	}
	return view, nil
}

// read reads the record at key; a record that vanished meanwhile (its
// process's sweep removed it) is empty.
func (a *accessLog) read(ctx context.Context, key string) (accessRecord, error) {
	out, err := a.b.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &a.b.bucket, Key: &key})
	if isNotFound(err) {
		return accessRecord{}, nil
	}
	if err != nil {
		return accessRecord{}, fmt.Errorf("s3: reading the access record %s: %w", key, err)
	}
	defer out.Body.Close()
	zr, err := gzip.NewReader(io.LimitReader(out.Body, maxAccessRecord))
	var rec accessRecord
	if err == nil {
		err = json.NewDecoder(io.LimitReader(zr, 8*maxAccessRecord)).Decode(&rec)
	}
	if err != nil {
		// Not one of ours, or damaged: its reads are lost, not the
		// listing.
		a.b.log.Warn("s3: ignoring an unreadable access record", "record", key, "err", err)
		return accessRecord{}, nil
	}
	return rec, nil
}

// cachedOthers returns the other records added up, read again when the
// last read is older than the flush interval.
func (a *accessLog) cachedOthers(ctx context.Context) (map[string]accessUse, error) {
	a.viewMu.Lock()
	defer a.viewMu.Unlock()
	if a.view != nil && time.Since(a.viewAt) < a.interval {
		return a.view, nil
	}
	v, err := a.others(ctx, time.Time{})
	if err != nil {
		return nil, err
	}
	a.view, a.viewAt = v, time.Now()
	return v, nil
}

// annotate sets the last access and hits of the listed objects from view
// and this process's counts; an object's store time is its last access
// when nobody read it since.
func (a *accessLog) annotate(objs []storage.Info, view map[string]accessUse) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i := range objs {
		o := &objs[i]
		own, other := a.uses[o.Key], view[o.Key]
		last := max(own.last, other.last)
		o.LastAccess = o.StoredAt
		if t := time.Unix(0, last); last > 0 && t.After(o.StoredAt) {
			o.LastAccess = t
		}
		o.Hits = own.hits + other.hits
	}
}

// reading reports whether this process has key open.
func (a *accessLog) reading(key string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.readers[key] > 0
}

var _ storage.Expirer = (*Backend)(nil)

// Flush writes the reads this Backend counted to its access record now,
// instead of at the next interval.
func (b *Backend) Flush(ctx context.Context) error { return b.acc.flush(ctx) }

// Expire implements storage.Expirer. S3 keeps no order of access: a
// sweep lists every object under RootDir (one LIST request per thousand)
// and deletes the idle ones one request each. It first writes this
// process's access record and reads every other's, so that the reads of
// replicas sharing the bucket count (see the top of this file); records
// written before cutoff are removed. Objects open in this process are
// left alone; a reader in another replica that opened an object before
// the sweep fails at its next ranged GET.
func (b *Backend) Expire(ctx context.Context, cutoff time.Time, keep func(key string) bool) (int, error) {
	if err := b.acc.flush(ctx); err != nil {
		return 0, err
	}
	view, err := b.acc.others(ctx, cutoff)
	if err != nil {
		return 0, err
	}
	b.acc.viewMu.Lock()
	b.acc.view, b.acc.viewAt = view, time.Now()
	b.acc.viewMu.Unlock()
	removed := 0
	complete, err := storage.Walk(ctx, b, "", 1<<20, func(o storage.Info) error {
		if !o.LastAccess.Before(cutoff) || b.acc.reading(o.Key) || keep != nil && keep(o.Key) {
			return nil
		}
		if err := b.Delete(ctx, o.Key); err != nil {
			return err
		}
		removed++
		return nil
	})
	if err == nil && !complete {
		err = errors.New("s3: the listing did not end")
	}
	return removed, err
}
