package main

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/httpmirror/httpmirror"
)

// invalidate marks objects stale: the keys or URLs refs, or those under
// prefix, matching glob, or all (exactly one of these). It fails when a
// key is not cached, when a prefix or glob matched nothing, or when the
// store could not mark some objects.
func (c *cacheCmd) invalidate(refs []string, prefix, glob string, all bool, set map[string]bool) error {
	kinds := 0
	if len(refs) > 0 {
		kinds++
	}
	for _, f := range []string{"prefix", "glob", "all"} {
		if set[f] {
			kinds++
		}
	}
	switch {
	case kinds != 1:
		return usageErr("invalidate takes URLs or keys, or one of --prefix PREFIX, --glob GLOB and --all")
	case set["prefix"] && prefix == "":
		return usageErr("--prefix is empty: pass --all to invalidate every object")
	case set["glob"] && glob == "":
		return usageErr("--glob is empty")
	case set["all"] && !all:
		return usageErr("--all=false names nothing to invalidate")
	}
	if len(refs) == 0 {
		body := map[string]any{"all": true}
		switch {
		case set["prefix"]:
			body = map[string]any{"prefix": prefix}
		case set["glob"]:
			body = map[string]any{"glob": glob}
		}
		res, err := c.postInvalidate(body)
		if err != nil {
			return err
		}
		if res.Invalidated == 0 && res.Fills == 0 && res.Failed == 0 {
			return fmt.Errorf("nothing matched: no object invalidated")
		}
		return failedMarks(res)
	}
	missing := 0
	for _, ref := range refs {
		res, err := c.postInvalidate(map[string]any{"key": ref})
		if err != nil && res.Key == "" {
			return err // not an answer about this object
		}
		if err != nil {
			missing++
			fmt.Fprintf(c.stderr, "%s: %v\n", res.Key, err)
			continue
		}
		if err := failedMarks(res); err != nil {
			return err
		}
	}
	if missing > 0 {
		return fmt.Errorf("%d of %d not cached", missing, len(refs))
	}
	return nil
}

// postInvalidate sends one invalidation and prints its answer.
func (c *cacheCmd) postInvalidate(body map[string]any) (httpmirror.InvalidateResult, error) {
	b, _ := json.Marshal(body)
	var res httpmirror.InvalidateResult
	raw, err := c.call("POST", "/cache/invalidate", b, http.StatusOK, &res)
	if err != nil {
		return res, err
	}
	if c.json {
		c.stdout.Write(raw)
		return res, nil
	}
	what := res.Key
	if res.Kind == "all" {
		what = "every object"
	}
	fmt.Fprintf(c.stdout, "%s: %s invalidated (each revalidated at its next request)", what, countNoun(res.Invalidated, "object"))
	if res.Fills > 0 {
		fmt.Fprintf(c.stdout, ", %s in progress marked when they end", countNoun(res.Fills, "download"))
	}
	if res.Failed > 0 {
		fmt.Fprintf(c.stdout, ", %d could not be marked", res.Failed)
	}
	fmt.Fprintln(c.stdout)
	return res, nil
}

// failedMarks is the error of an invalidation some objects of which the
// store could not mark.
func failedMarks(res httpmirror.InvalidateResult) error {
	if res.Failed > 0 {
		return fmt.Errorf("%s could not be marked stale (see the mirror's log)", countNoun(res.Failed, "object"))
	}
	return nil
}

func countNoun(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
