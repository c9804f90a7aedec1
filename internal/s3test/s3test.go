// Package s3test runs a real S3-compatible server for tests: versitygw with
// its posix backend on a temporary directory, listening on 127.0.0.1.
//
// The binary is built from the module proxy on first use (see Binary). A
// test package shares one server (Shared, stopped by StopShared in its
// TestMain) and gives each test a fresh bucket (Server.Bucket); a test that
// needs to stop the server starts its own (Start).
package s3test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mirrors3 "github.com/httpmirror/httpmirror/storage/s3"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// Region is the region the servers run in.
const Region = "us-east-1"

// Server is a running versitygw.
type Server struct {
	// Endpoint is the server's base URL, http://127.0.0.1:PORT.
	Endpoint string
	// Addr is the server's host:port.
	Addr string
	// AccessKey and SecretKey are the root credentials.
	AccessKey, SecretKey string
	// Dir is the posix backend's root: one directory per bucket.
	Dir string

	cmd     *exec.Cmd
	done    chan struct{}
	output  *syncBuffer
	stopped atomic.Bool
	client  *s3.Client
}

// Start builds (if needed) and starts a server on a free loopback port, with
// an empty root directory. The caller stops it with Stop.
func Start() (*Server, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "httpmirror-s3test-")
	if err != nil {
		return nil, fmt.Errorf("s3test: %w", err)
	}
	// The free port is found by listening and closing, so another process
	// can take it before versitygw binds it; a few attempts cover that.
	for attempt := 1; ; attempt++ {
		s, err := startOn(bin, dir)
		if err == nil {
			return s, nil
		}
		if attempt == 3 {
			os.RemoveAll(dir)
			return nil, err
		}
	}
}

// StartT starts a server that is stopped when t ends.
func StartT(t testing.TB) *Server {
	t.Helper()
	s, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

func startOn(bin, dir string) (*Server, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	s := &Server{
		Endpoint:  "http://" + addr,
		Addr:      addr,
		AccessKey: "httpmirror-test",
		SecretKey: "secret-" + randomHex(8),
		Dir:       dir,
		done:      make(chan struct{}),
		output:    &syncBuffer{},
	}
	s.cmd = exec.Command(bin, "--port", addr, "--region", Region, "--keep-alive", "--quiet", "posix", dir)
	s.cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY="+s.AccessKey, "ROOT_SECRET_KEY="+s.SecretKey)
	s.cmd.Stdout, s.cmd.Stderr = s.output, s.output
	dieWithParent(s.cmd)
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("s3test: starting versitygw: %w", err)
	}
	go func() { s.cmd.Wait(); close(s.done) }()
	if err := s.waitReady(30 * time.Second); err != nil {
		s.cmd.Process.Kill()
		<-s.done
		return nil, err
	}
	s.client = s3.New(s3.Options{
		Region:       Region,
		BaseEndpoint: aws.String(s.Endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(s.AccessKey, s.SecretKey, ""),
	})
	return s, nil
}

// waitReady polls until the server answers HTTP, it exits, or the timeout
// passes.
func (s *Server) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: time.Second}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := client.Get(s.Endpoint + "/")
		if err == nil {
			resp.Body.Close()
			return nil
		}
		select {
		case <-s.done:
			return fmt.Errorf("s3test: versitygw exited at start: %s", s.output.String())
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("s3test: versitygw not answering on %s after %s: %s", s.Addr, timeout, s.output.String())
		}
	}
}

// Stop kills the server and removes its directory. It is safe to call more
// than once.
func (s *Server) Stop() {
	if s.stopped.Swap(true) {
		return
	}
	s.cmd.Process.Kill()
	<-s.done
	os.RemoveAll(s.Dir)
}

// Client returns an SDK client for the server, for tests that look at the
// store directly.
func (s *Server) Client() *s3.Client { return s.client }

// NewBucket creates a bucket with a fresh random name and returns the name.
func (s *Server) NewBucket(ctx context.Context) (string, error) {
	name := "b" + randomHex(8)
	if _, err := s.client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		return "", fmt.Errorf("s3test: creating bucket: %w", err)
	}
	return name, nil
}

// Bucket creates a fresh bucket for t.
func (s *Server) Bucket(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	name, err := s.NewBucket(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return name
}

// Output returns what the server printed so far.
func (s *Server) Output() string { return s.output.String() }

// ObjectFile returns where the posix backend keeps object key of bucket.
func (s *Server) ObjectFile(bucket, key string) string {
	return filepath.Join(s.Dir, bucket, filepath.FromSlash(key))
}

var (
	sharedMu  sync.Mutex
	shared    *Server
	sharedErr error
)

// Shared returns the test package's shared server, starting it on first
// use. The package's TestMain stops it with StopShared after m.Run.
func Shared(t testing.TB) *Server {
	t.Helper()
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if shared == nil && sharedErr == nil {
		shared, sharedErr = Start()
	}
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	return shared
}

// StopShared stops the shared server, if one was started.
func StopShared() {
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if shared != nil {
		shared.Stop()
		shared = nil
	}
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("s3test: finding a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// syncBuffer collects the server's output, keeping the first 64 KiB.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := 64<<10 - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// StorageURL is httpmirror's storage URL for bucket on s, in the
// s3://ACCESS:SECRET@BUCKET.REGION/ROOT form with the server as
// regionendpoint and path-style requests, and root as the key prefix
// (empty for none).
func (s *Server) StorageURL(bucket, root string) string {
	return fmt.Sprintf("s3://%s:%s@%s.%s/%s?regionendpoint=%s&forcepathstyle=true",
		s.AccessKey, s.SecretKey, bucket, Region, root, s.Endpoint)
}

// Backend opens httpmirror's S3 backend on bucket, under the root
// directory root (may be empty), and closes it when the test ends.
func (s *Server) Backend(t testing.TB, bucket, root string) *mirrors3.Backend {
	t.Helper()
	cfg, err := mirrors3.ParseURL(s.StorageURL(bucket, root))
	if err != nil {
		t.Fatal(err)
	}
	b, err := mirrors3.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}
