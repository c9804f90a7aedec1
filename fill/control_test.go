package fill_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"

	"github.com/httpmirror/httpmirror/fill"
	"github.com/httpmirror/httpmirror/internal/testutil"
	"github.com/httpmirror/httpmirror/storage/memory"
)

// Progress reports a fill's bytes and size while it runs; Cancel stops
// only the fills it matches, which then store nothing, and the next miss
// of the key starts a new fill.
func TestProgressAndCancel(t *testing.T) {
	store := memory.New()
	g := fill.NewGroup(store, fill.Options{})
	block := make(chan struct{})
	defer close(block)
	data := testutil.Payload(6, 100000)
	stalling := func(w *io.PipeWriter, data []byte) {
		w.Write(data[:1000])
		<-block
		w.Write(data[1000:])
		w.Close()
	}
	a := &memSource{data: data, feed: stalling}
	b := &memSource{data: data, feed: stalling}
	fa, _ := g.Miss("example.com/a", a.source())
	defer fa.Release()
	fb, _ := g.Miss("example.com/b", b.source())
	defer fb.Release()
	joiner, joined := g.Miss("example.com/a", a.source())
	defer joiner.Release()
	if !joined {
		t.Fatal("second miss of example.com/a did not join")
	}
	for _, f := range []*fill.Fill{fa, fb} {
		f.Header(context.Background())
		if _, err := f.Available(context.Background(), 999); err != nil {
			t.Fatal(err)
		}
	}
	progress := g.Progress()
	if len(progress) != 2 {
		t.Fatalf("Progress lists %d fills; want 2", len(progress))
	}
	for _, p := range progress {
		wantReaders := 1
		if p.Key == "example.com/a" {
			wantReaders = 2
		}
		if p.Bytes != 1000 || p.Size != int64(len(data)) || p.Op != "miss" || p.URL != "mem://object" || p.Started.IsZero() || p.Readers != wantReaders {
			t.Errorf("Progress %+v; want 1000 of %d bytes, a miss of mem://object with %d readers", p, len(data), wantReaders)
		}
	}

	done := g.Cancel(func(k string) bool { return k == "example.com/a" }, nil)
	if len(done) != 1 {
		t.Fatalf("Cancel stopped %d fills; want 1", len(done))
	}
	<-done[0]
	if _, err := io.ReadAll(joiner.NewReader(context.Background())); !errors.Is(err, fill.ErrCancelled) {
		t.Errorf("reader of the cancelled fill: %v; want ErrCancelled", err)
	}
	if got := g.Progress(); len(got) != 1 || got[0].Key != "example.com/b" {
		t.Errorf("Progress after Cancel = %+v; want only example.com/b", got)
	}
	if _, err := store.Stat(context.Background(), "example.com/a"); err == nil {
		t.Error("the cancelled fill was stored")
	}
	// The key is free for a new fill.
	again := &memSource{data: data}
	f2, joined := g.Miss("example.com/a", again.source())
	defer f2.Release()
	if joined {
		t.Fatal("miss after Cancel joined the cancelled fill")
	}
	if got, err := io.ReadAll(f2.NewReader(context.Background())); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("new fill: %d bytes, %v", len(got), err)
	}
	if again.calls.Load() != 1 {
		t.Errorf("new fill asked the origin %d times; want 1", again.calls.Load())
	}
}

// Withdraw stops a fill that only its caller used, storing nothing, and
// leaves one that another reader uses to run on for it and be stored.
func TestWithdraw(t *testing.T) {
	store := memory.New()
	g := fill.NewGroup(store, fill.Options{})
	block := make(chan struct{})
	data := testutil.Payload(7, 100000)
	stalling := func(w *io.PipeWriter, data []byte) {
		w.Write(data[:1000])
		<-block
		w.Write(data[1000:])
		w.Close()
	}
	alone := &memSource{data: data, feed: stalling}
	shared := &memSource{data: data, feed: stalling}
	fa, _ := g.Miss("example.com/alone", alone.source())
	fs, _ := g.Miss("example.com/shared", shared.source())
	reader, joined := g.Miss("example.com/shared", shared.source())
	defer reader.Release()
	if !joined {
		t.Fatal("second miss of example.com/shared did not join")
	}
	for _, f := range []*fill.Fill{fa, fs} {
		if _, err := f.Available(context.Background(), 999); err != nil {
			t.Fatal(err)
		}
	}
	fa.Withdraw()
	fs.Withdraw()
	<-fa.Done()
	if err := fa.Err(); !errors.Is(err, fill.ErrCancelled) {
		t.Errorf("withdrawn fill nobody else used: %v; want ErrCancelled", err)
	}
	close(block)
	if got, err := io.ReadAll(reader.NewReader(context.Background())); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("reader of the shared fill: %d bytes, %v; want all %d", len(got), err, len(data))
	}
	<-fs.Done()
	if !fs.Stored() {
		t.Error("the shared fill was not stored after its starter withdrew")
	}
	if _, err := store.Stat(context.Background(), "example.com/alone"); err == nil {
		t.Error("the withdrawn fill was stored")
	}
	if shared.calls.Load() != 1 || alone.calls.Load() != 1 {
		t.Errorf("origin asked %d and %d times; want once each", alone.calls.Load(), shared.calls.Load())
	}
}
