package pipeline

import (
	"net/http"
	"testing"
	"time"
)

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	for _, c := range []struct {
		name, value string
		want        int
	}{
		{"seconds", "120", 120},
		{"zero", "0", 0},
		{"spaces", " 7 ", 7},
		{"date", now.Add(90 * time.Second).Format(http.TimeFormat), 90},
		{"date passed", now.Add(-time.Hour).Format(http.TimeFormat), 0},
		{"date in a year", now.AddDate(1, 0, 0).Format(http.TimeFormat), 86400},
		{"huge", "99999999999999999999", DefaultRetryAfter},
		{"a week", "604800", 86400},
		{"negative", "-5", DefaultRetryAfter},
		{"garbage", "soon", DefaultRetryAfter},
		{"fraction", "1.5", DefaultRetryAfter},
		{"absent", "", DefaultRetryAfter},
	} {
		h := http.Header{}
		if c.value != "" {
			h.Set("Retry-After", c.value)
		}
		if got := RetryAfter(h, now); got != c.want {
			t.Errorf("%s: RetryAfter(%q) = %d; want %d", c.name, c.value, got, c.want)
		}
	}
	if got := RetryAfter(nil, now); got != DefaultRetryAfter {
		t.Errorf("no origin header: %d; want %d", got, DefaultRetryAfter)
	}
}
