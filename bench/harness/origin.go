package main

// The origin: an HTTPS server on 127.0.0.1 that both proxies fetch from. It
// runs as a separate process (the harness binary started with "_origin") so
// that its TLS work does not share a Go scheduler with the clients that
// measure time to first byte.
//
// Every object is a window of one data file generated at start-up: the path
// /f/<name>/<size> is <size> bytes of the data file starting at an offset
// derived from <name>. Any name is a new URL, so each cold run asks both
// proxies for an object they have never seen, while the origin reads from
// the page cache and its disk is not what is measured. /c/<name>/<size> is
// the same object sent at most at the origin's -cap rate per request
// (pace.go).

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"io"
	"log"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// maxObject is the largest object the origin serves.
	maxObject = 1 << 30
	// offsetSlots and offsetStep place each object's window: offsets are
	// multiples of 16 KiB below 64 MiB, so objects with different names
	// almost always have different bytes.
	offsetSlots = 4096
	offsetStep  = 16 << 10
	// dataSize is the data file's size: the largest object at the largest
	// offset.
	dataSize = maxObject + offsetSlots*offsetStep
)

// objectStart returns where the object called name starts in the data file.
func objectStart(name string) int64 {
	h := fnv.New64a()
	io.WriteString(h, name)
	return int64(h.Sum64()%offsetSlots) * offsetStep
}

// objectPath returns the URL path of the object called name of size bytes.
func objectPath(name string, size int64) string {
	return "/f/" + name + "/" + strconv.FormatInt(size, 10)
}

// cappedPath returns the URL path of the object called name of size bytes
// sent at the origin's capped rate.
func cappedPath(name string, size int64) string {
	return "/c/" + name + "/" + strconv.FormatInt(size, 10)
}

// parseObjectPath is the inverse of objectPath and cappedPath.
func parseObjectPath(p string) (name string, size int64, capped, ok bool) {
	rest, found := strings.CutPrefix(p, "/f/")
	if !found {
		if rest, found = strings.CutPrefix(p, "/c/"); !found {
			return "", 0, false, false
		}
		capped = true
	}
	name, sz, found := strings.Cut(rest, "/")
	if !found || name == "" {
		return "", 0, false, false
	}
	size, err := strconv.ParseInt(sz, 10, 64)
	if err != nil || size < 0 || size > maxObject {
		return "", 0, false, false
	}
	return name, size, capped, true
}

// generateData writes the deterministic data file (ChaCha8 with a fixed
// seed), about a gigabyte, in a few seconds.
func generateData(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	var seed [32]byte
	copy(seed[:], "httpmirror benchmark data v1....")
	src := mrand.NewChaCha8(seed)
	buf := make([]byte, 4<<20)
	for left := int64(dataSize); left > 0; {
		n := min(left, int64(len(buf)))
		src.Read(buf[:n])
		if _, err := f.Write(buf[:n]); err != nil {
			f.Close()
			return err
		}
		left -= n
	}
	return f.Close()
}

// originStats is what the origin's stats endpoint reports.
type originStats struct {
	Gets    map[string]int64      `json:"gets"`    // GET requests per path
	Fetched map[string]fetchStats `json:"fetched"` // how each path was asked for
	Sent    map[string]int64      `json:"sent"`    // body bytes written per path
	Active  int64                 `json:"active"`  // requests being answered
}

// fetchStats tells whether a proxy fetched an object once. A proxy that
// fetches in ranged segments (httpmirror) makes many GETs for one object:
// a first one, without If-Range, for the whole object or from its first
// byte (its first segment), and ranged ones. It fetched each byte once
// when there was one first GET and no two ranges overlap. (The bytes the
// origin wrote, Sent, tell what it cost: a body cut short has had bytes
// written into socket buffers that nobody reads.)
type fetchStats struct {
	Whole   int64 `json:"whole"`   // first GETs: without If-Range, whole or from byte 0
	Ranged  int64 `json:"ranged"`  // GETs with a Range
	Overlap bool  `json:"overlap"` // two ranges asked for the same bytes
	ranges  [][2]int64
}

// once reports whether the object was fetched once, as above.
func (f fetchStats) once() bool { return f.Whole == 1 && !f.Overlap }

