package policy

import (
	"bytes"
	"crypto/md5"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"

	"github.com/httpmirror/httpmirror/storage"
)

// DigestHeader is the stored header (internal: never sent as it is, see
// Internal) that holds the SHA-256 of an object's stored bytes, verified
// against what its origin published or computed while it was fetched, in
// the form of an RFC 9530 Repr-Digest member: "sha-256=:BASE64:". Hits
// send it as the Repr-Digest header.
const DigestHeader = storage.DigestHeader

// FormatSHA256 returns the DigestHeader value of the SHA-256 sum.
func FormatSHA256(sum []byte) string {
	return "sha-256=:" + base64.StdEncoding.EncodeToString(sum) + ":"
}

// StoredSHA256 returns the SHA-256 kept in the metadata of a stored object,
// and false when it has none (it was stored before digests were kept) or
// the value is malformed.
func StoredSHA256(info storage.Info) ([]byte, bool) {
	v := info.Header.Get(DigestHeader)
	rest, ok := strings.CutPrefix(v, "sha-256=:")
	if !ok || !strings.HasSuffix(rest, ":") {
		return nil, false
	}
	sum, err := base64.StdEncoding.DecodeString(strings.TrimSuffix(rest, ":"))
	if err != nil || len(sum) != 32 {
		return nil, false
	}
	return sum, true
}

// Expected is a digest published for an object, in order of trust.
type Expected struct {
	Alg    string // "sha-256", "sha-512", "crc32c", "md5"
	Sum    []byte // the raw digest bytes
	Source string // where it came from: "url", "digest-path", "repr-digest", "content-digest", "linked-etag", "etag", "amz-checksum", "goog-hash", "content-md5"
}

// The algorithms Digests publishes and NewHash computes.
const (
	algSHA256 = "sha-256"
	algSHA512 = "sha-512"
	algCRC32C = "crc32c"
	algMD5    = "md5"
)

// sumSize is the digest length of each algorithm; a published value of
// another length is not that algorithm's digest and is dropped.
var sumSize = map[string]int{algSHA256: sha256.Size, algSHA512: sha512.Size, algCRC32C: crc32.Size, algMD5: md5.Size}

// castagnoli is the CRC-32C table: S3 and GCS compute crc32c with the
// Castagnoli polynomial (RFC 3720 appendix B.4), not IEEE's.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// NewHash returns a hash for alg ("sha-256", "sha-512", "crc32c"
// (Castagnoli, as S3 and GCS compute it), "md5"), nil for any other. Its
// Sum is the raw digest, as in Expected.Sum: crc32c's is big-endian.
func NewHash(alg string) hash.Hash {
	switch alg {
	case algSHA256:
		return sha256.New()
	case algSHA512:
		return sha512.New()
	case algCRC32C:
		return crc32.New(castagnoli)
	case algMD5:
		return md5.New()
	}
	return nil
}

// DigestRules are the operator's extra URL patterns (--digest-path).
type DigestRules struct{ Paths []*regexp.Regexp }

// ParseDigestPath compiles a --digest-path pattern: a Go regexp with the
// named groups (?P<alg>...) and (?P<hex>...), matched (unanchored unless
// the pattern anchors itself) against the cache key without its query:
// host and escaped path, as "example.com/objects/sha256/ab12...". The
// algorithm captured is matched case-insensitively against sha256, sha-256,
// sha512 and sha-512 when a key matches; any other name is reported by
// Digests as unknown, not refused here, since a pattern may capture
// several algorithms of which only some can be checked.
func ParseDigestPath(pattern string) (*regexp.Regexp, error) {
	re, err := regexp.Compile(pattern)
	if err != nil {
		// The syntax error's code ("missing closing )") says what is
		// wrong; its full text repeats the pattern and the package name.
		var se *syntax.Error
		if errors.As(err, &se) {
			return nil, fmt.Errorf("digest path pattern %q: %s", pattern, se.Code)
		}
		return nil, fmt.Errorf("digest path pattern %q: not a valid regular expression", pattern)
	}
	for _, g := range []string{"alg", "hex"} {
		if re.SubexpIndex(g) < 0 {
			return nil, fmt.Errorf("digest path pattern %q: no named group (?P<%s>...)", pattern, g)
		}
	}
	return re, nil
}

