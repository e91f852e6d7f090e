package server

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubetrail/kubetrail/internal/trust"
)

// TestAccessLogChain: lines are linked (seq, prev) across restarts; a
// torn last line a crash left is cut when the log is opened, so the next
// line is whole; a log written before the chain is continued with seq
// counting its lines; every line stays one JSON object; verify's checker
// finds nothing, and Head is the last line's seq and hash.
// Mutations it catches: OpenAccessLog not cutting the torn tail (the next
// line is glued onto it: "not a JSON object"), not continuing the chain
// from the file (seq starts again at 1: "out of order"), write not
// advancing the head (every link after the first is wrong), Head not
// syncing.
func TestAccessLogChain(t *testing.T) {
	f := func(name, old string, wantLines int64, wantNotes int) {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), AccessLogFile)
			os.WriteFile(path, []byte(old), 0o600)
			for run := range 3 {
				al, err := OpenAccessLog(path)
				if err != nil {
					t.Fatal(err)
				}
				if run == 1 && al.TornBytes != 9 {
					t.Errorf("run 1 cut %d torn bytes, want 9", al.TornBytes)
				}
				for i := range 3 {
					al.write(accessEntry{Time: "2026-12-05T10:00:00Z", Who: "alice", Endpoint: "GET /api/v1/events", Status: 200, Results: int64(run*10 + i)})
				}
				head, err := al.Head()
				if err != nil {
					t.Fatal(err)
				}
				if al.dirty {
					t.Error("Head returned a head whose lines are not synced: a machine crash could take back what a checkpoint signs")
				}
				if err := al.Close(); err != nil {
					t.Fatal(err)
				}
				if run == 0 {
					// A crash in the middle of the next line's write.
					fh, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
					fh.WriteString(`{"time":"`)
					fh.Close()
				}
				if run == 2 {
					raw, _ := os.ReadFile(path)
					lines := strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n")
					last := lines[len(lines)-1]
					if head.Lines != wantLines || head.Hash != trust.AccessLineHash([]byte(last)) {
						t.Errorf("Head %d %x, want %d and the hash of %s", head.Lines, head.Hash, wantLines, last)
					}
					for i, l := range lines {
						var e map[string]any
						if err := json.Unmarshal([]byte(l), &e); err != nil {
							t.Fatalf("line %d is not one JSON object: %v: %s", i+1, err, l)
						}
					}
				}
			}
			rep, err := trust.CheckAccessLog(path, nil)
			if err != nil || len(rep.Findings) != 0 || len(rep.Notes) != wantNotes || rep.Lines != wantLines {
				t.Fatalf("CheckAccessLog: %v, findings %q, notes %q, %d lines (want %d)", err, rep.Findings, rep.Notes, rep.Lines, wantLines)
			}
		})
	}
	f("new", "", 9, 0)
	f("written before the chain", `{"time":"2026-01-01T00:00:00Z","who":"bob"}`+"\n"+`{"time":"2026-01-01T00:00:01Z","who":"bob"}`+"\n", 11, 1)
}
