package s3_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/httpmirror/httpmirror/internal/testutil"
	"github.com/httpmirror/httpmirror/storage/s3"
)

// Open sends one HEAD; seeking costs nothing; a GET starts only when bytes
// are read, and continues while reads are sequential.
func TestReadsAreLazy(t *testing.T) {
	var ops opCounter
	b, _, _ := newBackend(t, counted(&ops))
	data := testutil.Payload(4, 100000)
	put(t, b, "example.com/lazy", data, info(int64(len(data))))
	ops.reset()

	o, err := b.Open(context.Background(), "example.com/lazy")
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	// What http.ServeContent does to learn the size, and all a HEAD does.
	if n, err := o.Seek(0, io.SeekEnd); err != nil || n != int64(len(data)) {
		t.Fatalf("Seek(0, End) = %d, %v", n, err)
	}
	o.Seek(0, io.SeekStart)
	if ops.count("HeadObject") != 1 || ops.count("GetObject") != 0 {
		t.Fatalf("after Open and seeks: %v; want one HEAD and no GET", ops.ops)
	}
	o.Seek(1000, io.SeekStart)
	buf := make([]byte, 500)
	for range 2 {
		if _, err := io.ReadFull(o, buf); err != nil {
			t.Fatal(err)
		}
	}
	if ops.count("GetObject") != 1 {
		t.Errorf("%d GETs for two sequential reads; want 1", ops.count("GetObject"))
	}
	if !bytes.Equal(buf, data[1500:2000]) {
		t.Errorf("second read differs from the stored bytes")
	}
	o.Seek(90000, io.SeekStart)
	if _, err := io.ReadFull(o, buf); err != nil || !bytes.Equal(buf, data[90000:90500]) {
		t.Fatalf("read after seek: %v", err)
	}
	if ops.count("GetObject") != 2 {
		t.Errorf("%d GETs after a seek; want 2", ops.count("GetObject"))
	}
}

// A reader whose object is replaced fails on its next ranged GET instead
// of splicing the new object's bytes into the old one's.
func TestReplacedObjectIsNotSpliced(t *testing.T) {
	b, _, _ := newBackend(t)
	old := testutil.Payload(5, 50000)
	put(t, b, "example.com/v", old, info(int64(len(old))))
	o, err := b.Open(context.Background(), "example.com/v")
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	nw := testutil.Payload(6, 50000)
	put(t, b, "example.com/v", nw, info(int64(len(nw))))
	o.Seek(100, io.SeekStart)
	_, err = o.Read(make([]byte, 10))
	if !errors.Is(err, s3.ErrChanged) {
		t.Errorf("read after replacement: %v; want ErrChanged", err)
	}
}

// cutTransport cuts the bodies of the first cuts GET responses after n
// bytes, as a dropped connection would, and counts GETs.
type cutTransport struct {
	n    int64
	cuts atomic.Int64
	gets atomic.Int64
}

func (c *cutTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err != nil || r.Method != http.MethodGet || r.URL.Query().Has("uploads") {
		return resp, err
	}
	c.gets.Add(1)
	if c.cuts.Add(-1) >= 0 {
		resp.Body = &cutBody{ReadCloser: resp.Body, left: c.n}
	}
	return resp, nil
}

type cutBody struct {
	io.ReadCloser
	left int64
}

func (b *cutBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, errors.New("connection reset by test")
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= int64(n)
	return n, err
}

// A GET body that breaks is resumed where it stopped, a bounded number of
// times; past that the read fails rather than return short data.
func TestBrokenReadsResume(t *testing.T) {
	ct := &cutTransport{n: 70000}
	b, _, _ := newBackend(t, func(c *s3.Config) { c.HTTPClient = &http.Client{Transport: ct} })
	data := testutil.Payload(8, 300000)
	put(t, b, "example.com/flaky", data, info(int64(len(data))))

	ct.cuts.Store(3)
	if got := readAll(t, b, "example.com/flaky"); !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes, differing from the stored ones", len(got))
	}
	if n := ct.gets.Load(); n != 4 {
		t.Errorf("%d GETs; want 4 (three cut, one whole)", n)
	}

	ct.cuts.Store(100)
	o, err := b.Open(context.Background(), "example.com/flaky")
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	got, err := io.ReadAll(o)
	if err == nil {
		t.Fatalf("read through endless cuts succeeded with %d bytes; want an error", len(got))
	}
	if !bytes.Equal(got, data[:len(got)]) {
		t.Errorf("bytes before the error differ from the stored ones")
	}
}
