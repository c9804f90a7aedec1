package httpmirror_test

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

// fakeDNS is a DNS server on 127.0.0.1 that answers A and AAAA queries from
// a table, so tests can make names resolve to loopback or private addresses
// without touching the system resolver.
type fakeDNS struct {
	conn    net.PacketConn
	mu      sync.Mutex
	records map[string]netip.Addr // name without trailing dot -> address
	queries atomic.Int64
}

// set adds or replaces a record.
func (d *fakeDNS) set(name, addr string) {
	d.mu.Lock()
	d.records[name] = netip.MustParseAddr(addr)
	d.mu.Unlock()
}

func newFakeDNS(t *testing.T, records map[string]string) *fakeDNS {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &fakeDNS{conn: pc, records: map[string]netip.Addr{}}
	for name, a := range records {
		d.records[name] = netip.MustParseAddr(a)
	}
	go d.serve()
	t.Cleanup(func() { pc.Close() })
	return d
}

func (d *fakeDNS) serve() {
	buf := make([]byte, 1500)
	for {
		n, from, err := d.conn.ReadFrom(buf)
		if err != nil {
			return
		}
		d.queries.Add(1)
		var p dnsmessage.Parser
		h, err := p.Start(buf[:n])
		if err != nil {
			continue
		}
		q, err := p.Question()
		if err != nil {
			continue
		}
		b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true})
		b.EnableCompression()
		b.StartQuestions()
		b.Question(q)
		b.StartAnswers()
		name := strings.TrimSuffix(q.Name.String(), ".")
		d.mu.Lock()
		a, ok := d.records[name]
		d.mu.Unlock()
		rh := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 1}
		switch {
		case ok && q.Type == dnsmessage.TypeA && a.Is4():
			b.AResource(rh, dnsmessage.AResource{A: a.As4()})
		case ok && q.Type == dnsmessage.TypeAAAA && a.Is6():
			b.AAAAResource(rh, dnsmessage.AAAAResource{AAAA: a.As16()})
		}
		msg, err := b.Finish()
		if err == nil {
			d.conn.WriteTo(msg, from)
		}
	}
}

// resolver returns a pure-Go resolver that asks only this server.
func (d *fakeDNS) resolver() *net.Resolver {
	addr := d.conn.LocalAddr().String()
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var dl net.Dialer
			return dl.DialContext(ctx, "udp", addr)
		},
	}
}
