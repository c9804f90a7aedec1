package policy

import (
	"net/http"
	"strings"

	"github.com/httpmirror/httpmirror/storage"
)

// SharedWithAuthorization reports whether a response with header h, to a
// request that carried Authorization, may be stored by a shared cache and
// served to other clients (RFC 9111 section 3.5): only when it says so
// with public, s-maxage or must-revalidate, and does not forbid storing.
func SharedWithAuthorization(h http.Header) bool {
	cc := ParseCacheControl(h)
	return !cc.NoStore && (cc.Public || cc.SMaxAge || cc.MustRevalidate)
}

// Authenticated reports whether resp answers a request that carried
// Authorization: the first request of its redirect chain, which is the
// client's. A redirect to another origin drops the header, but the
// response it leads to is still what the credential obtained (a signed
// CDN URL handed out to an authorised client).
func Authenticated(resp *http.Response) bool {
	req := FirstRequest(resp)
	return req != nil && len(req.Header["Authorization"]) > 0
}

// FirstRequest returns the request that started resp's redirect chain:
// the one the mirror sent, with the client's forwarded headers. It is nil
// for a response without a request.
func FirstRequest(resp *http.Response) *http.Request {
	req := resp.Request
	for req != nil && req.Response != nil && req.Response.Request != nil {
		req = req.Response.Request
	}
	return req
}

// NeedsAuthorization reports whether resp answers an authenticated request
// (see Authenticated) without allowing shared use: every response of its
// redirect chain must allow it (SharedWithAuthorization), since a
// redirect that does not, such as the Hugging Face Hub's from a gated
// file to a public CDN URL, is where the credential was checked. Such a
// response is never given to another client unless that client is
// authorised for it.
func NeedsAuthorization(resp *http.Response) bool {
	if !Authenticated(resp) {
		return false
	}
	for r := resp; r != nil; {
		if !SharedWithAuthorization(r.Header) {
			return true
		}
		if r.Request == nil {
			break
		}
		r = r.Request.Response
	}
	return false
}

// AuthScope is the part of an origin that one authorisation decision
// covers, for the origin host and escaped path of an object: on the
// Hugging Face Hub (huggingface.co, hf.co), where access is granted per
// repository, the repository ("models/ORG/NAME", "datasets/ORG/NAME" or
// "spaces/ORG/NAME"), whether the path is a file
// (/ORG/NAME/resolve/REV/FILE, /datasets/ORG/NAME/resolve/...) or the API
// (/api/models/ORG/NAME/revision/REV); elsewhere, and for Hub paths it
// does not recognise (the Hub's old top-level models without an
// organisation among them), the object's own path. Repository scopes
// never start with '/', paths always do, so the two never meet.
func AuthScope(host, path string) string {
	if host != "huggingface.co" && host != "hf.co" {
		return path
	}
	segs := strings.SplitN(strings.TrimPrefix(path, "/"), "/", 6)
	kind := "models"
	switch {
	case len(segs) > 1 && segs[0] == "api":
		switch segs[1] {
		case "models", "datasets", "spaces":
			kind, segs = segs[1], segs[2:]
		default:
			return path
		}
	case segs[0] == "datasets" || segs[0] == "spaces":
		kind, segs = segs[0], segs[1:]
	}
	// ORG/NAME, then what is asked of the repository.
	if len(segs) < 3 || !hubAction[segs[2]] || !repoPart(segs[0]) || !repoPart(segs[1]) {
		return path
	}
	return kind + "/" + segs[0] + "/" + segs[1]
}

// hubAction are the Hub's path segments that follow a repository id.
var hubAction = map[string]bool{
	"resolve": true, "blob": true, "raw": true, "tree": true, "revision": true,
	"commits": true, "refs": true, "paths-info": true, "xet-read-token": true,
}

// repoPart reports whether s is a plausible part of a repository id:
// non-empty, no dot segment, nothing escaped (which the Hub might read
// differently).
func repoPart(s string) bool {
	return s != "" && s != "." && s != ".." && !strings.Contains(s, "%")
}

// SameObject reports whether answer, the metadata of an origin's answer
// to an authorisation check (Info of the check's final response, which
// carries the HubHeaders of the redirects that led to it), identifies the
// stored object whose metadata is stored: the origin gave the credential
// that object, not some other page. It is the only proof an authorisation
// check accepts, because a 2xx proves nothing by itself: origins with a
// web interface answer a request they refuse with a redirect to a sign-in
// page, or with the sign-in page itself, and both end in 200.
//
// The proof is, in order: the same X-Linked-Etag (the Hugging Face Hub's
// id of a file on its CDN, given on the redirect an authorised request
// gets), or the same strong ETag; or, for an object stored with neither,
// the same Last-Modified and length. An object with a strong identifier
// that the answer does not repeat is not proven by a matching date, and an
// object with no validator at all can never be proven: it is not served
// from the cache to a credential the origin has not given it to.
func SameObject(stored, answer storage.Info) bool {
	strong := false
	if v := stored.Header.Get("X-Linked-Etag"); v != "" {
		strong = true
		if answer.Header.Get("X-Linked-Etag") == v && sameSize(stored.Header.Get("X-Linked-Size"), answer.Header.Get("X-Linked-Size")) {
			return true
		}
	}
	if e := stored.ETag; e != "" && !strings.HasPrefix(e, "W/") {
		strong = true
		if answer.ETag == e {
			return true
		}
	}
	if strong || stored.LastModified.IsZero() || stored.Size < 0 {
		return false
	}
	return answer.LastModified.Equal(stored.LastModified) && answer.Size == stored.Size
}

// sameSize reports whether two X-Linked-Size values agree: equal, or one
// of them absent.
func sameSize(a, b string) bool { return a == "" || b == "" || a == b }