type origin struct {
	data    *os.File
	modTime time.Time
	capRate float64 // bytes per second per request for /c/ objects

	mu      sync.Mutex
	gets    map[string]int64
	fetched map[string]*fetchStats
	sent    map[string]*atomic.Int64
	active  atomic.Int64
}

func (o *origin) serve(w http.ResponseWriter, r *http.Request) {
	o.active.Add(1)
	defer o.active.Add(-1)
	name, size, capped, ok := parseObjectPath(r.URL.Path)
	if r.Method == http.MethodGet {
		w = &sentWriter{ResponseWriter: w, n: o.count(r, size)}
	}
	if !ok {
		http.NotFound(w, r)
		return
	}
	start := objectStart(name)
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("ETag", fmt.Sprintf(`"%x-%d"`, start, size))
	if capped {
		w = newPacedWriter(w, r.Context(), o.capRate)
	}
	http.ServeContent(w, r, "", o.modTime, io.NewSectionReader(o.data, start, size))
}

// sentWriter counts the body bytes written.
type sentWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (s *sentWriter) Write(p []byte) (int, error) {
	n, err := s.ResponseWriter.Write(p)
	s.n.Add(int64(n))
	return n, err
}

// count records a GET of an object of size bytes and returns the counter
// of the bytes sent for its path.
func (o *origin) count(r *http.Request, size int64) *atomic.Int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.gets[r.URL.Path]++
	sent := o.sent[r.URL.Path]
	if sent == nil {
		sent = &atomic.Int64{}
		o.sent[r.URL.Path] = sent
	}
	f := o.fetched[r.URL.Path]
	if f == nil {
		f = &fetchStats{}
		o.fetched[r.URL.Path] = f
	}
	rg := r.Header.Get("Range")
	if r.Header.Get("If-Range") == "" && (rg == "" || strings.HasPrefix(rg, "bytes=0-")) {
		f.Whole++
		if rg == "" {
			return sent
		}
	} else {
		f.Ranged++
	}
	var a, b int64
	if n, _ := fmt.Sscanf(rg, "bytes=%d-%d", &a, &b); n == 1 {
		b = size - 1 // bytes=a-
	} else if n != 2 {
		f.Overlap = true // not a single range: cannot tell, so say so
		return sent
	}
	b = min(b, size-1)
	for _, c := range f.ranges {
		if a <= c[1] && c[0] <= b {
			f.Overlap = true
		}
	}
	f.ranges = append(f.ranges, [2]int64{a, b})
	return sent
}

func (o *origin) stats(w http.ResponseWriter, r *http.Request) {
	o.mu.Lock()
	s := originStats{Gets: make(map[string]int64, len(o.gets)), Fetched: make(map[string]fetchStats, len(o.fetched)), Sent: make(map[string]int64, len(o.sent)), Active: o.active.Load()}
	for k, v := range o.gets {
		s.Gets[k] = v
	}
	for k, v := range o.sent {
		s.Sent[k] = v.Load()
	}
	for k, v := range o.fetched {
		s.Fetched[k] = *v
	}
	o.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(s)
}

// runOrigin is the origin process. It writes its CA certificate to -ca,
// prints "READY <https addr> <stats addr>" on stdout, and serves until its
// standard input closes (the harness went away) or it is signalled.
func runOrigin(args []string) error {
	fs := flag.NewFlagSet("_origin", flag.ContinueOnError)
	dataPath := fs.String("data", "", "data file")
	caPath := fs.String("ca", "", "where to write the certificate (PEM)")
	capRate := fs.Float64("cap", 25e6, "bytes per second per request for /c/ objects")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *capRate <= 0 {
		return errors.New("-cap must be positive")
	}
	data, err := os.Open(*dataPath)
	if err != nil {
		return err
	}
	if fi, err := data.Stat(); err != nil || fi.Size() < dataSize {
		return fmt.Errorf("data file %s is not %d bytes", *dataPath, int64(dataSize))
	}
	cert, err := selfSigned(*caPath)
	if err != nil {
		return err
	}
	o := &origin{data: data, modTime: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), capRate: *capRate, gets: map[string]int64{}, fetched: map[string]*fetchStats{}, sent: map[string]*atomic.Int64{}}

	tlsLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	statsLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           http.HandlerFunc(o.serve),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       5 * time.Minute,
		// HTTP/1.1 only: nginx cannot speak HTTP/2 to an upstream, so
		// both proxies pay the same protocol cost.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
		TLSConfig:    &tls.Config{Certificates: []tls.Certificate{cert}},
		ErrorLog:     log.New(io.Discard, "", 0),
	}
	statsSrv := &http.Server{Handler: http.HandlerFunc(o.stats), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 2)
	go func() { errc <- srv.ServeTLS(tlsLn, "", "") }()
	go func() { errc <- statsSrv.Serve(statsLn) }()
	fmt.Printf("READY %s %s\n", tlsLn.Addr(), statsLn.Addr())

	stdinClosed := make(chan struct{})
	go func() {
		io.Copy(io.Discard, bufio.NewReader(os.Stdin))
		close(stdinClosed)
	}()
	select {
	case err := <-errc:
		return err
	case <-stdinClosed:
		srv.Close()
		statsSrv.Close()
		return nil
	}
}

