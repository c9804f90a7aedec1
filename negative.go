package httpmirror

import (
	"sync"
	"time"
)

// DefaultNegativeTTL is how long an origin's 404 or 410 is remembered when
// MirrorHandler.NegativeTTL is zero.
const DefaultNegativeTTL = 30 * time.Second

// maxNegative bounds the number of remembered misses; a flood of requests
// for distinct missing paths cannot grow memory beyond it.
const maxNegative = 16384

// negativeCache remembers which keys the origin recently answered 404 or
// 410 for, so repeated requests for missing files do not reach it.
type negativeCache struct {
	mu      sync.Mutex
	entries map[string]negative
}

type negative struct {
	code    int
	expires time.Time
}

// get returns the remembered status of key, if any and not expired. The
// clock is read only when there is an entry: every hit asks.
func (c *negativeCache) get(key string, now func() time.Time) (int, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok {
		return 0, false
	}
	if !now().Before(e.expires) {
		delete(c.entries, key)
		return 0, false
	}
	return e.code, true
}

// put remembers code for key until now+ttl.
func (c *negativeCache) put(key string, code int, now time.Time, ttl time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = make(map[string]negative)
	}
	if len(c.entries) >= maxNegative {
		// Drop expired entries; if none are, drop an arbitrary one.
		for k, e := range c.entries {
			if !now.Before(e.expires) {
				delete(c.entries, k)
			}
		}
		for k := range c.entries {
			if len(c.entries) < maxNegative {
				break
			}
			delete(c.entries, k)
		}
	}
	c.entries[key] = negative{code: code, expires: now.Add(ttl)}
}

func (m *MirrorHandler) negativeTTL() time.Duration {
	if m.NegativeTTL == 0 {
		return DefaultNegativeTTL
	}
	return max(m.NegativeTTL, 0)
}
