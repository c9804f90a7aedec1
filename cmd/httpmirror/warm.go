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

// warm starts a prefetch job of urls and, unless noWait, follows it until
// it is done (at most timeout), drawing a progress line on a terminal.
// Interrupted (SIGINT, SIGTERM) while it follows the job, it cancels the
// job before it exits: whoever stops warm wants the downloads stopped, not
// left running in the mirror.
func (c *cacheCmd) warm(urls []string, noWait bool, timeout time.Duration) error {
	interrupted, stop := context.Background(), func() {}
	if !noWait {
		// Caught from before the job is created: an interrupt while the
		// POST is under way cancels the job once its id is known.
		interrupted, stop = signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
	}
	body, _ := json.Marshal(urls)
	var started struct {
		ID      string                  `json:"id"`
		Error   string                  `json:"error"`
		Invalid []httpmirror.InvalidURL `json:"invalid"`
	}
	raw, err := c.call("POST", "/prefetch", body, http.StatusAccepted, &started)
	if err != nil {
		for _, bad := range started.Invalid {
			fmt.Fprintf(c.stderr, "  %s: %s\n", urls[bad.Index], bad.Reason)
		}
		return err
	}
	if noWait {
		if c.json {
			c.stdout.Write(raw)
		} else {
			fmt.Fprintln(c.stdout, started.ID)
		}
		return nil
	}
	bar := progressLine{w: c.stderr, on: c.tty && !c.json}
	deadline := time.Now().Add(timeout)
	var st httpmirror.PrefetchStatus
	c.ctx = interrupted
	for time.Now().Before(deadline) && interrupted.Err() == nil {
		// The API answers once the job is done, or after a second: the
		// progress line moves once a second while the job runs. Only the
		// counts: a job of 10,000 URLs would send megabytes a second.
		raw, err = c.call("GET", "/prefetch/"+started.ID+"?wait=1s&urls=none", nil, http.StatusOK, &st)
		if interrupted.Err() != nil {
			break
		}
		if err != nil {
			bar.clear()
			return err
		}
		bar.draw(st)
		if st.State == "done" {
			break
		}
	}
	c.ctx = context.Background()
	bar.clear()
	if interrupted.Err() != nil {
		stop() // a second interrupt ends the command at once
		return c.cancelJob(started.ID)
	}
	if st.State != "done" {
		if c.json {
			c.stdout.Write(raw)
		}
		return fmt.Errorf("job %s still running after %s; follow it at %s/prefetch/%s", started.ID, timeout, c.admin, started.ID)
	}
	// Once done, the URLs to report: those that failed or were cancelled,
	// or every one for --json, whose answer is the API's whole status.
	listed := "failed,cancelled"
	if c.json {
		listed = "all"
	}
	if raw, err = c.call("GET", "/prefetch/"+started.ID+"?urls="+listed, nil, http.StatusOK, &st); err != nil {
		return err
	}
	if c.json {
		c.stdout.Write(raw)
	}
	if !c.json {
		fmt.Fprintf(c.stdout, "%d URLs: %d fetched, %d already cached, %d not storable, %d failed", st.Total, st.Done, st.Cached, st.NotStored, st.Failed)
		if st.Cancelled > 0 {
			fmt.Fprintf(c.stdout, ", %d cancelled", st.Cancelled)
		}
		fmt.Fprintf(c.stdout, "; %s\n", humanBytes(st.Bytes))
	}
	for _, u := range st.URLs {
		if u.State == httpmirror.PrefetchFailed || u.State == httpmirror.PrefetchCancelled {
			fmt.Fprintf(c.stderr, "  %s: %s: %s\n", u.State, u.URL, u.Error)
		}
	}
	if st.Failed > 0 || st.Cancelled > 0 {
		return errors.New("some URLs failed or were cancelled")
	}
	return nil
}

// cancelJob cancels the prefetch job id of an interrupted warm and
// returns the error that says so.
func (c *cacheCmd) cancelJob(id string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c.ctx = ctx
	var st httpmirror.PrefetchStatus
	q := "?urls=none"
	if c.json {
		q = ""
	}
	raw, err := c.call("DELETE", "/prefetch/"+id+q, nil, http.StatusOK, &st)
	if err != nil {
		return fmt.Errorf("interrupted; cancelling job %s failed: %w", id, err)
	}
	if c.json {
		c.stdout.Write(raw)
	}
	return fmt.Errorf("interrupted; cancelled job %s: %d of %d URLs cancelled, %d had ended", id, st.Cancelled, st.Total, st.Ended()-st.Cancelled)
}

// progressLine redraws one line of a terminal with "\r": a prefetch job
// is one aggregate (URLs ended, bytes, rate), so a line is all it needs.
type progressLine struct {
	w     interface{ Write([]byte) (int, error) }
	on    bool
	width int // of the last line drawn
	start time.Time
}

func (p *progressLine) draw(st httpmirror.PrefetchStatus) {
	if !p.on {
		return
	}
	if p.start.IsZero() {
		p.start = time.Now()
	}
	ended := st.Ended()
	const cells = 24
	filled := 0
	if st.Total > 0 {
		filled = cells * ended / st.Total
	}
	rate := float64(st.Bytes) / max(time.Since(p.start).Seconds(), 0.001)
	line := fmt.Sprintf("[%s%s] %d/%d URLs  %s of %s  %s/s", strings.Repeat("#", filled), strings.Repeat("-", cells-filled),
		ended, st.Total, humanBytes(st.Bytes), sizeOrUnknown(st.Size), humanBytes(int64(rate)))
	if st.Failed > 0 {
		line += fmt.Sprintf("  %d failed", st.Failed)
	}
	p.show(line)
}

// show replaces the line drawn last with line.
func (p *progressLine) show(line string) {
	pad := max(p.width-len(line), 0)
	fmt.Fprintf(p.w, "\r%s%s", line, strings.Repeat(" ", pad))
	p.width = len(line)
}

// clear erases the line, so that what follows starts on a clean one.
func (p *progressLine) clear() {
	if p.on && p.width > 0 {
		fmt.Fprintf(p.w, "\r%s\r", strings.Repeat(" ", p.width))
		p.width = 0
	}
}

// humanBytes formats a byte count with binary units.
func humanBytes(n int64) string {
	const units = "KMGTPE"
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	f, i := float64(n), -1
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	return fmt.Sprintf("%.1f %ciB", f, units[i])
}

func sizeOrUnknown(n int64) string {
	if n < 0 {
		return "unknown size"
	}
	return humanBytes(n)
}
