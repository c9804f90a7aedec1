package policy

import (
	"net/http"
	"reflect"
	"strings"
	"testing"
)

func TestParseVary(t *testing.T) {
	for _, tc := range []struct {
		name string
		h    []string
		want Vary
	}{
		{"none", nil, Vary{}},
		{"accept", []string{"Accept"}, Vary{Fields: []string{"Accept"}}},
		{"case, spaces, duplicates and order", []string{" accept-language ,ACCEPT", "Accept"}, Vary{Fields: []string{"Accept", "Accept-Language"}}},
		{"compression selects no variant", []string{"Accept-Encoding"}, Vary{}},
		{"credentials and cookies select no variant", []string{"Authorization, Cookie, Origin"}, Vary{Fields: []string{"Origin"}}},
		{"star", []string{"Accept, *"}, Vary{Fields: []string{"Accept"}, Any: true}},
		{"empty members", []string{",, ,"}, Vary{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := ParseVary(http.Header{"Vary": tc.h})
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ParseVary(%q) = %+v; want %+v", tc.h, got, tc.want)
			}
		})
	}
}

func TestNormalizeField(t *testing.T) {
	for _, tc := range []struct {
		name   string
		field  string
		values []string
		want   string
	}{
		{"absent", "Accept", nil, ""},
		{"empty", "Accept", []string{" "}, ""},
		{"spaces around members and parameters", "Accept", []string{" text/html ; q=0.9 ,application/json;q = 1 "}, "text/html;q=0.9,application/json;q=1"},
		{"several lines are one list", "Accept", []string{"text/html", "application/json"}, "text/html,application/json"},
		{"media range and parameter names folded, values kept", "Accept", []string{"Text/HTML;Level=One;Q=0.5"}, "text/html;level=One;q=0.5"},
		{"order kept", "Accept", []string{"application/json, text/html"}, "application/json,text/html"},
		{"quoted comma is no separator", "Accept", []string{`text/plain;x="a, b", text/html`}, `text/plain;x="a, b",text/html`},
		{"language tags folded", "Accept-Language", []string{"en-US, FR;Q=0.5"}, "en-us,fr;q=0.5"},
		{"empty members dropped", "Accept-Language", []string{"en,,  ,de"}, "en,de"},
		{"unknown field only trimmed", "X-Api-Version", []string{" V2 ; a = b "}, "V2 ; a = b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := NormalizeField(tc.field, tc.values); got != tc.want {
				t.Errorf("NormalizeField(%s, %q) = %q; want %q", tc.field, tc.values, got, tc.want)
			}
		})
	}
}

func TestVariantID(t *testing.T) {
	fields := []string{"Accept", "Accept-Language"}
	id := func(h http.Header) string { return VariantID(fields, h) }
	base := id(http.Header{"Accept": {"application/json"}, "Accept-Language": {"en"}})
	for _, tc := range []struct {
		name string
		h    http.Header
		same bool
	}{
		{"identical", http.Header{"Accept": {"application/json"}, "Accept-Language": {"en"}}, true},
		{"spelled differently", http.Header{"Accept": {" Application/JSON "}, "Accept-Language": {"EN"}}, true},
		{"other header ignored", http.Header{"Accept": {"application/json"}, "Accept-Language": {"en"}, "User-Agent": {"x"}}, true},
		{"other media type", http.Header{"Accept": {"text/html"}, "Accept-Language": {"en"}}, false},
		{"q-value matters", http.Header{"Accept": {"application/json;q=0.5"}, "Accept-Language": {"en"}}, false},
		{"absent language", http.Header{"Accept": {"application/json"}}, false},
		{"values moved between fields", http.Header{"Accept": {"application/json,en"}}, false},
	} {
		if got := id(tc.h) == base; got != tc.same {
			t.Errorf("%s: same variant = %v; want %v", tc.name, got, tc.same)
		}
	}
	if a, b := id(http.Header{}), id(http.Header{"Accept": {""}, "Accept-Language": {" "}}); a != b {
		t.Errorf("absent and empty fields select different variants: %s, %s", a, b)
	}
	// A value cannot smuggle a field boundary into the hash.
	if VariantID([]string{"A", "B"}, http.Header{"A": {"x"}, "B": {"y"}}) == VariantID([]string{"A", "B"}, http.Header{"A": {"x\x02B\x01y"}}) {
		t.Error("field boundary forged by a value")
	}
	if k := VariantKey("example.com/a", base); k != "example.com/a#vary="+base || len(base) != 32 {
		t.Errorf("VariantKey = %q", k)
	}
	if k := VariantKey("example.com/simple/pkg/", base); k != "example.com/simple/pkg#vary="+base+"/" {
		t.Errorf("VariantKey of a directory = %q", k)
	}
}

func TestVariantKeys(t *testing.T) {
	for _, key := range []string{"example.com/doc", "example.com/simple/pkg/", "example.com/a?b=c"} {
		v := VariantKey(key, "0123")
		if !strings.HasPrefix(v, VariantPrefix(key)) {
			t.Errorf("VariantKey(%q) = %q does not start with VariantPrefix %q", key, v, VariantPrefix(key))
		}
		if strings.HasSuffix(key, "/") != strings.HasSuffix(v, "/") {
			t.Errorf("VariantKey(%q) = %q: trailing slash not kept", key, v)
		}
		if base, ok := BaseKey(v); !ok || base != key {
			t.Errorf("BaseKey(%q) = %q, %v; want %q", v, base, ok, key)
		}
		if _, ok := BaseKey(key); ok {
			t.Errorf("BaseKey(%q) reports a variant", key)
		}
	}
}
