package server

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"github.com/kubetrail/kubetrail/internal/query"
	"github.com/kubetrail/kubetrail/internal/store/local"
)

// TestStatsBytesAPI sums stored bytes per user through the API and by
// hand over the same events.
func TestStatsBytesAPI(t *testing.T) {
	ts, db := incidentServer(t)
	rd, err := local.OpenReader(db.Dir())
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	for _, filter := range []string{"", "resource=secrets", `"production"`} {
		want := map[string][2]int64{} // user -> count, bytes
		var wantBytes int64
		var sel local.Selection
		if filter != "" {
			sel.Filter, _ = query.Compile(filter)
		}
		rd.Select(local.Selection{Filter: sel.Filter, NeedEvent: true}, func(h *local.Hit) error {
			w := want[h.Event.User.Username]
			w[0]++
			w[1] += int64(len(h.Raw))
			want[h.Event.User.Username] = w
			wantBytes += int64(len(h.Raw))
			return nil
		})
		if len(want) < 2 {
			t.Fatalf("%q selects the events of %d users; the case tests little", filter, len(want))
		}
		code, body := getWith(t, "s3cret", ts.URL+"/api/v1/stats?by=user&sort=bytes&top=3&filter="+url.QueryEscape(filter))
		if code != 200 {
			t.Fatalf("%q: %d %s", filter, code, body)
		}
		var ans StatsAnswer
		if err := json.Unmarshal(body, &ans); err != nil {
			t.Fatal(err)
		}
		if ans.TotalBytes != wantBytes || ans.TotalGroups != len(want) || len(ans.Groups) != min(3, len(want)) {
			t.Fatalf("%q: %d bytes in %d groups (%d shown), want %d in %d", filter, ans.TotalBytes, ans.TotalGroups, len(ans.Groups), wantBytes, len(want))
		}
		for i, g := range ans.Groups {
			w := want[g.Key["user"]]
			if g.Count != w[0] || g.Bytes != w[1] {
				t.Errorf("%q: %s: %d events of %d bytes, want %d of %d", filter, g.Key["user"], g.Count, g.Bytes, w[0], w[1])
			}
			if i > 0 && g.Bytes > ans.Groups[i-1].Bytes {
				t.Errorf("%q: not by bytes: %+v", filter, ans.Groups)
			}
		}
	}
	// Without bytes=1 no bytes are summed.
	_, body := getWith(t, "s3cret", ts.URL+"/api/v1/stats?by=user")
	if strings.Contains(string(body), `"bytes"`) || strings.Contains(string(body), `"totalBytes"`) {
		t.Errorf("bytes without bytes=1: %s", body)
	}
	_, body = getWith(t, "s3cret", ts.URL+"/api/v1/stats?by=user&bytes=1&sort=count")
	var ans StatsAnswer
	json.Unmarshal(body, &ans)
	for i := 1; i < len(ans.Groups); i++ {
		if ans.Groups[i].Count > ans.Groups[i-1].Count || ans.Groups[i].Bytes == 0 {
			t.Errorf("bytes=1&sort=count: %+v", ans.Groups)
		}
	}

	f := func(q, wantMsg string) {
		t.Helper()
		code, body := getWith(t, "s3cret", ts.URL+"/api/v1/stats?"+q)
		if code != 400 || !strings.Contains(string(body), wantMsg) {
			t.Errorf("%s: %d %s, want 400 saying %q", q, code, body, wantMsg)
		}
	}
	f("by=usr", `by: \"usr\" is not a field`)
	f("interval=soon", `interval \"soon\"`)
	// Below a second or above 366 days buckets mean nothing (1ns and
	// 1000000h put every event in a 1970 bucket); units below a second
	// are not durations timespec reads.
	f("interval=1ns", `interval \"1ns\": unknown duration unit \"n\"`)
	f("interval=999ms", `interval \"999ms\": want whole numbers`)
	f("interval=0s", `interval \"0s\": want between 1s and 366d`)
	f("interval=367d", `interval \"367d\": want between 1s and 366d`)
	f("interval=1000000h", `interval \"1000000h\": too large`)
	for _, iv := range []string{"1s", "8784h"} {
		code, body := getWith(t, "s3cret", ts.URL+"/api/v1/stats?interval="+iv)
		if code != 200 || strings.Contains(string(body), "1970") || !strings.Contains(string(body), `"time":"2026-`) {
			t.Errorf("interval=%s: %d %s, want buckets of 2026", iv, code, body)
		}
	}
	f("top=-2", `top \"-2\"`)
	f("bytes=maybe", `bytes \"maybe\"`)
	f("sort=size", `sort \"size\"`)
	f("since=yesterday", `since \"yesterday\": want a duration before now`)
	f("since=33abcd", `since \"33abcd\": unknown duration unit \"a\"`)
	f("until=7x", `"parameter":"until"`)
	f("since=1d12h&until=2d", `until \"2d\": is before since 1d12h`)
	if code, _ := getWith(t, "", ts.URL+"/api/v1/stats?bytes=1"); code != 401 {
		t.Errorf("stats without a token: %d", code)
	}
}
