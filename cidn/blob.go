package cidn

import (
	"crypto/md5"
	"encoding/hex"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/cache"

	"github.com/httpmirror/httpmirror"
)

// The Blob resource of the CIDN API.
const (
	// Group is the API group of CIDN's tasks.
	Group = "task.opencidn.daocloud.io"
	// Version is the API version of Blobs.
	Version = "v1alpha1"
	// Kind is the kind of a Blob.
	Kind = "Blob"
)

// BlobResource names the Blob resource. Blobs are cluster-scoped.
var BlobResource = schema.GroupVersionResource{Group: Group, Version: Version, Resource: "blobs"}

// Annotations of a Blob that CIDN reads.
const (
	// AnnotationDisplayName is the name the CIDN web UI shows: the
	// source URL.
	AnnotationDisplayName = "webui.task.opencidn.daocloud.io/display-name"
	// AnnotationGroup groups Blobs in the web UI: the origin host.
	AnnotationGroup = "webui.task.opencidn.daocloud.io/group"
	// AnnotationTags tags Blobs in the web UI.
	AnnotationTags = "webui.task.opencidn.daocloud.io/tags"
	// AnnotationTTL is how long CIDN keeps a finished Blob before it
	// deletes it (a Go duration).
	AnnotationTTL = "release.task.opencidn.daocloud.io/ttl"
)

// Phases of a Blob (status.phase). A Blob without a phase has not been
// picked up yet.
const (
	PhasePending   = "Pending"
	PhaseRunning   = "Running"
	PhaseSucceeded = "Succeeded"
	PhaseFailed    = "Failed"
	PhaseUnknown   = "Unknown"
)

// conditionRetryable is the condition type CIDN adds next to a failure it
// will retry; it says nothing about the failure itself.
const conditionRetryable = "Retryable"

// BlobName returns the name of the Blob that stores the object of cache key
// key: the hex MD5 of the key, so that every replica of the mirror (the
// original httpmirror's too, which names Blobs the same way) converges on
// one Blob per file. MD5 is a name here, not a safeguard: keys are public
// URLs.
func BlobName(key string) string {
	sum := md5.Sum([]byte(key))
	return hex.EncodeToString(sum[:])
}

// newBlob returns the Blob that asks CIDN to copy sourceURL to path in the
// configured destination. Numbers are int64, as unstructured objects need
// them to be.
func (c *Client) newBlob(name, path, sourceURL string) *unstructured.Unstructured {
	spec := map[string]any{
		"source": []any{map[string]any{"url": sourceURL}},
		"destination": []any{map[string]any{
			"name":         c.cfg.Destination,
			"path":         path,
			"skipIfExists": true,
		}},
	}
	if c.cfg.MaximumRunning > 0 {
		spec["maximumRunning"] = c.cfg.MaximumRunning
	}
	if c.cfg.MinimumChunkSize > 0 {
		spec["minimumChunkSize"] = c.cfg.MinimumChunkSize
	}
	u := &unstructured.Unstructured{Object: map[string]any{"spec": spec}}
	u.SetAPIVersion(Group + "/" + Version)
	u.SetKind(Kind)
	u.SetName(name)
	group := ""
	if p, err := url.Parse(sourceURL); err == nil {
		group = p.Host
	}
	u.SetAnnotations(map[string]string{
		AnnotationDisplayName: sourceURL,
		AnnotationGroup:       group,
		AnnotationTags:        "httpmirror",
		AnnotationTTL:         formatTTL(c.cfg.TTL),
	})
	return u
}

// formatTTL writes d as a Go duration without zero minutes and seconds:
// "1h" rather than "1h0m0s", as people write the annotation.
func formatTTL(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// blobStatus is the part of a Blob's status that waiting needs.
type blobStatus struct {
	Phase       string      `json:"phase,omitempty"`
	HandlerName string      `json:"handlerName,omitempty"`
	Progress    int64       `json:"progress,omitempty"`
	Total       int64       `json:"total,omitempty"`
	Conditions  []condition `json:"conditions,omitempty"`
}

type condition struct {
	Type    string `json:"type,omitempty"`
	Status  string `json:"status,omitempty"`
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
}

// statusOf decodes u's status. A status that does not decode (a CIDN
// version with other types) reads as one without a phase, which is waited
// on.
func statusOf(u *unstructured.Unstructured) blobStatus {
	var st blobStatus
	if m, ok := u.Object["status"].(map[string]any); ok {
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(m, &st); err != nil {
			return blobStatus{}
		}
	}
	return st
}

// failure returns the error a failed Blob with status st ends in: its first
// condition that has a message, skipping CIDN's Retryable marker (which
// says nothing about the failure itself), and the origin's status when that
// condition names one.
func failure(st blobStatus) *httpmirror.CIDNError {
	for _, c := range st.Conditions {
		if c.Type == conditionRetryable || (c.Message == "" && c.Reason == "") {
			continue
		}
		msg := c.Message
		if msg == "" {
			msg = c.Reason
		}
		return &httpmirror.CIDNError{Message: msg, SourceStatus: sourceStatus(c.Reason, c.Message)}
	}
	return &httpmirror.CIDNError{}
}

// statusInMessage finds an HTTP status in a failure message as CIDN's
// runners write them: "unexpected status code: got 404, want 200",
// "source returned error status code: 404", "server error (status 503)".
var statusInMessage = regexp.MustCompile(`(?i)\b(?:got|status(?: code)?:?)\s+([1-5][0-9][0-9])\b`)

// sourceStatus returns the origin status a failure condition reports, for
// the statuses a client must see as they are (404 and 410: the file does
// not exist), else 0. CIDN records no structured status: its runners put
// the origin's answer in the condition message (see statusInMessage). A
// reason of NotFound, SourceNotFound or Gone counts too, for runners that
// set one.
func sourceStatus(reason, message string) int {
	switch strings.ToLower(reason) {
	case "notfound", "sourcenotfound":
		return http.StatusNotFound
	case "gone":
		return http.StatusGone
	}
	for _, m := range statusInMessage.FindAllStringSubmatch(message, -1) {
		switch code, _ := strconv.Atoi(m[1]); code {
		case http.StatusNotFound, http.StatusGone:
			return code
		}
	}
	return 0
}

// asBlob returns the Blob an informer event carries, unwrapping the
// tombstone of a deletion the informer missed.
func asBlob(obj any) *unstructured.Unstructured {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	u, _ := obj.(*unstructured.Unstructured)
	return u
}

// trim keeps of a Blob what waiting needs (name, UID and status), so the
// informer's cache of every Blob in the cluster stays small: CIDN's specs
// and the managed fields can be many times larger.
func trim(obj any) (any, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return obj, nil
	}
	out := &unstructured.Unstructured{Object: map[string]any{}}
	out.SetAPIVersion(u.GetAPIVersion())
	out.SetKind(u.GetKind())
	out.SetName(u.GetName())
	out.SetUID(u.GetUID())
	out.SetResourceVersion(u.GetResourceVersion())
	if st, ok := u.Object["status"]; ok {
		out.Object["status"] = st
	}
	return out, nil
}

// defaultTTL is how long CIDN keeps a finished Blob of the mirror's.
const defaultTTL = time.Hour
