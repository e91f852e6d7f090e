package cli

import (
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
)

// TestStatsOutputs: -o json prints exactly the body of GET /api/v1/stats
// for the same question (from the data folder and through --server), -o
// csv the rows, and a plain stats the total and the largest groups.
// Mutations it catches: a JSON shape of the CLI's own; a plain stats that
// prints only a total (the old behaviour).
func TestStatsOutputs(t *testing.T) {
	dir, url, tokenFile := serveIncident(t)
	req, _ := http.NewRequest("GET", url+"/api/v1/stats?by=user%2Cverb&top=4", nil)
	tok, _ := os.ReadFile(tokenFile)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, args := range [][]string{
		{"stats", "--by", "user,verb", "--top", "4", "-o", "json", "--data", dir},
		{"stats", "--by", "user,verb", "--top", "4", "-o", "json", "--server", url, "--token-file", tokenFile},
	} {
		code, out, errOut := run(args...)
		if code != 0 || out != string(body) {
			t.Errorf("%v: exit %d %s\n%s\nwant the API's body\n%s", args, code, errOut, out, body)
		}
	}
	code, out, _ := run("stats", "--by", "user", "--top", "2", "-o", "csv", "--data", dir)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 3 || lines[0] != "user,count" {
		t.Errorf("-o csv: exit %d\n%s", code, out)
	}
	code, out, _ = run("stats", "--data", dir)
	for _, want := range []string{"largest by user (of", "largest by verb (of", "largest by resource (of", "largest by code (of", "admin"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("plain stats lacks %q:\n%s", want, out)
		}
	}
}

// TestEmptyAnswersExplainThemselves: a filter asking for a verb the API
// server never writes warns, with the nearest verb; an empty query says
// what the store holds and that --since starts after its newest event.
// Mutation it catches: the bare header the review saw.
func TestEmptyAnswersExplainThemselves(t *testing.T) {
	dir, _, _ := serveIncident(t)
	code, _, errOut := run("query", "--data", dir, "verb=lst")
	if code != 0 || !strings.Contains(errOut, `verb=lst: "lst" is not a verb the API server writes, so it matches nothing (did you mean list?)`) {
		t.Errorf("verb=lst: exit %d, stderr %q", code, errOut)
	}
	code, _, errOut = run("query", "--data", dir, "--since", "2099-01-01T00:00:00Z", "user=alice")
	if code != 0 || !strings.Contains(errOut, "no event matches; the store holds") || !strings.Contains(errOut, "--since starts after the newest") {
		t.Errorf("an empty window: exit %d, stderr %q", code, errOut)
	}
	if _, _, errOut = run("stats", "--data", dir, "verb=delet"); !strings.Contains(errOut, "(did you mean delete?)") {
		t.Errorf("stats verb=delet: stderr %q", errOut)
	}
}
