package cluster

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/httpmirror/httpmirror"
	"github.com/httpmirror/httpmirror/storage"
)

// newPeerClient returns the client peer requests go out with: no proxy,
// no redirects (a redirect would carry the secret elsewhere), no
// transparent decompression (the bytes are the object's, whatever their
// Content-Encoding), and a bound on the wait for the owner's response
// headers, which the owner sends once its origin answered.
func newPeerClient(lease time.Duration) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			ResponseHeaderTimeout: max(2*lease, time.Minute),
			DisableCompression:    true,
			MaxIdleConnsPerHost:   16,
			IdleConnTimeout:       90 * time.Second,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

var (
	// errNotFilling: the owner named by the lease neither fills nor
	// stores the key (it restarted, or its fill just ended).
	errNotFilling = errors.New("cluster: the lease's owner does not fill this key")
	// errPeerRefused: the owner refused this replica's secret.
	errPeerRefused = errors.New("cluster: the lease's owner refused the peer secret")
)

// peerURL is the URL of key on the peer listener at base.
func peerURL(base, key string) (string, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("cluster: lease names no peer URL: %q", base)
	}
	return u.Scheme + "://" + u.Host + (&url.URL{Path: httpmirror.PeerPrefix + key}).EscapedPath(), nil
}

// peerGet asks the replica at owner for key, with the fill's extra
// headers h. The origin's answers that the owner passes on (200, 206 and
// error statuses alike) are returned as they are; an owner that cannot be
// reached, does not fill the key or refuses the secret is an error.
func (n *Node) peerGet(ctx context.Context, owner, key string, h http.Header) (*http.Response, error) {
	u, err := peerURL(owner, key)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	for k, v := range h {
		req.Header[k] = v
	}
	req.Header.Set("Authorization", "Bearer "+n.secret)
	resp, err := n.client.Do(req)
	if err != nil {
		n.metrics.peerError("unreachable")
		return nil, fmt.Errorf("cluster: asking %s: %w", owner, err)
	}
	switch resp.StatusCode {
	case httpmirror.StatusNotFilling:
		drain(resp.Body)
		n.metrics.peerError("not_filling")
		return nil, errNotFilling
	case http.StatusUnauthorized, http.StatusForbidden:
		drain(resp.Body)
		n.metrics.peerError("refused")
		n.log.Error("cluster: a replica refused this replica's peer secret; every replica needs the same --peer-secret", "owner", owner)
		return nil, errPeerRefused
	}
	return resp, nil
}

func drain(body io.ReadCloser) {
	io.CopyN(io.Discard, body, 64<<10)
	body.Close()
}

// Handler returns the peer listener's handler: requests under
// httpmirror.PeerPrefix that carry the secret (Authorization: Bearer)
// go to peer (the mirror's PeerHandler); without it they get 401, with
// another one 403, and other paths 404. The comparison takes the same
// time whatever the secret sent.
func (n *Node) Handler(peer http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, httpmirror.PeerPrefix) {
			http.NotFound(w, r)
			return
		}
		token, ok := bearer(r.Header.Get("Authorization"))
		if !ok {
			n.metrics.peerRequest("unauthorized")
			w.Header().Set("WWW-Authenticate", `Bearer realm="httpmirror-peer"`)
			http.Error(w, "peer secret required", http.StatusUnauthorized)
			return
		}
		sum := sha256.Sum256([]byte(token))
		if subtle.ConstantTimeCompare(sum[:], n.auth[:]) != 1 {
			n.metrics.peerRequest("forbidden")
			http.Error(w, "wrong peer secret", http.StatusForbidden)
			return
		}
		n.metrics.peerRequest("served")
		peer.ServeHTTP(w, r)
	})
}

// bearer returns the token of an Authorization header of the Bearer
// scheme, whose name is matched in any case and may be followed by more
// than one space (RFC 9110 section 11.4: auth-scheme 1*SP token68; section
// 11.1: the scheme is case-insensitive).
func bearer(v string) (string, bool) {
	scheme, rest, ok := strings.Cut(v, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token := strings.TrimLeft(rest, " ")
	return token, token != ""
}

// objectResponse is a response of the stored object obj in place of a
// peer's or the origin's, for a fill's request: the whole object, or, for
// a resume (Range "bytes=N-"), the rest from N as a 206 with the object's
// validators, which the fill checks.
func objectResponse(obj storage.Object, rng string) *http.Response {
	info := obj.Info()
	h := http.Header{}
	for k, v := range info.Header {
		h[k] = v
	}
	if info.ETag != "" {
		h.Set("ETag", info.ETag)
	}
	if info.ContentType != "" {
		h.Set("Content-Type", info.ContentType)
	}
	if !info.LastModified.IsZero() {
		h.Set("Last-Modified", info.LastModified.UTC().Format(http.TimeFormat))
	}
	resp := &http.Response{
		Status: "200 OK", StatusCode: http.StatusOK,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Body: obj, ContentLength: info.Size,
	}
	if from, ok := rangeStart(rng); ok && from < info.Size {
		if _, err := obj.Seek(from, io.SeekStart); err == nil {
			resp.Status, resp.StatusCode = "206 Partial Content", http.StatusPartialContent
			resp.ContentLength = info.Size - from
			h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", from, info.Size-1, info.Size))
		}
	}
	h.Set("Content-Length", strconv.FormatInt(resp.ContentLength, 10))
	return resp
}

// rangeStart parses the "bytes=N-" Range a fill's resume sends.
func rangeStart(v string) (int64, bool) {
	s, ok := strings.CutPrefix(v, "bytes=")
	if !ok {
		return 0, false
	}
	s, ok = strings.CutSuffix(s, "-")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil && n >= 0
}
