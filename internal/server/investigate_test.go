package server

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/investigate"
	"github.com/kubetrail/kubetrail/internal/investigate/investigatetest"
	"github.com/kubetrail/kubetrail/internal/pipeline"
	"github.com/kubetrail/kubetrail/internal/store/local"
)

// incidentServer serves a store holding investigatetest's incident, with
// a bearer token.
func incidentServer(t *testing.T) (*httptest.Server, *local.DB) {
	t.Helper()
	db := openDB(t)
	recs, err := investigatetest.Records(investigatetest.Incident())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Append(context.Background(), &pipeline.Batch{Cluster: "prod", Received: time.Now(), Records: recs}); err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Listen: "127.0.0.1:0", Tokens: []string{"s3cret"}}, db, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return ts, db
}

func getWith(t *testing.T, token, u string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", u, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// TestInvestigateAPI asks every investigation through the API and over
// the same store directly: the records are the bytes -o json prints, and
// the table is the one the CLI prints.
func TestInvestigateAPI(t *testing.T) {
	ts, db := incidentServer(t)
	for _, tc := range []struct{ name, params string }{
		{"who", "verb=delete&resource=secrets&name=important&namespace=production"},
		{"who", "verb=deleted&resource=secret/important"},
		{"who", "resource=pods/web/exec&stages=all"},
		{"activity", "user=alice&where=" + url.QueryEscape("verb!=get")},
		{"activity", "user=admin&limit=2"},
		{"history", "resource=deploy.apps/web&namespace=production"},
		{"history", "resource=deployments&name=web&reads=1&diff=0"},
		{"secrets", ""},
		{"secrets", "include-system=1"},
		{"secrets", "since=2026-11-23T10:00:11Z&until=2026-11-23T10:01:00Z"},
		{"execs", ""},
		{"execs", "stages=all"},
		{"denied", ""},
		{"rbac", ""},
		{"rbac", "where=" + url.QueryEscape("user=mallory")},
		{"from", "addr=192.168.1.100"},
		{"from", "addr=192.168.0.0/16&stages=all"},
		{"timeline", ""},
		{"timeline", "user=alice&gap=0&reads=1&limit=3"},
		{"timeline", "include-system=1&where=" + url.QueryEscape("ns=production")},
	} {
		p, err := url.ParseQuery(tc.params)
		if err != nil {
			t.Fatal(err)
		}
		rd, err := local.OpenReader(db.Dir())
		if err != nil {
			t.Fatal(err)
		}
		want, err := investigate.Run(context.Background(), rd, tc.name, p, time.Now())
		rd.Close()
		if err != nil {
			t.Fatalf("%s?%s: %v", tc.name, tc.params, err)
		}
		if len(want.Records()) == 0 {
			t.Errorf("%s?%s: no records; the case tests little", tc.name, tc.params)
		}
		for _, table := range []string{"", "1", "wide"} {
			u := ts.URL + "/api/v1/investigate/" + tc.name + "?" + tc.params + "&table=" + table
			code, body := getWith(t, "s3cret", u)
			if code != 200 {
				t.Fatalf("%s: %d %s", u, code, body)
			}
			var ans investigate.Answer
			if err := json.Unmarshal(body, &ans); err != nil {
				t.Fatalf("%s: %v", u, err)
			}
			if ans.Investigation != tc.name || (ans.Table == nil) != (table == "") {
				t.Errorf("%s: investigation %q, table %v", u, ans.Investigation, ans.Table != nil)
			}
			formats := []string{"json", "jsonl"}
			switch table {
			case "1":
				formats = []string{"table"}
			case "wide":
				formats = []string{"wide"}
			}
			for _, f := range formats {
				var got, exp bytes.Buffer
				if err := investigate.Write(&got, ans.Report(), f); err != nil {
					t.Fatal(err)
				}
				investigate.Write(&exp, want, f)
				if got.String() != exp.String() {
					t.Errorf("%s -o %s:\n got %s\nwant %s", u, f, got.String(), exp.String())
				}
			}
		}
	}

	// include-system=1 reaches the investigation: the token controller's
	// read of a secret is hidden, and counted, without it.
	for params, want := range map[string]bool{"": false, "include-system=1": true} {
		code, body := getWith(t, "s3cret", ts.URL+"/api/v1/investigate/secrets?table=1&"+params)
		hasSA := strings.Contains(string(body), "kube-system:token-controller")
		noted := strings.Contains(string(body), "1 request by the control plane hidden; --include-system shows them")
		if code != 200 || hasSA != want || noted == want {
			t.Errorf("secrets?%s: %d, shows the token controller %v (want %v), notes it hidden %v:\n%s", params, code, hasSA, want, noted, body)
		}
	}

	// The list of investigations and their parameters: who has no
	// include-system, as it always shows the control plane.
	code, body := getWith(t, "s3cret", ts.URL+"/api/v1/investigate")
	for _, want := range []string{
		`{"name":"from","parameters":["addr","since","until","where","include-system","limit","stages","table"]}`,
		`{"name":"who","parameters":["verb","resource","name","namespace","since","until","where","limit","stages","table"]}`,
		`{"name":"timeline","parameters":["user","gap","reads","limit","since","until","where","include-system","table"]}`,
	} {
		if code != 200 || !strings.Contains(string(body), want) {
			t.Errorf("list: %d lacks %s:\n%s", code, want, body)
		}
	}
}

func TestInvestigateAPIErrors(t *testing.T) {
	ts, _ := incidentServer(t)
	f := func(path string, wantCode int, wantParam, wantMsg string) {
		t.Helper()
		code, body := getWith(t, "s3cret", ts.URL+path)
		var e apiError
		if err := json.Unmarshal(body, &e); err != nil {
			t.Fatalf("%s: %d %s: %v", path, code, body, err)
		}
		if code != wantCode || e.Parameter != wantParam || !strings.Contains(e.Error, wantMsg) {
			t.Errorf("%s: %d %+v, want %d about %q saying %q", path, code, e, wantCode, wantParam, wantMsg)
		}
	}
	f("/api/v1/investigate/who?verb=get", 400, "resource", "resource: required")
	f("/api/v1/investigate/who?resource=a/b/c/d", 400, "resource", "want RESOURCE")
	f("/api/v1/investigate/who?resource=secrets&namspace=x", 400, "namspace", "who takes no parameter \"namspace\"")
	f("/api/v1/investigate/who?resource=secrets&since=yesterday", 400, "since", "since \"yesterday\": want a duration before now")
	f("/api/v1/investigate/who?resource=secrets&until=33abcd", 400, "until", "until \"33abcd\": unknown duration unit")
	f("/api/v1/investigate/who?resource=secrets&limit=x", 400, "limit", "limit: \"x\"")
	f("/api/v1/investigate/who?resource=secrets&table=tall", 400, "table", "table: \"tall\"")
	f("/api/v1/investigate/activity", 400, "user", "user: required")
	f("/api/v1/investigate/history?resource=deploy", 400, "name", "name: required")
	f("/api/v1/investigate/history?resource=deploy/web&diff=maybe", 400, "diff", "diff: \"maybe\"")
	f("/api/v1/investigate/secrets?stages=all", 400, "stages", "secrets takes no parameter")
	f("/api/v1/investigate/from?addr=nowhere", 400, "addr", "addr: \"nowhere\"")
	f("/api/v1/investigate/timeline?gap=soon", 400, "gap", "gap: \"soon\": want a duration")
	f("/api/v1/investigate/timeline?gap=-1s", 400, "gap", "gap: \"-1s\"")
	f("/api/v1/investigate/timeline?reads=maybe", 400, "reads", "reads: \"maybe\"")
	f("/api/v1/investigate/timeline?stages=all", 400, "stages", "timeline takes no parameter \"stages\"")
	f("/api/v1/investigate/timeline?user=a%20b*", 400, "user", "user pattern")
	f("/api/v1/investigate/whom", 404, "", "no investigation \"whom\"")
	// A mistake in where carries its column, as the events API's filter does.
	code, body := getWith(t, "s3cret", ts.URL+"/api/v1/investigate/denied?where="+url.QueryEscape("verb=get usr=x"))
	if code != 400 || !strings.Contains(string(body), `"parameter":"where","column":10`) || !strings.Contains(string(body), "did you mean") {
		t.Errorf("where: %d %s", code, body)
	}
}

// TestInvestigateAPIAuth: every investigation endpoint sits behind the
// server's authentication.
func TestInvestigateAPIAuth(t *testing.T) {
	ts, _ := incidentServer(t)
	for _, path := range []string{"/api/v1/investigate", "/api/v1/investigate/secrets", "/api/v1/investigate/who?resource=secrets", "/api/v1/investigate/whom"} {
		for _, tok := range []string{"", "wrong"} {
			if code, body := getWith(t, tok, ts.URL+path); code != http.StatusUnauthorized || strings.Contains(string(body), "alice") {
				t.Errorf("%s with token %q: %d %s", path, tok, code, body)
			}
		}
		if code, body := getWith(t, "s3cret", ts.URL+path); code == http.StatusUnauthorized {
			t.Errorf("%s with the token: %d %s", path, code, body)
		}
	}
}