// maxUnknown bounds the names Digests reports as unknown, and maxName
// each name's length: they come from the origin and go to one log line.
const (
	maxUnknown = 16
	maxName    = 40
)

// digestSet collects candidates in order of trust, keeping each alg and
// sum once, at its most trusted position.
type digestSet struct {
	exp     []Expected
	unknown []string
}

// add appends a candidate whose sum has the algorithm's length; any other
// is dropped (a malformed value publishes nothing).
func (s *digestSet) add(alg string, sum []byte, source string) {
	if len(sum) != sumSize[alg] {
		return
	}
	for _, e := range s.exp {
		if e.Alg == alg && bytes.Equal(e.Sum, sum) {
			return
		}
	}
	s.exp = append(s.exp, Expected{Alg: alg, Sum: sum, Source: source})
}

// addHex adds a candidate given in hex; bad hex is dropped.
func (s *digestSet) addHex(alg, h, source string) {
	if len(h) != 2*sumSize[alg] {
		return
	}
	if sum, err := hex.DecodeString(h); err == nil {
		s.add(alg, sum, source)
	}
}

// addBase64 adds a candidate given in base64; bad base64 is dropped.
func (s *digestSet) addBase64(alg, b64, source string) {
	if sum, ok := decodeBase64(b64); ok {
		s.add(alg, sum, source)
	}
}

// unknownName records a published digest whose algorithm is not checked,
// as "source:name", once.
func (s *digestSet) unknownName(source, name string) {
	if len(name) > maxName {
		name = name[:maxName] + "..."
	}
	n := source + ":" + name
	if len(s.unknown) >= maxUnknown || slices.Contains(s.unknown, n) {
		return
	}
	s.unknown = append(s.unknown, n)
}

// Digests returns what is published for the object of key (host +
// escaped path, as the mirror's cache key; the query may follow with '?')
// fetched with response resp (whose redirect chain,
// resp.Request.Response..., may carry headers too), most trusted first,
// and the names of published digests whose algorithm it cannot check (for
// one debug line), as "source:name". resp may be a 200 or a 206 (a
// segment): then Content-Digest and Content-MD5, which cover only the
// part, and the storage services' checksums, which are not promised to
// cover the object, are ignored; Repr-Digest and the Hub's ETags, which
// describe the whole file, still count. resp may be nil: only the key is
// read.
//
// The mirror stores the bytes as the origin sent them, content coding
// included. Digests that name the content itself (the URL's, the Hugging
// Face ETags) describe the bytes without content coding, so they are only
// used for a response without Content-Encoding: an origin that compresses
// on the fly would otherwise make every fill fail, while skipping them
// only loses a check (of a .gz served with Content-Encoding: gzip, say,
// whose URL digest would have matched). The RFC 9530 fields and
// the storage services' checksums describe the bytes as sent, so they are
// not used when the transport decoded the body (resp.Uncompressed), nor
// GCS's hash when GCS decoded it (decompressive transcoding).
//
// A value that is malformed (wrong length, bad hex or base64) publishes
// nothing and is not reported; so is a multipart upload's composite S3
// checksum, which is no digest of the bytes.
func (r DigestRules) Digests(key string, resp *http.Response) (exp []Expected, unknown []string) {
	var s digestSet
	hostPath, _, _ := strings.Cut(key, "?")
	// A variant's key (VariantKey) names the same URL as its object.
	hostPath, _, _ = strings.Cut(hostPath, "#")
	host, path, _ := strings.Cut(hostPath, "/")

	identity := resp == nil || !coded(resp.Header)
	asSent := resp == nil || !resp.Uncompressed
	full := resp != nil && resp.StatusCode == http.StatusOK

	if identity {
		urlDigests(&s, "/"+path)
		for _, re := range r.Paths {
			pathDigest(&s, re, hostPath)
		}
	}
	if resp == nil {
		return s.exp, s.unknown
	}
	if asSent {
		fieldDigests(&s, resp.Header.Values("Repr-Digest"), "repr-digest")
		if full {
			fieldDigests(&s, resp.Header.Values("Content-Digest"), "content-digest")
		}
	}
	if identity {
		hubDigests(&s, host, resp)
	}
	if full && asSent {
		amzDigests(&s, resp.Header)
		googDigests(&s, resp.Header)
		if v := resp.Header.Values("Content-Md5"); len(v) == 1 {
			s.addBase64(algMD5, strings.TrimSpace(v[0]), "content-md5")
		}
	}
	return s.exp, s.unknown
}

