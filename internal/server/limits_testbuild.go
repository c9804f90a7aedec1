//go:build httpmirror_testlimits

package server

import (
	"os"
	"time"
)

// The command's tests build it with the tag httpmirror_testlimits and set
// these variables so that its listeners time out after fractions of a
// second instead of the constants. Release builds do not contain this.
func init() {
	for name, v := range map[string]*time.Duration{
		"HTTPMIRROR_TEST_READ_HEADER_TIMEOUT": &readHeaderTimeout,
		"HTTPMIRROR_TEST_IDLE_TIMEOUT":        &idleTimeout,
	} {
		if d, err := time.ParseDuration(os.Getenv(name)); err == nil && d > 0 {
			*v = d
		}
	}
}
