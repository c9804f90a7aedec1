package main

// Child processes: starting them in their own process group, stopping them
// (the whole group, so nginx's workers go too), and reading their memory.

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is a child process running in its own process group.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{}
	err  error // valid once done is closed

	stopOnce sync.Once
}

func newCmd(logPath, bin string, args ...string) (*exec.Cmd, *os.File, error) {
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout = lf
	cmd.Stderr = lf
	// A group of its own: ctrl-C in the terminal reaches the harness only,
	// which then stops every child in order. Pdeathsig kills the child if
	// the harness dies without cleaning up.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	return cmd, lf, nil
}

// startProc starts bin with its output going to logPath.
func startProc(name, logPath, bin string, args ...string) (*proc, error) {
	cmd, lf, err := newCmd(logPath, bin, args...)
	if err != nil {
		return nil, err
	}
	return launch(name, cmd, lf)
}

// startProcPipe is startProc with stdout returned as a pipe, and stdin a
// pipe that closes when the harness exits.
func startProcPipe(name, logPath, bin string, args ...string) (*proc, io.Reader, error) {
	cmd, lf, err := newCmd(logPath, bin, args...)
	if err != nil {
		return nil, nil, err
	}
	cmd.Stdout = nil
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		lf.Close()
		return nil, nil, err
	}
	if _, err := cmd.StdinPipe(); err != nil {
		lf.Close()
		return nil, nil, err
	}
	p, err := launch(name, cmd, lf)
	if err != nil {
		return nil, nil, err
	}
	return p, stdout, nil
}

func launch(name string, cmd *exec.Cmd, lf *os.File) (*proc, error) {
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: lf, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		lf.Close()
		close(p.done)
	}()
	return p, nil
}

// pid returns the process id, which is also its process group id.
func (p *proc) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the process, waits up to grace for it to exit, then
// kills what is left of its process group.
func (p *proc) stop(grace time.Duration) {
	p.stopOnce.Do(func() {
		pgid := p.pid()
		if !p.exited() {
			p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(grace):
			}
		}
		// Workers (nginx) may outlive their leader by a moment; the group
		// id stays reserved while any member lives.
		syscall.Kill(-pgid, syscall.SIGKILL)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
		}
	})
}

// groupPIDs lists the live processes of p's process group.
func (p *proc) groupPIDs() []int {
	pgid := p.pid()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// Fields after the command name (which may hold spaces): state,
		// ppid, pgrp, ...
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 2 && f[2] == strconv.Itoa(pgid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// resetPeakRSS resets VmHWM of every process in p's group to its current
// RSS (writing 5 to clear_refs).
func (p *proc) resetPeakRSS() error {
	var errs []error
	for _, pid := range p.groupPIDs() {
		errs = append(errs, os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0))
	}
	return errors.Join(errs...)
}

// peakRSS returns the sum of VmHWM over p's process group, in bytes.
func (p *proc) peakRSS() (int64, error) {
	var sum int64
	pids := p.groupPIDs()
	if len(pids) == 0 {
		return 0, fmt.Errorf("%s: no process", p.name)
	}
	for _, pid := range pids {
		v, err := statusField(pid, "VmHWM:")
		if err != nil {
			return 0, err
		}
		sum += v
	}
	return sum, nil
}

// statusField reads a "kB" field of /proc/<pid>/status, in bytes.
func statusField(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				break
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return 0, err
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("/proc/%d/status has no %s", pid, field)
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// waitListening waits until addr accepts connections, p exits, or limit
// passes.
func waitListening(p *proc, addr string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if p.exited() {
			return fmt.Errorf("%s exited at start-up: %v (see %s)", p.name, p.err, p.log.Name())
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s did not listen on %s within %s (see %s)", p.name, addr, limit, p.log.Name())
}
