package httpmirror

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/httpmirror/httpmirror/fill"
	"github.com/httpmirror/httpmirror/storage"
)

// Validate checks the handler's configuration.
func (m *MirrorHandler) Validate() error {
	modes := 0
	if m.Host != "" {
		modes++
		h, err := canonicalHost(m.Host)
		if err != nil {
			return fmt.Errorf("host %q is not a valid upstream host name", m.Host)
		}
		if !m.hostAllowed(h) {
			return fmt.Errorf("host %q is not among the allowed hosts", m.Host)
		}
	}
	if m.HostFromFirstPath {
		modes++
	}
	if m.BaseDomain != "" {
		modes++
	}
	if modes > 1 {
		return errors.New("choose one of host, host-from-first-path and base-domain")
	}
	switch m.UpstreamScheme {
	case "", "http", "https":
	default:
		return fmt.Errorf("upstream scheme %q is neither http nor https", m.UpstreamScheme)
	}
	if m.CIDN != nil && m.RemoteCache == nil {
		return errors.New("CIDN needs a cache: CIDN stores files in RemoteCache")
	}
	if m.Coordinator != nil && m.RemoteCache == nil {
		return errors.New("a Coordinator needs a cache: replicas share the files of one store")
	}
	if m.LinkExpires < 0 || m.CheckSyncTimeout < 0 || m.AuthCacheTTL < 0 || m.ContinuationGetInterval < 0 || m.ContinuationGetRetry < 0 {
		return errors.New("durations and retry counts must not be negative")
	}
	if m.FillConnections < 0 || m.FillSegmentSize < 0 {
		return errors.New("fill connections and segment size must not be negative")
	}
	if m.MaxObjectSize < 0 {
		return errors.New("the maximum object size must not be negative")
	}
	if m.MaxRanges < 0 {
		return errors.New("the number of ranges must not be negative")
	}
	return nil
}

// init builds the handler's internal state on first use.
func (m *MirrorHandler) init() error {
	m.once.Do(func() {
		if err := m.Validate(); err != nil {
			m.initErr = err
			return
		}
		m.log = m.Logger
		if m.log == nil {
			m.log = slog.New(slog.DiscardHandler)
		}
		if m.now == nil {
			m.now = time.Now
		}
		client := m.Client
		if client == nil {
			client = NewUpstreamClient(UpstreamOptions{ProxyDial: m.ProxyDial, AllowPrivate: m.AllowPrivateUpstreams})
		}
		m.client = m.withRedirectPolicy(client)
		m.scheme = m.UpstreamScheme
		if m.scheme == "" {
			m.scheme = "https"
		}
		m.rules.RevalidatePatterns = m.RevalidatePatterns
		if m.RevalidatePatterns == nil {
			m.rules.RevalidatePatterns = DefaultRevalidatePatterns
		}
		if m.RemoteCache != nil {
			// Every storage call goes through the decorator, which times
			// it for the metrics (when there are any) and offers every
			// optional capability.
			m.store = storage.Instrument(m.RemoteCache, m.Metrics.storageObserver())
			idle := m.UpstreamIdleTimeout
			if idle == 0 {
				idle = 2 * time.Minute
			} else if idle < 0 {
				idle = 0
			}
			minRate := m.UpstreamMinRate
			if minRate == 0 {
				minRate = DefaultUpstreamMinRate
			}
			m.fills = fill.NewGroup(m.store, fill.Options{
				Retry:         m.ContinuationGetRetry,
				RetryInterval: m.ContinuationGetInterval,
				IdleTimeout:   idle,
				MinRate:       max(minRate, 0),
				Connections:   cmp.Or(m.FillConnections, DefaultFillConnections),
				SegmentSize:   m.FillSegmentSize,
				MaxObjectSize: m.MaxObjectSize,
				SpoolDir:      m.SpoolDir,
				Logger:        m.log,
				Observer:      fillObserver{m.Metrics},
				Info:          m.objectInfo,
				Storable:      func(key string, resp *http.Response) bool { return m.storable(key, resp) && !fromPeer(resp) },
			})
		}
		m.Metrics.watch(m)
	})
	return m.initErr
}
