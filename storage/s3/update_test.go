package s3_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/httpmirror/httpmirror/internal/testutil"
	"github.com/httpmirror/httpmirror/storage"
	"github.com/httpmirror/httpmirror/storage/s3"
)

const digestHeader = "X-Httpmirror-Digest"

// withDigest returns i with the digest header a fill adds at the end.
func withDigest(i storage.Info) storage.Info {
	i.Header = http.Header{digestHeader: {"sha-256=:" + strings.Repeat("A", 43) + "=:"}}
	return i
}

// logBuffer collects a backend's log.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// count returns how many lines have s in them.
func (l *logBuffer) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.buf.String(), s)
}

func logTo(l *logBuffer) func(*s3.Config) {
	return func(cfg *s3.Config) {
		cfg.Logger = slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
}

// fillUpdated writes data to a new object under key created with info created,
// calls UpdateInfo with final before or after the body, and commits.
func fillUpdated(t *testing.T, b storage.Backend, key string, data []byte, created, final storage.Info, early bool) {
	t.Helper()
	ctx := context.Background()
	w, err := b.Create(ctx, key, created)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if early {
		if err := w.(storage.InfoUpdater).UpdateInfo(final); err != nil {
			t.Fatal(err)
		}
	}
	for off := 0; off < len(data); off += 1 << 20 {
		if _, err := w.Write(data[off:min(off+1<<20, len(data))]); err != nil {
			t.Fatal(err)
		}
	}
	if !early {
		if err := w.(storage.InfoUpdater).UpdateInfo(final); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(ctx); err != nil {
		t.Fatalf("Commit: %v", err)
	}
}

// Completing the metadata costs no request for a body sent in one PUT,
// and one CopyObject for a multipart upload, only when the metadata
// changed after the upload started.
func TestUpdateInfoRequests(t *testing.T) {
	small := testutil.Payload(1, 1000)
	large := testutil.Payload(2, s3.MinChunkSize+12345)
	for _, tc := range []struct {
		name        string
		data        []byte
		final       storage.Info
		early       bool // UpdateInfo before the first byte
		put, parts  int
		wantCopies  int
		wantUpdated bool
	}{
		{"one PUT", small, withDigest(info(1000)), false, 1, 0, 0, true},
		{"in parts", large, withDigest(info(int64(len(large)))), false, 0, 2, 1, true},
		{"in parts, metadata unchanged", large, info(int64(len(large))), false, 0, 2, 0, false},
		{"in parts, metadata known before the upload", large, withDigest(info(int64(len(large)))), true, 0, 2, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ops opCounter
			var logs logBuffer
			b, _, _ := newBackend(t, smallChunks, counted(&ops), logTo(&logs))
			fillUpdated(t, b, "example.com/f", tc.data, info(int64(len(tc.data))), tc.final, tc.early)
			if got := ops.count("PutObject"); got != tc.put {
				t.Errorf("%d PutObject; want %d", got, tc.put)
			}
			if got := ops.count("UploadPart"); got != tc.parts {
				t.Errorf("%d UploadPart; want %d", got, tc.parts)
			}
			if got := ops.count("CopyObject"); got != tc.wantCopies {
				t.Errorf("%d CopyObject; want %d", got, tc.wantCopies)
			}
			st, err := b.Stat(context.Background(), "example.com/f")
			if err != nil {
				t.Fatal(err)
			}
			if got := st.Header.Get(digestHeader) != ""; got != tc.wantUpdated {
				t.Errorf("digest recorded: %v; want %v", got, tc.wantUpdated)
			}
			if !bytes.Equal(readAll(t, b, "example.com/f"), tc.data) {
				t.Errorf("body differs")
			}
			if n := logs.count("level=WARN"); n != 0 {
				t.Errorf("%d warnings; want none:\n%s", n, logs.buf.String())
			}
		})
	}
}

// An object another writer published between the completion of an upload
// and the replacement of its metadata is left alone: the copy is
// conditional on the completed object's ETag.
func TestUpdateInfoKeepsConcurrentReplacement(t *testing.T) {
	var ops opCounter
	b, srv, bucket := newBackend(t, smallChunks, counted(&ops))
	key := "example.com/raced"
	okey, _ := b.ObjectKey(key)
	other := []byte("the other writer's body")
	ops.after = func(op string) {
		if op != "CompleteMultipartUpload" {
			return
		}
		// Another writer (a replica) commits its own version now.
		_, err := srv.Client().PutObject(context.Background(), &awss3.PutObjectInput{
			Bucket: &bucket, Key: &okey, Body: bytes.NewReader(other),
			Metadata: map[string]string{"httpmirror": `{"etag":"\"v2\"","contentType":"text/plain","storedAt":1}`},
		})
		if err != nil {
			t.Errorf("concurrent PutObject: %v", err)
		}
	}
	data := testutil.Payload(3, s3.MinChunkSize+100)
	fillUpdated(t, b, key, data, info(int64(len(data))), withDigest(info(int64(len(data)))), false)
	if got := ops.count("CopyObject"); got != 1 {
		t.Errorf("%d CopyObject; want 1 (refused)", got)
	}
	st, err := b.Stat(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	if st.ETag != `"v2"` || st.ContentType != "text/plain" || st.Header.Get(digestHeader) != "" || st.Size != int64(len(other)) {
		t.Errorf("Stat = %+v; want the other writer's object untouched", st)
	}
	if got := readAll(t, b, key); !bytes.Equal(got, other) {
		t.Errorf("body %q; want the other writer's", got)
	}
}

// A failed replacement of the metadata does not fail the commit: the
// object is whole, with the metadata its upload started with, and a
// warning says what is missing.
func TestUpdateInfoCopyFailureIsLogged(t *testing.T) {
	var ops opCounter
	var logs logBuffer
	b, _, _ := newBackend(t, smallChunks, counted(&ops), logTo(&logs))
	ops.before = func(op string) *http.Response {
		if op != "CopyObject" {
			return nil
		}
		// A bucket policy that denies the copy.
		body := `<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>copy denied (test)</Message></Error>`
		return &http.Response{
			StatusCode: http.StatusForbidden, Status: "403 Forbidden", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header:        http.Header{"Content-Type": {"application/xml"}},
			Body:          io.NopCloser(strings.NewReader(body)),
			ContentLength: int64(len(body)),
		}
	}
	data := testutil.Payload(4, s3.MinChunkSize+100)
	fillUpdated(t, b, "example.com/f", data, info(int64(len(data))), withDigest(info(int64(len(data)))), false)
	if ops.count("CopyObject") == 0 {
		t.Fatal("no CopyObject attempted")
	}
	st, err := b.Stat(context.Background(), "example.com/f")
	if err != nil || st.Size != int64(len(data)) || st.ETag != `"v1"` || st.Header.Get(digestHeader) != "" {
		t.Errorf("Stat = %+v, %v; want the object with the metadata it was created with", st, err)
	}
	if !bytes.Equal(readAll(t, b, "example.com/f"), data) {
		t.Errorf("body differs")
	}
	if n := logs.count("level=WARN"); n != 1 || logs.count("copy denied (test)") != 1 {
		t.Errorf("log:\n%s\nwant one warning with the error", logs.buf.String())
	}
}

// Objects too large for one CopyObject keep the metadata their upload
// started with; the first one is logged, the next ones not. Refresh leaves
// them alone too.
func TestUpdateInfoOverCopyLimit(t *testing.T) {
	var ops opCounter
	var logs logBuffer
	b, _, _ := newBackend(t, smallChunks, counted(&ops), logTo(&logs))
	s3.SetCopyLimit(b, s3.MinChunkSize)
	data := testutil.Payload(5, s3.MinChunkSize+100)
	for _, key := range []string{"example.com/big1", "example.com/big2"} {
		fillUpdated(t, b, key, data, info(int64(len(data))), withDigest(info(int64(len(data)))), false)
		st, err := b.Stat(context.Background(), key)
		if err != nil || st.Size != int64(len(data)) || st.Header.Get(digestHeader) != "" {
			t.Errorf("Stat(%s) = %+v, %v; want the metadata it was created with", key, st, err)
		}
	}
	if n := ops.count("CopyObject"); n != 0 {
		t.Errorf("%d CopyObject; want none", n)
	}
	if n := logs.count("level=WARN"); n != 1 || logs.count("big1") != 1 {
		t.Errorf("log:\n%s\nwant one warning, naming the first object", logs.buf.String())
	}
	if err := b.Refresh(context.Background(), "example.com/big1", info(int64(len(data)))); err == nil || errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Refresh of an object over the copy limit: %v; want an error other than ErrNotFound", err)
	}
	if n := ops.count("CopyObject"); n != 0 {
		t.Errorf("%d CopyObject after Refresh; want none", n)
	}
}