// coded reports whether a response with header h has a content coding
// other than identity.
func coded(h http.Header) bool {
	for _, v := range h.Values("Content-Encoding") {
		for c := range strings.SplitSeq(v, ",") {
			if c = strings.TrimSpace(c); c != "" && !strings.EqualFold(c, "identity") {
				return true
			}
		}
	}
	return false
}

// urlDigests adds the digests that content-addressed stores put in the
// escaped path p: OCI and Docker registry blobs
// (/v2/<name>/blobs/<alg>:<hex>, OCI distribution spec "Pulling blobs"),
// apt's by-hash files (/by-hash/<SHA256|SHA512|MD5Sum>/<hex>), and
// Hugging Face-style blob stores (/blobs/<sha256 hex>).
func urlDigests(s *digestSet, p string) {
	segs := strings.Split(p, "/")
	n := len(segs)
	if n < 3 {
		return
	}
	last, parent := unescape(segs[n-1]), unescape(segs[n-2])
	switch {
	case parent == "blobs" && strings.Contains(last, ":"):
		// An OCI digest: algorithm ":" encoded, under /v2/<name>/ with a
		// name of at least one segment.
		if !slices.Contains(segs[:n-3], "v2") {
			return
		}
		alg, enc, _ := strings.Cut(last, ":")
		switch alg {
		case "sha256":
			s.addHex(algSHA256, enc, "url")
		case "sha512":
			s.addHex(algSHA512, enc, "url")
		default:
			if ociAlgorithm(alg) && enc != "" {
				s.unknownName("url", alg)
			}
		}
	case parent == "blobs" && len(last) == 2*sha256.Size && isHex(last):
		s.addHex(algSHA256, last, "url")
	case n >= 4 && unescape(segs[n-3]) == "by-hash" && isHex(last):
		switch strings.ToLower(parent) {
		case "sha256":
			s.addHex(algSHA256, last, "url")
		case "sha512":
			s.addHex(algSHA512, last, "url")
		case "md5sum":
			s.addHex(algMD5, last, "url")
		default:
			s.unknownName("url", parent)
		}
	}
}

// unescape returns the path segment seg unescaped, or as it is when it is
// not validly escaped: a client may send "sha256:" as "sha256%3A".
func unescape(seg string) string {
	if !strings.Contains(seg, "%") {
		return seg
	}
	if u, err := url.PathUnescape(seg); err == nil {
		return u
	}
	return seg
}

// ociAlgorithm reports whether a is an OCI digest algorithm name
// ([a-z0-9]+ components joined by [+._-]), so that only a real digest of
// an unknown algorithm is reported, not any blob name with a colon.
func ociAlgorithm(a string) bool {
	if a == "" || len(a) > maxName {
		return false
	}
	for i := 0; i < len(a); i++ {
		c := a[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case (c == '+' || c == '.' || c == '_' || c == '-') && i > 0 && i < len(a)-1:
		default:
			return false
		}
	}
	return true
}

