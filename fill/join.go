package fill

// Join returns the fill of key in progress, with a reference the caller
// must Release, or nil when none runs. Unlike Miss it never starts a fill:
// another replica that streams an object from this one (package cluster)
// reads the fill this replica runs, and must not make it fetch anything.
func (g *Group) Join(key string) *Fill {
	g.mu.Lock()
	defer g.mu.Unlock()
	f := g.fills[key]
	if f != nil {
		f.refs++
	}
	return f
}