// selfSigned makes a certificate for 127.0.0.1 and writes it as PEM to
// caPath, for httpmirror's --upstream-ca-file.
func selfSigned(caPath string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "httpmirror benchmark origin"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	if err := os.WriteFile(caPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// originProc is the harness's handle on the origin process.
type originProc struct {
	*proc
	URL      string // https://127.0.0.1:port
	HostPort string
	CAFile   string
	roots    *x509.CertPool // trusts the origin, for direct downloads
	statsURL string
	client   *http.Client
}

// startOrigin starts the origin process from the harness's own binary;
// capRate is the rate of capped objects, in bytes per second.
func startOrigin(self, dataPath, caPath, logPath string, capRate float64) (*originProc, error) {
	p, stdout, err := startProcPipe("origin", logPath, self, "_origin", "-data", dataPath, "-ca", caPath,
		"-cap", strconv.FormatFloat(capRate, 'f', -1, 64))
	if err != nil {
		return nil, err
	}
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(stdout).ReadString('\n')
		line <- s
		io.Copy(io.Discard, stdout)
	}()
	var ready string
	select {
	case ready = <-line:
	case <-time.After(20 * time.Second):
		p.stop(time.Second)
		return nil, errors.New("origin did not start within 20s")
	}
	f := strings.Fields(ready)
	if len(f) != 3 || f[0] != "READY" {
		p.stop(time.Second)
		return nil, fmt.Errorf("origin did not start (said %q; see %s)", ready, logPath)
	}
	roots := x509.NewCertPool()
	if pemBytes, err := os.ReadFile(caPath); err != nil || !roots.AppendCertsFromPEM(pemBytes) {
		p.stop(time.Second)
		return nil, fmt.Errorf("origin certificate %s unreadable: %v", caPath, err)
	}
	return &originProc{
		proc:     p,
		roots:    roots,
		URL:      "https://" + f[1],
		HostPort: f[1],
		CAFile:   caPath,
		statsURL: "http://" + f[2] + "/",
		client:   &http.Client{Timeout: 10 * time.Second},
	}, nil
}

// stats fetches the origin's counters.
func (o *originProc) stats() (originStats, error) {
	var s originStats
	resp, err := o.client.Get(o.statsURL)
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	err = json.NewDecoder(resp.Body).Decode(&s)
	return s, err
}

// gets returns how many GETs the origin received for path (-1 if the
// origin could not be asked).
func (o *originProc) gets(path string) int64 {
	s, err := o.stats()
	if err != nil {
		return -1
	}
	return s.Gets[path]
}

// fetchedOnce reports whether a proxy fetched each byte at path once (see
// fetchStats); false if the origin could not be asked.
func (o *originProc) fetchedOnce(path string) bool {
	s, err := o.stats()
	return err == nil && s.Fetched[path].once()
}

// waitIdle waits, at most limit, until the origin answers no request.
func (o *originProc) waitIdle(limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if s, err := o.stats(); err == nil && s.Active == 0 {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// sent returns the body bytes the origin wrote for path (-1 if the origin
// could not be asked).
func (o *originProc) sent(path string) int64 {
	s, err := o.stats()
	if err != nil {
		return -1
	}
	return s.Sent[path]
}