// isHex reports whether s is a non-empty string of hex digits.
func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return s != ""
}

// pathDigest adds the digest an operator's pattern re finds in hostPath.
func pathDigest(s *digestSet, re *regexp.Regexp, hostPath string) {
	m := re.FindStringSubmatch(hostPath)
	ai, hi := re.SubexpIndex("alg"), re.SubexpIndex("hex")
	if m == nil || ai < 0 || hi < 0 || m[ai] == "" {
		return
	}
	switch strings.ToLower(m[ai]) {
	case "sha256", "sha-256":
		s.addHex(algSHA256, m[hi], "digest-path")
	case "sha512", "sha-512":
		s.addHex(algSHA512, m[hi], "digest-path")
	default:
		s.unknownName("digest-path", m[ai])
	}
}

// fieldDigests adds the members of an RFC 9530 Repr-Digest or
// Content-Digest field: a structured-field dictionary (RFC 8941 section
// 3.2) of algorithm keys and byte sequences, "sha-256=:BASE64:". A
// dictionary may be split over several field lines, and a key given
// twice keeps its last value. Parsing is lenient (keys in any case,
// parameters ignored) but never guesses: a member whose value is not a
// byte sequence is reported with its raw key, as is an algorithm other
// than sha-256 and sha-512 (the others RFC 9530 registers are deprecated
// checksums such as md5 and unixsum).
func fieldDigests(s *digestSet, values []string, source string) {
	type member struct{ alg, value string }
	var members []member
	for _, v := range values {
		for m := range strings.SplitSeq(v, ",") {
			m = strings.Trim(m, " \t")
			if m == "" {
				continue
			}
			k, val, _ := strings.Cut(m, "=")
			k = strings.Trim(k, " \t")
			var alg string
			switch strings.ToLower(k) {
			case algSHA256:
				alg = algSHA256
			case algSHA512:
				alg = algSHA512
			default:
				s.unknownName(source, k)
				continue
			}
			val, _, _ = strings.Cut(val, ";")
			val = strings.Trim(val, " \t")
			if len(val) < 2 || val[0] != ':' || val[len(val)-1] != ':' {
				s.unknownName(source, k)
				continue
			}
			if i := slices.IndexFunc(members, func(x member) bool { return x.alg == alg }); i >= 0 {
				members = slices.Delete(members, i, i+1)
			}
			members = append(members, member{alg, val[1 : len(val)-1]})
		}
	}
	for _, m := range members {
		s.addBase64(m.alg, m.value, source)
	}
}

// decodeBase64 decodes standard base64, with or without its padding and
// whatever its pad bits (RFC 8941 section 3.3.5 asks parsers to accept
// both).
func decodeBase64(v string) ([]byte, bool) {
	enc := base64.StdEncoding
	if !strings.HasSuffix(v, "=") {
		enc = base64.RawStdEncoding
	}
	b, err := enc.DecodeString(v)
	return b, err == nil && len(b) > 0
}

// maxChain bounds the redirect chain Digests walks; net/http's client
// stops after 10 redirects.
const maxChain = 20

// hubDigests adds the SHA-256 the Hugging Face Hub publishes for a large
// (LFS or Xet) file: X-Linked-Etag on the redirect from /resolve/ to the
// CDN, or the ETag of a response that is the file itself. Only Hub hosts
// mean this: elsewhere a 64-hex ETag is just an opaque validator. The
// nearest X-Linked-Etag wins, and an ETag is only used without one, since
// the CDN's own ETag may be another hash of the file (the Xet hash, sent
// as X-Xet-Hash), which would then never match.
func hubDigests(s *digestSet, keyHost string, resp *http.Response) {
	r := resp
	for range maxChain {
		if v := r.Header.Get("X-Linked-Etag"); v != "" && hubHost(responseHost(r, keyHost)) {
			if h := etagHex(v); h != "" {
				s.addHex(algSHA256, h, "linked-etag")
				return
			}
		}
		if r.Request == nil || r.Request.Response == nil {
			break
		}
		r = r.Request.Response
	}
	if !hubHost(responseHost(resp, keyHost)) {
		return
	}
	h := etagHex(resp.Header.Get("ETag"))
	if h == "" || strings.EqualFold(h, etagHex(resp.Header.Get("X-Xet-Hash"))) {
		return
	}
	s.addHex(algSHA256, h, "etag")
}

