package policy

import (
	"net/http"
	"strings"
	"time"

	"github.com/httpmirror/httpmirror/storage"
)

// HubHeaders are the Hugging Face Hub's file headers: the commit a file
// resolved to, and the ETag and size of a large file stored on its CDN.
// The Hub puts them on the redirect from /resolve/ to the CDN, not on the
// final response, and its clients (huggingface_hub) read them from a HEAD,
// so they are carried over from redirects, stored with the object, and
// updated by a revalidation.
var HubHeaders = []string{"X-Repo-Commit", "X-Linked-Etag", "X-Linked-Size"}

// KeptHeaders are the origin response headers stored with an object and
// replayed on every hit, besides ETag, Last-Modified and Content-Type.
// Vary is among them: downstream caches must learn what the object varies
// on (RFC 9110 section 12.5.5), and the mirror keys variants by it.
var KeptHeaders = append([]string{
	"Cache-Control",
	"Content-Disposition",
	"Content-Encoding",
	"Content-Language",
	"Expires",
	"Link",
	"Vary",
}, HubHeaders...)

// refreshedHeaders are the stored headers a 304 replaces (RFC 9111 section
// 4.3.4): freshness information and the Hub's file headers.
var refreshedHeaders = append([]string{"Cache-Control", "Expires"}, HubHeaders...)

// Info extracts the metadata httpmirror stores with an object from the
// origin's final response: size, validators, Content-Type and KeptHeaders,
// plus the HubHeaders found on the redirects that led to resp. StoredAt is
// now, the time of the response, which the object's age counts from
// (RFC 9111 section 4.2.3).
func Info(resp *http.Response, now time.Time) storage.Info {
	info := storage.Info{
		Size:        resp.ContentLength,
		ETag:        resp.Header.Get("ETag"),
		ContentType: resp.Header.Get("Content-Type"),
		StoredAt:    now,
	}
	if t, err := http.ParseTime(resp.Header.Get("Last-Modified")); err == nil {
		info.LastModified = t
	}
	for _, k := range KeptHeaders {
		if v := resp.Header.Values(k); len(v) > 0 {
			if info.Header == nil {
				info.Header = make(http.Header)
			}
			info.Header[k] = v
		}
	}
	for req := resp.Request; req != nil && req.Response != nil; req = req.Response.Request {
		for _, k := range HubHeaders {
			if v := req.Response.Header.Values(k); len(v) > 0 && info.Header.Get(k) == "" {
				if info.Header == nil {
					info.Header = http.Header{}
				}
				info.Header[k] = v
			}
		}
	}
	return info
}

// Refreshed returns info updated by the headers of a 304 response (RFC 9111
// section 4.3.4): freshness and Hub headers replace the stored ones,
// StoredAt restarts the object's age, and an operator's invalidation mark
// (InvalidatedHeader) is dropped.
func Refreshed(info storage.Info, h http.Header, now time.Time) storage.Info {
	info.StoredAt = now
	hdr := info.Header.Clone()
	if hdr == nil {
		hdr = http.Header{}
	}
	for _, k := range refreshedHeaders {
		if v := h.Values(k); len(v) > 0 {
			hdr[k] = v
		}
	}
	// The origin has confirmed the object: an operator's invalidation is
	// answered.
	delete(hdr, InvalidatedHeader)
	info.Header = hdr
	return info
}

// Validators returns the conditional request headers that revalidate a
// stored object (RFC 9110 section 13.1), or an empty header when it has no
// validator: the origin then answers with the whole object.
func Validators(info storage.Info) http.Header {
	h := http.Header{}
	if info.ETag != "" {
		h.Set("If-None-Match", info.ETag)
	}
	if !info.LastModified.IsZero() {
		h.Set("If-Modified-Since", info.LastModified.UTC().Format(http.TimeFormat))
	}
	return h
}

// StrongETag reports whether etag is a strong entity tag (RFC 9110 section
// 8.8.3): only those may validate a range (If-Range).
func StrongETag(etag string) bool {
	return etag != "" && !strings.HasPrefix(etag, "W/")
}

// IfRange returns the If-Range value that resumes a download of the object
// described by info: its ETag when strong (RFC 9110 section 13.1.5 forbids
// weak ones), else its Last-Modified date, else "" (not resumable).
func IfRange(info storage.Info) string {
	if StrongETag(info.ETag) {
		return info.ETag
	}
	if !info.LastModified.IsZero() {
		return info.LastModified.UTC().Format(http.TimeFormat)
	}
	return ""
}
