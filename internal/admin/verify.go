package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/httpmirror/httpmirror"
)

// maxVerifyBody bounds a verify request's body: a resume token holds a
// key of up to 16 KiB, twice over and encoded.
const maxVerifyBody = 256 << 10

// verifyRequest is the JSON body of POST /verify; every field may be
// given in the query instead. Rate is a number of bytes per second or a
// string such as "64MiB".
type verifyRequest struct {
	Prefix *string         `json:"prefix"`
	Purge  *bool           `json:"purge"`
	Rate   json.RawMessage `json:"rate"`
	From   *string         `json:"from"`
}

// verify serves POST /verify: it starts a verify job of the stored objects
// under a prefix and answers 202 with its id. The audit line of the
// request says who started it, on which prefix and whether it purges;
// another one, when the job ends, says who started it and what came of it
// (each mismatched object has a line of its own in the mirror's log).
func (s *Server) verify(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		methodNotAllowed(w, "POST")
		return
	}
	opts, err := verifyOptions(w, r)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			writeError(w, http.StatusRequestEntityTooLarge, "request body over 256 KiB")
			return
		}
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	by, remote, log := auditedBy(r), r.RemoteAddr, s.log()
	opts.Done = func(st httpmirror.VerifyStatus) {
		level := slog.LevelInfo
		if st.Mismatched > 0 || st.Errors > 0 || st.State == httpmirror.VerifyFailed {
			level = slog.LevelWarn
		}
		log.Log(context.Background(), level, "admin verify end", "remote", remote, "by", by, "id", st.ID, "prefix", st.Prefix,
			"purge", st.Purge, "state", st.State, "checked", st.Checked, "bytes", st.Bytes, "ok", st.OK, "recorded", st.Recorded,
			"changed", st.Changed, "mismatched", st.Mismatched, "purged", st.Purged, "errors", st.Errors, "resumable", st.Next != "")
	}
	audit(r, "purge", opts.Purge, "resumed", opts.From != "")
	id, err := s.Mirror.Verify(opts)
	if err != nil {
		audit(r, "err", err.Error())
		s.fail(w, r, err)
		return
	}
	st, _ := s.Mirror.VerifyProgress(id)
	audit(r, "prefix", st.Prefix, "rate", st.Rate, "id", id)
	w.Header().Set("Location", "/verify/"+id)
	writeJSON(w, http.StatusAccepted, struct {
		ID     string `json:"id"`
		Prefix string `json:"prefix"`
		Purge  bool   `json:"purge"`
		Rate   int64  `json:"rate"`
		Status string `json:"status"`
	}{id, st.Prefix, st.Purge, st.Rate, "/verify/" + id})
}

// verifyOptions reads the job's options from the query and, where it
// has them, the JSON body.
func verifyOptions(w http.ResponseWriter, r *http.Request) (httpmirror.VerifyOptions, error) {
	q := r.URL.Query()
	opts := httpmirror.VerifyOptions{Prefix: q.Get("prefix"), From: q.Get("from")}
	if v := q.Get("purge"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return opts, errors.New("purge must be true or false")
		}
		opts.Purge = b
	}
	rate := q.Get("rate")
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxVerifyBody))
	if err != nil {
		return opts, err
	}
	if body = bytes.TrimSpace(body); len(body) > 0 {
		var req verifyRequest
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			return opts, errors.New(`the body is not a JSON object of prefix, purge, rate and from (such as {"prefix": "example.com/pool/", "purge": true, "rate": "64MiB"})`)
		}
		if req.Prefix != nil {
			opts.Prefix = *req.Prefix
		}
		if req.Purge != nil {
			opts.Purge = *req.Purge
		}
		if req.From != nil {
			opts.From = *req.From
		}
		if len(req.Rate) > 0 {
			if err := json.Unmarshal(req.Rate, &rate); err != nil {
				rate = string(req.Rate) // a number
			}
		}
	}
	if rate != "" {
		n, err := parseRate(rate)
		if err != nil {
			return opts, err
		}
		opts.Rate = n
	}
	return opts, nil
}

// parseRate parses a read rate in bytes per second: a number with an
// optional unit, B, KB, MB, GB (powers of 1000) or KiB, MiB, GiB (powers
// of 1024), and an optional "/s": "64MiB", "100MB/s", "1048576".
func parseRate(v string) (int64, error) {
	bad := errors.New("rate must be a positive number of bytes per second, such as 64MiB or 1048576")
	v = strings.TrimSuffix(strings.TrimSpace(v), "/s")
	i := strings.IndexFunc(v, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	num, unit := v, ""
	if i >= 0 {
		num, unit = v[:i], strings.TrimSpace(v[i:])
	}
	mult, ok := map[string]float64{
		"": 1, "b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9,
		"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30,
	}[strings.ToLower(unit)]
	f, err := strconv.ParseFloat(num, 64)
	if !ok || err != nil || f*mult < 1 || f*mult > math.MaxInt64/2 {
		return 0, bad
	}
	return int64(f * mult), nil
}

// verifyJob serves /verify/<id>: the job's status, or its cancel.
func (s *Server) verifyJob(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		s.verifyStatus(w, r)
	case http.MethodDelete:
		s.cancelVerify(w, r)
	default:
		methodNotAllowed(w, "GET, HEAD, DELETE")
	}
}

// verifyStatus answers with the job's status (see waitContext).
func (s *Server) verifyStatus(w http.ResponseWriter, r *http.Request) {
	ctx, cancel, ok := waitContext(w, r)
	if !ok {
		return
	}
	defer cancel()
	st, err := s.Mirror.WaitVerify(ctx, r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// cancelVerify cancels a job and answers with its status once it has
// stopped: at once, but for a read or a listing call of a storage backend
// that does not stop when asked, for which it waits at most 10 s.
func (s *Server) cancelVerify(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	audit(r, "id", id)
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	st, err := s.Mirror.CancelVerify(ctx, id)
	if err != nil {
		audit(r, "err", err.Error())
		s.fail(w, r, err)
		return
	}
	audit(r, "state", st.State, "prefix", st.Prefix, "checked", st.Checked, "mismatched", st.Mismatched, "purged", st.Purged)
	writeJSON(w, http.StatusOK, st)
}