// responseHost returns the host that sent r: its request's, or for a
// response without one, the key's.
func responseHost(r *http.Response, keyHost string) string {
	if r.Request != nil && r.Request.URL != nil && r.Request.URL.Host != "" {
		return r.Request.URL.Host
	}
	return keyHost
}

// hubHost reports whether host (with an optional port) is the Hugging Face
// Hub's or one of its subdomains (cdn-lfs.huggingface.co,
// cas-bridge.xethub.hf.co).
func hubHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	for _, d := range []string{"huggingface.co", "hf.co"} {
		if host == d || strings.HasSuffix(host, "."+d) {
			return true
		}
	}
	return false
}

// etagHex returns the entity tag v without W/ and quotes when it is a
// SHA-256 in hex (64 hex digits), else "".
func etagHex(v string) string {
	v = strings.TrimSpace(v)
	v = strings.TrimPrefix(v, "W/")
	v = strings.Trim(v, `"`)
	if len(v) != 2*sha256.Size || !isHex(v) {
		return ""
	}
	return v
}

// amzDigests adds the checksums S3 (and S3-compatible stores) send when
// asked with x-amz-checksum-mode: ENABLED. A multipart upload's
// COMPOSITE checksum is a checksum of the parts' checksums, marked by
// x-amz-checksum-type or by a "-<parts>" suffix: it says nothing about
// the bytes and is skipped.
func amzDigests(s *digestSet, h http.Header) {
	if strings.EqualFold(strings.TrimSpace(h.Get("X-Amz-Checksum-Type")), "COMPOSITE") {
		return
	}
	for _, c := range []struct{ name, alg string }{
		{"sha256", algSHA256},
		{"crc32c", algCRC32C},
		{"crc32", ""},
		{"crc64nvme", ""},
		{"sha1", ""},
	} {
		v := strings.TrimSpace(h.Get("X-Amz-Checksum-" + c.name))
		if v == "" || strings.Contains(v, "-") {
			continue
		}
		if c.alg == "" {
			s.unknownName("amz-checksum", c.name)
			continue
		}
		s.addBase64(c.alg, v, "amz-checksum")
	}
}

// googDigests adds the hashes GCS sends in x-goog-hash ("crc32c=BASE64,
// md5=BASE64", on one line or several). They are of the stored object, so
// they are skipped when GCS decoded it for the response (decompressive
// transcoding: x-goog-stored-content-encoding differs from the response's
// Content-Encoding).
func googDigests(s *digestSet, h http.Header) {
	values := h.Values("X-Goog-Hash")
	if len(values) == 0 {
		return
	}
	if stored := strings.TrimSpace(h.Get("X-Goog-Stored-Content-Encoding")); stored != "" &&
		!strings.EqualFold(stored, "identity") && !strings.EqualFold(stored, strings.TrimSpace(h.Get("Content-Encoding"))) {
		return
	}
	for _, v := range values {
		for item := range strings.SplitSeq(v, ",") {
			name, val, ok := strings.Cut(strings.TrimSpace(item), "=")
			if !ok || name == "" {
				continue
			}
			switch strings.ToLower(name) {
			case algCRC32C:
				s.addBase64(algCRC32C, val, "goog-hash")
			case algMD5:
				s.addBase64(algMD5, val, "goog-hash")
			default:
				s.unknownName("goog-hash", name)
			}
		}
	}
}
