package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/httpmirror/httpmirror"
)

// verifyArgs are the arguments of "httpmirror cache verify".
type verifyArgs struct {
	prefix  string
	purge   bool
	rate    int64 // 0: the mirror's default
	from    string
	noWait  bool
	timeout time.Duration
}

// verify starts a verify job and, unless noWait, follows it until it
// ends (at most timeout): it prints each mismatched object as the job
// finds it, draws a progress line on a terminal, and ends with a summary
// and, when the job stopped early, the command that resumes it.
// Interrupted while it follows the job, it cancels the job, as warm does.
func (c *cacheCmd) verify(a verifyArgs) error {
	interrupted, stop := context.Background(), func() {}
	if !a.noWait {
		interrupted, stop = signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
	}
	req := map[string]any{"prefix": a.prefix, "purge": a.purge, "from": a.from}
	if a.rate > 0 {
		req["rate"] = a.rate
	}
	body, _ := json.Marshal(req)
	// The rate on the progress line is of the whole job: its clock starts
	// before the job does.
	bar := progressLine{w: c.stderr, on: c.tty && !c.json, start: time.Now()}
	var started struct {
		ID string `json:"id"`
	}
	raw, err := c.call("POST", "/verify", body, http.StatusAccepted, &started)
	if err != nil {
		return err
	}
	if a.noWait {
		if c.json {
			c.stdout.Write(raw)
		} else {
			fmt.Fprintln(c.stdout, started.ID)
		}
		return nil
	}
	deadline := time.Now().Add(a.timeout)
	var st httpmirror.VerifyStatus
	printed := 0
	c.ctx = interrupted
	for time.Now().Before(deadline) && interrupted.Err() == nil {
		// Answered once the job has ended, or after a second.
		raw, err = c.call("GET", "/verify/"+started.ID+"?wait=1s", nil, http.StatusOK, &st)
		if interrupted.Err() != nil {
			break
		}
		if err != nil {
			bar.clear()
			return err
		}
		if !c.json && printed < len(st.Mismatches) {
			bar.clear()
			printed = c.printMismatches(st, printed)
		}
		if bar.on {
			bar.show(verifyProgress(st, time.Since(bar.start)))
		}
		if st.State != httpmirror.VerifyRunning {
			break
		}
	}
	c.ctx = context.Background()
	bar.clear()
	if interrupted.Err() != nil {
		stop() // a second interrupt ends the command at once
		return c.cancelVerify(started.ID, a, printed)
	}
	if c.json {
		c.stdout.Write(raw)
	}
	if st.State == httpmirror.VerifyRunning {
		return fmt.Errorf("job %s still running after %s; follow it at %s/verify/%s", started.ID, a.timeout, c.admin, started.ID)
	}
	return c.verifyEnded(st, a, printed)
}

// verifyProgress is the progress line of a verify job that has run for d.
func verifyProgress(st httpmirror.VerifyStatus, d time.Duration) string {
	rate := float64(st.Bytes) / max(d.Seconds(), 0.001)
	line := fmt.Sprintf("verified %d objects  %s  %s/s  %d mismatched", st.Checked, humanBytes(st.Bytes), humanBytes(int64(rate)), st.Mismatched)
	if st.Errors > 0 {
		line += fmt.Sprintf("  %d errors", st.Errors)
	}
	return line
}

// printMismatches prints the job's mismatches from index from on, and
// returns how many it has printed in all.
func (c *cacheCmd) printMismatches(st httpmirror.VerifyStatus, from int) int {
	for _, mm := range st.Mismatches[from:] {
		expected := "sha256:" + mm.Expected
		if mm.Expected == "" {
			expected = "no digest"
		}
		line := fmt.Sprintf("mismatch: %s: expected %s, got sha256:%s", mm.Key, expected, mm.Got)
		if mm.Reason != "" {
			line += " (" + mm.Reason + ")"
		}
		if mm.Purged {
			line += " (purged)"
		}
		fmt.Fprintln(c.stdout, line)
	}
	return len(st.Mismatches)
}

// verifyEnded prints the summary of the ended job st and returns the
// error its outcome calls for.
func (c *cacheCmd) verifyEnded(st httpmirror.VerifyStatus, a verifyArgs, printed int) error {
	if !c.json {
		c.printMismatches(st, printed)
		if more := st.Mismatched - int64(len(st.Mismatches)); more > 0 {
			fmt.Fprintf(c.stdout, "… and %d more mismatched objects (see the mirror's log)\n", more)
		}
		fmt.Fprintf(c.stdout, "%d objects verified (%s): %d ok, %d digests recorded, %d mismatched", st.Checked, humanBytes(st.Bytes), st.OK, st.Recorded, st.Mismatched)
		if st.Purge {
			fmt.Fprintf(c.stdout, " (%d purged)", st.Purged)
		}
		fmt.Fprintf(c.stdout, ", %d changed meanwhile, %d errors\n", st.Changed, st.Errors)
	}
	for _, e := range st.ErrorSamples {
		fmt.Fprintf(c.stderr, "  error: %s: %s\n", e.Key, e.Error)
	}
	var errs []string
	if st.State != httpmirror.VerifyDone {
		why := st.State
		if st.Error != "" {
			why += ": " + st.Error
		}
		errs = append(errs, "the job stopped early ("+why+")")
		c.printResume(st, a)
	}
	if st.Mismatched > 0 {
		errs = append(errs, fmt.Sprintf("%d objects do not match their digest", st.Mismatched))
	}
	if st.Errors > 0 {
		errs = append(errs, fmt.Sprintf("%d objects could not be verified", st.Errors))
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

// printResume prints the command that resumes the job st where it
// stopped.
func (c *cacheCmd) printResume(st httpmirror.VerifyStatus, a verifyArgs) {
	if st.Next == "" {
		return
	}
	cmd := "httpmirror cache verify"
	if st.Prefix != "" {
		cmd += " " + st.Prefix
	}
	if a.purge {
		cmd += " --purge"
	}
	fmt.Fprintf(c.stderr, "resume with: %s --from %s\n", cmd, st.Next)
}

// cancelVerify cancels the verify job id of an interrupted verify, prints
// what it found and how to resume it, and returns the error that says so.
func (c *cacheCmd) cancelVerify(id string, a verifyArgs, printed int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c.ctx = ctx
	var st httpmirror.VerifyStatus
	raw, err := c.call("DELETE", "/verify/"+id, nil, http.StatusOK, &st)
	if err != nil {
		return fmt.Errorf("interrupted; cancelling job %s failed: %w", id, err)
	}
	if c.json {
		c.stdout.Write(raw)
	} else {
		c.printMismatches(st, printed)
	}
	c.printResume(st, a)
	return fmt.Errorf("interrupted; cancelled job %s after %d objects, %d mismatched", id, st.Checked, st.Mismatched)
}
