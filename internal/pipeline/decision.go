package pipeline

import (
	"github.com/httpmirror/httpmirror/fill"
	"github.com/httpmirror/httpmirror/policy"
	"github.com/httpmirror/httpmirror/storage"
)

// Action is what a Decision sends.
type Action uint8

const (
	// Fail answers Err, classified (errors.go).
	Fail Action = iota
	// Direct proxies the request to its origin; nothing is kept.
	Direct
	// Hit serves the stored object Obj.
	Hit
	// Redirect answers 302 to URL, a signed link to the stored object.
	Redirect
	// Revalidate asks the origin about the stale stored object Obj, and
	// serves it or what replaces it.
	Revalidate
	// Miss fetches an object storage does not have; who fetches it is the
	// fetch stage's decision (fetchers.go).
	Miss
	// Refetch fetches the object again, whatever storage holds: the origin
	// has one of another size (CheckSyncTimeout).
	Refetch
	// Stream serves the fill in progress Fill, whose object's metadata is
	// Info: to a peer replica that joined it (LookupPeer), or to a client
	// when storage cannot give the object the fill stored.
	Stream
	// Reopen looks up Target in storage again: the object is stored now
	// (a CIDN transfer, or a fill without TeeResponse, stored it). If it
	// cannot be opened, the fill Fill still serves it, or, without one,
	// the fill engine fetches it (own).
	Reopen
	// NotFilling tells a peer replica this one has nothing for it (421).
	NotFilling
)

// Decision is what one request gets: the result of Lookup, acted on by
// the dispatcher. It holds what Lookup opened (an object, a fill), which
// the stage that serves it uses and Close releases, so that nothing is
// resolved or opened twice, even when the hit loop hands the request to
// net/http.
type Decision struct {
	Action Action
	Req    *Request
	Target Target
	// Obj is the stored object (Hit, Revalidate), with its metadata Info
	// (Info alone for Redirect and Stream) and freshness Fresh.
	Obj   storage.Object
	Info  storage.Info
	Fresh policy.Freshness
	hot   *hotHeader // the object's prebuilt header, if it is hot
	// URL is Redirect's signed link.
	URL string
	// Fill is Stream's fill, and Reopen's when it has one.
	Fill *fill.Fill
	// Err is Fail's error, and Outcome what the request counts as when
	// it fails (OutcomeNone: as Classify says).
	Err     error
	Outcome Outcome
	// retried: a Miss that retries, with the client's own credential, a
	// fill another client started and the origin refused (see fetch).
	retried bool
	// own: a Miss the fill engine fetches from the origin itself, because
	// the fetcher that should have (CIDN) could not (see fetcher).
	own bool
	// taken: the hit loop answered the request (see HitResponse).
	taken bool
}

// fail makes d a Fail of err.
func (d *Decision) fail(err error) *Decision {
	d.Action, d.Err = Fail, err
	return d
}

// Close releases the object and the fill d holds, if any.
func (d *Decision) Close() {
	if d.Obj != nil {
		d.Obj.Close()
		d.Obj = nil
	}
	if d.Fill != nil {
		d.Fill.Release()
		d.Fill = nil
	}
}
