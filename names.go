package httpmirror

import (
	"time"

	"github.com/httpmirror/httpmirror/fill"
	"github.com/httpmirror/httpmirror/internal/pipeline"
	"github.com/httpmirror/httpmirror/policy"
)

// The names of the request pipeline (package internal/pipeline) that are
// part of httpmirror's API, and the names httpmirror 0.11 exported.

// ErrNotOK is returned when an upstream response status is not 200 OK. Every
// upstream status error matches it with errors.Is. It keeps the name and
// meaning of the original httpmirror package's ErrNotOK, so code written
// against that API keeps compiling and matching.
var ErrNotOK = fill.ErrNotOK

// Logger is a Println-style logger, the logging interface of the original
// httpmirror package. NewPrintlnHandler adapts one to log/slog.
type Logger interface {
	// Println logs a message with the provided arguments.
	Println(v ...interface{})
}

// Defaults of MirrorHandler's fields.
const (
	// DefaultMaxPathLength is the longest request path accepted when
	// MirrorHandler.MaxPathLength is zero.
	DefaultMaxPathLength = 8 << 10

	// DefaultFillConnections is MirrorHandler.FillConnections' default:
	// at most eight connections per download, as many as a download
	// accelerator (aria2c -x8) opens to a CDN that caps each connection.
	// A download starts with two and uses more only while they add to its
	// rate, so an origin whose link is the limit sees no more than help.
	DefaultFillConnections = 8

	// DefaultUpstreamMinRate is MirrorHandler.UpstreamMinRate's default:
	// 1 KiB per second, far below any origin worth mirroring, far above
	// one that trickles to keep a connection open.
	DefaultUpstreamMinRate = 1 << 10

	// DefaultNegativeTTL is how long an origin's 404 or 410 is remembered
	// when MirrorHandler.NegativeTTL is zero.
	DefaultNegativeTTL = 30 * time.Second

	// DefaultAuthCacheTTL is MirrorHandler.AuthCacheTTL's default: how
	// long an origin's answer about a credential is trusted.
	DefaultAuthCacheTTL = 5 * time.Minute

	// DefaultMaxVariants is MirrorHandler.MaxVariants' default: more than
	// the representations a negotiating origin offers (a few media
	// types, languages or encodings of a document), few enough that a
	// client sending ever new Accept values cannot fill the store with
	// copies of one URL.
	DefaultMaxVariants = 16

	// DefaultMaxRanges is how many ranges one request may ask for, after
	// overlapping and adjacent ones are merged, when MirrorHandler.MaxRanges
	// is zero. zsync, the heaviest multi-range client a file mirror meets
	// (AppImage updates, Ubuntu images), asks for up to 20 ranges per
	// request and gives up on any answer but 206; Apache httpd allows 200.
	// Each part of a multipart answer costs a seek and about a hundred
	// bytes of part header, so 64 parts cost a few KiB at most, while
	// answering thousands of tiny ranges is what makes a Range header a
	// denial-of-service tool.
	DefaultMaxRanges = pipeline.DefaultMaxRanges

	// MaxRedirects is how many redirects an upstream request follows; an
	// origin that redirects more often gets 502.
	MaxRedirects = pipeline.MaxRedirects
)

// DefaultRevalidatePatterns are the cache keys revalidated on every request
// when MirrorHandler.RevalidatePatterns is nil (see
// policy.DefaultRevalidatePatterns).
var DefaultRevalidatePatterns = policy.DefaultRevalidatePatterns

// StatusClientClosedRequest is logged (never sent) when the client went away
// before the response was complete, as nginx's 499.
const StatusClientClosedRequest = pipeline.StatusClientClosedRequest

// HitRequest is a request as a serving loop outside net/http parsed it,
// for ServeHit.
type HitRequest = pipeline.HitRequest

// HitResponse is the answer ServeHit gives: a 200 whose header fields
// (without Date and Connection, which the serving loop adds) are in
// Header, in wire form, and whose body is Body, or the first FileSize
// bytes of File (a stored object's file, open until HitSent). Body is
// shared with the cache and must not be modified; both are nil for HEAD.
// Reset it (or use a new one) for each request. When ServeHit declines a request, the
// response keeps its decision for ServeHTTP (see Handover).
type HitResponse = pipeline.HitResponse

// CIDN hands cache misses to a CIDN deployment (package cidn implements
// it); see MirrorHandler.CIDN.
type CIDN = pipeline.CIDN

// CIDNTransfer is a CIDN transfer that a request follows.
type CIDNTransfer = pipeline.CIDNTransfer

// CIDNError is how a CIDN transfer that failed ends: 502 Bad Gateway with
// the failure's message, or the origin's 404 or 410 when the failure says
// the file does not exist there.
type CIDNError = pipeline.CIDNError

var (
	// ErrCIDNUnavailable is matched by the errors of CIDN transfers that
	// could not be started or followed (the API server is unreachable or
	// refuses the request). The mirror then fetches the file itself.
	ErrCIDNUnavailable = pipeline.ErrCIDNUnavailable

	// ErrCIDNDeleted is matched by the error of a CIDN transfer whose Blob
	// was deleted before it succeeded or failed. 502.
	ErrCIDNDeleted = pipeline.ErrCIDNDeleted
)

// Coordinator shares the misses of replicas that serve from one store
// (package cluster implements it); see MirrorHandler.Coordinator.
type Coordinator = pipeline.Coordinator

// Coordination is one fill's part in the coordination of its key.
type Coordination = pipeline.Coordination

// PeerPrefix starts the paths PeerHandler answers: GET /peer/<key>.
const PeerPrefix = pipeline.PeerPrefix

// StatusNotFilling is PeerHandler's answer for a key this replica neither
// fills nor stores: 421 Misdirected Request, the server is not the one
// that can answer. The asking replica then looks again at who fills it.
const StatusNotFilling = pipeline.StatusNotFilling
