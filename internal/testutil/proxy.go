package testutil

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
)

// Proxy is a forward proxy on 127.0.0.1 speaking HTTP CONNECT or SOCKS5
// (CONNECT command, no authentication). It maps host names through Hosts
// before dialling, so a test can use a name only the proxy can resolve, and
// records every target it was asked for.
type Proxy struct {
	// Addr is the proxy's host:port.
	Addr string
	// Hosts maps names to the addresses the proxy dials instead.
	Hosts map[string]string

	ln      net.Listener
	mu      sync.Mutex
	targets []string
	// Tunnels counts the connections relayed.
	Tunnels atomic.Int64
	wg      sync.WaitGroup
}

// NewHTTPProxy starts an HTTP CONNECT proxy.
func NewHTTPProxy(t testing.TB, hosts map[string]string) *Proxy {
	return startProxy(t, hosts, (*Proxy).serveHTTP)
}

// NewSOCKS5Proxy starts a SOCKS5 proxy.
func NewSOCKS5Proxy(t testing.TB, hosts map[string]string) *Proxy {
	return startProxy(t, hosts, (*Proxy).serveSOCKS)
}

func startProxy(t testing.TB, hosts map[string]string, serve func(*Proxy, net.Conn)) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{Addr: ln.Addr().String(), Hosts: hosts, ln: ln}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				defer c.Close()
				serve(p, c)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return p
}

// Targets returns the host:port targets asked for, in order.
func (p *Proxy) Targets() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.targets...)
}

// dial connects to target, through the Hosts map.
func (p *Proxy) dial(target string) (net.Conn, error) {
	p.mu.Lock()
	p.targets = append(p.targets, target)
	p.mu.Unlock()
	host, port, err := net.SplitHostPort(target)
	if err != nil {
		return nil, err
	}
	if mapped, ok := p.Hosts[host]; ok {
		host = mapped
	}
	return net.Dial("tcp", net.JoinHostPort(host, port))
}

// relay copies both ways until either side closes.
func (p *Proxy) relay(client net.Conn, clientReader io.Reader, upstream net.Conn) {
	p.Tunnels.Add(1)
	done := make(chan struct{})
	go func() {
		io.Copy(upstream, clientReader)
		upstream.Close()
		close(done)
	}()
	io.Copy(client, upstream)
	client.Close()
	<-done
}

func (p *Proxy) serveHTTP(c net.Conn) {
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	if req.Method != http.MethodConnect {
		io.WriteString(c, "HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
		return
	}
	up, err := p.dial(req.Host)
	if err != nil {
		io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
		return
	}
	defer up.Close()
	io.WriteString(c, "HTTP/1.1 200 Connection Established\r\n\r\n")
	p.relay(c, br, up)
}

func (p *Proxy) serveSOCKS(c net.Conn) {
	br := bufio.NewReader(c)
	target, err := socksHandshake(br, c)
	if err != nil {
		return
	}
	up, err := p.dial(target)
	if err != nil {
		c.Write([]byte{5, 4, 0, 1, 0, 0, 0, 0, 0, 0}) // host unreachable
		return
	}
	defer up.Close()
	c.Write([]byte{5, 0, 0, 1, 0, 0, 0, 0, 0, 0})
	p.relay(c, br, up)
}

// socksHandshake reads a SOCKS5 greeting and CONNECT request (RFC 1928)
// and returns the requested host:port.
func socksHandshake(r *bufio.Reader, w io.Writer) (string, error) {
	head := make([]byte, 2)
	if _, err := io.ReadFull(r, head); err != nil || head[0] != 5 {
		return "", errors.New("not SOCKS5")
	}
	methods := make([]byte, head[1])
	if _, err := io.ReadFull(r, methods); err != nil {
		return "", err
	}
	w.Write([]byte{5, 0}) // no authentication
	req := make([]byte, 4)
	if _, err := io.ReadFull(r, req); err != nil || req[1] != 1 {
		return "", errors.New("not a CONNECT")
	}
	var host string
	switch req[3] {
	case 1:
		a := make([]byte, 4)
		if _, err := io.ReadFull(r, a); err != nil {
			return "", err
		}
		host = net.IP(a).String()
	case 3:
		n, err := r.ReadByte()
		if err != nil {
			return "", err
		}
		name := make([]byte, n)
		if _, err := io.ReadFull(r, name); err != nil {
			return "", err
		}
		host = string(name)
	case 4:
		a := make([]byte, 16)
		if _, err := io.ReadFull(r, a); err != nil {
			return "", err
		}
		host = net.IP(a).String()
	default:
		return "", errors.New("bad address type")
	}
	pb := make([]byte, 2)
	if _, err := io.ReadFull(r, pb); err != nil {
		return "", err
	}
	return net.JoinHostPort(host, strconv.Itoa(int(binary.BigEndian.Uint16(pb)))), nil
}
