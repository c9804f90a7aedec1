package s3_test

import (
	"context"
	"os"
	"testing"

	"github.com/httpmirror/httpmirror/internal/s3test"
	"github.com/httpmirror/httpmirror/storage"
	"github.com/httpmirror/httpmirror/storage/s3"
	"github.com/httpmirror/httpmirror/storage/storagetest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	s3test.StopShared()
	os.Exit(code)
}

// newBackend returns a backend on a fresh bucket of the shared versitygw,
// with cfg's fields changed by configure.
func newBackend(t *testing.T, configure ...func(*s3.Config)) (*s3.Backend, *s3test.Server, string) {
	t.Helper()
	srv := s3test.Shared(t)
	bucket := srv.Bucket(t)
	cfg := s3.Config{
		Bucket:         bucket,
		Region:         s3test.Region,
		Endpoint:       srv.Endpoint,
		ForcePathStyle: true,
		AccessKey:      srv.AccessKey,
		SecretKey:      srv.SecretKey,
	}
	for _, c := range configure {
		c(&cfg)
	}
	b, err := s3.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b, srv, bucket
}

// The suite runs with S3's smallest parts, so that its bodies of
// storagetest.PartedSize go up in parts and the others in one request.
func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Backend {
		b, _, _ := newBackend(t, smallChunks)
		return b
	})
}
