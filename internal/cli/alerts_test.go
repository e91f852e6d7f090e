package cli

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/alert"
	"github.com/kubetrail/kubetrail/internal/rules"
	"github.com/kubetrail/kubetrail/internal/server"
	"github.com/kubetrail/kubetrail/internal/store/local"
	"github.com/kubetrail/kubetrail/internal/wal"
)

var alertT0 = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

// cliAlerts are 8 alerts, one a minute: rules r0..r2 in turn,
// severities info..critical in turn, every third from falco; alert 4 is
// by bob impersonating admin, alert 6 carries hostile text.
func cliAlerts() []rules.Alert {
	var out []rules.Alert
	for i := range 8 {
		a := rules.Alert{Rule: fmt.Sprintf("r%d", i%3), Severity: rules.Severity(i % 5), Source: rules.SourceKubetrail,
			AuditIDs: []string{fmt.Sprintf("id-%d", i), fmt.Sprintf("id-%db", i)}, User: "alice", Message: fmt.Sprintf("thing %d happened", i),
			Time: alertT0.Add(time.Duration(i) * time.Minute), Namespace: "prod"}
		if i%3 == 2 {
			a.Source, a.Priority, a.Namespace = rules.SourceFalco, "WARNING", ""
		}
		switch i {
		case 4:
			a.User, a.ImpersonatedUser = "bob", "admin"
		case 6:
			a.User, a.Message = "eve"+hostile, "msg"+hostile
		}
		out = append(out, a)
	}
	return out
}

// serveAlerts stores cliAlerts in DATA/alerts of a new data folder and
// serves it with a bearer token; the store stays open (as serve keeps
// it), so --data reads beside a writer.
func serveAlerts(t *testing.T, detect bool) (dir, url, tokenFile string, st *alert.Store) {
	t.Helper()
	dir = t.TempDir()
	db, err := local.Open(dir, local.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	cfg := server.Config{Listen: "127.0.0.1:0", Tokens: []string{"s3cret"}}
	if detect {
		st, _, err = alert.OpenStore(filepath.Join(dir, alert.StoreDir), alert.StoreOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		if _, err := st.Append(cliAlerts()); err != nil {
			t.Fatal(err)
		}
		cfg.Alerts = st
	}
	s, err := server.New(cfg, db, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	tokenFile = filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, ts.URL, tokenFile, st
}

// TestAlertsDataAndServerPrintTheSame: every filter, in every format,
// prints the same bytes from the data folder (beside the open store) and
// through the server; and the rows are the right ones.
// Planted bugs: --rule sent as one comma-joined value (the server matches
// no rule; --data still does); the AS column taken from User.
func TestAlertsDataAndServerPrintTheSame(t *testing.T) {
	dir, url, tokenFile, _ := serveAlerts(t, true)
	cases := []struct {
		args []string
		rows int // table rows
	}{
		{nil, 8},
		{[]string{"--rule", "r1", "--rule", "r2"}, 5},
		{[]string{"--severity", "high"}, 2},
		{[]string{"-n", "prod"}, 6}, // the two Falco alerts have no namespace
		{[]string{"-A"}, 8},
		{[]string{"--source", "falco"}, 2},
		{[]string{"--since", "2026-11-23T10:03:00Z", "--until", "2026-11-23T10:06:00Z"}, 4}, // both bounds inclusive
		{[]string{"--since", "100000h", "--limit", "2"}, 2},
		{[]string{"--since", "3000d", "--severity", "critical"}, 1},
	}
	for _, c := range cases {
		for _, f := range []string{"table", "wide", "json", "jsonl"} {
			args := append([]string{"alerts", "-o", f}, c.args...)
			lc, lout, lerr := run(append(args, "--data", dir)...)
			rc, rout, rerr := run(append(args, "--server", url, "--token-file", tokenFile)...)
			if lc != 0 || rc != 0 {
				t.Fatalf("%v: exit %d (%s) with --data, %d (%s) with --server", args, lc, lerr, rc, rerr)
			}
			if lout != rout {
				t.Errorf("%v: --data prints\n%s\n--server prints\n%s", args, lout, rout)
			}
			if f == "table" || f == "wide" {
				if n := strings.Count(lout, "\n") - 1; n != c.rows {
					t.Errorf("%v: %d rows, want %d:\n%s", args, n, c.rows, lout)
				}
			}
			if f == "jsonl" && strings.Count(lout, "\n") != c.rows {
				t.Errorf("%v: %d lines, want %d", args, strings.Count(lout, "\n"), c.rows)
			}
			if strings.ContainsAny(lout, "\x1b\x07\r\u0085\u009b\u202e\u2066\x7f\x00") {
				t.Errorf("%v: raw control characters reach the terminal:\n%q", args, lout)
			}
		}
	}
	_, out, _ := run("alerts", "--data", dir, "--severity", "high")
	if f := strings.Fields(strings.Split(out, "\n")[0]); strings.Join(f, " ") != "TIME SEVERITY RULE USER AS NAMESPACE MESSAGE" {
		t.Errorf("table header %v", f)
	}
	for _, w := range [][]string{{"10:03:00.000Z", "high", "r0", "alice", "-", "prod", "thing 3 happened"}, {"10:04:00.000Z", "critical", "r1", "bob", "admin", "prod", "thing 4 happened"}} {
		if !strings.Contains(strings.Join(strings.Fields(out), " "), strings.Join(w, " ")) {
			t.Errorf("table lacks the row %v:\n%s", w, out)
		}
	}
	_, out, _ = run("alerts", "--data", dir, "-o", "wide", "--rule", "r2", "--severity", "medium")
	if f := strings.Fields(strings.Split(out, "\n")[0]); strings.Join(f, " ") != "SEQ TIME SEVERITY SOURCE RULE USER AS NAMESPACE AUDIT IDS STORED MESSAGE" {
		t.Errorf("wide header %v", f)
	}
	if f := strings.Fields(strings.Split(out, "\n")[1]); len(f) < 11 || f[0] != "3" || f[3] != "falco" || f[7] != "-" || f[8] != "id-2,id-2b" {
		t.Errorf("wide row %v; want seq 3, falco, no namespace, both audit IDs", f)
	}
}

// TestAlertsExplainsEmpty: an empty answer says why on stderr, in both
// modes: no alert store in the folder (detection never ran there), a store
// with no alert, or nothing matching; a server without detection is an
// error saying so.
func TestAlertsExplainsEmpty(t *testing.T) {
	f := func(wantCode int, wantErr string, args ...string) {
		t.Helper()
		code, _, stderr := run(args...)
		if code != wantCode || !strings.Contains(stderr, wantErr) {
			t.Errorf("%v: exit %d, stderr %q; want %d saying %q", args, code, stderr, wantCode, wantErr)
		}
	}
	dir, url, tokenFile, _ := serveAlerts(t, true)
	for _, where := range [][]string{{"--data", dir}, {"--server", url, "--token-file", tokenFile}} {
		f(0, "no alert matches; the newest stored alert (seq 8) is from 2026-11-23 10:07 UTC", append([]string{"alerts", "--rule", "nope"}, where...)...)
	}
	nowhere := filepath.Join(t.TempDir(), "x")
	f(0, "no alert store in "+nowhere+"/alerts: detection has not run", "alerts", "--data", nowhere)
	empty := t.TempDir()
	st, _, err := alert.OpenStore(filepath.Join(empty, alert.StoreDir), alert.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	f(0, "the alert store holds no alert yet", "alerts", "--data", empty)
	_, offURL, offToken, _ := serveAlerts(t, false)
	f(1, "server: detection is off on this server", "alerts", "--server", offURL, "--token-file", offToken)
	f(1, "server: unauthorized", "alerts", "--server", url)
	f(1, `severity "urgent": want one of info`, "alerts", "--data", dir, "--severity", "urgent")
	f(1, `source "splunk": want kubetrail, sigma or falco`, "alerts", "--data", dir, "--source", "splunk")
	f(1, "--since \"yesterday\": want a duration before now", "alerts", "--server", url, "--since", "yesterday")
	f(1, "-o json with --follow", "alerts", "--data", dir, "-f", "-o", "json")
}

// TestAlertsDamageExits3: a damaged alert record is named on stderr
// (file and offset) and the command exits 3 after printing every intact
// alert, from the folder and through the server alike.
// Planted bug: alertDamage returning nil (exit 0 with a partial answer).
func TestAlertsDamageExits3(t *testing.T) {
	dir := t.TempDir()
	storeDir := filepath.Join(dir, alert.StoreDir)
	st, _, err := alert.OpenStore(storeDir, alert.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Append(cliAlerts()); err != nil {
		t.Fatal(err)
	}
	st.Close()
	segs, _ := wal.ListSegments(storeDir)
	seg := wal.SegmentPath(storeDir, segs[0])
	var offs []int64
	wal.Scan(seg, func(off int64, _ []byte) error { offs = append(offs, off); return nil })
	b, _ := os.ReadFile(seg)
	b[offs[2]+30] ^= 0x40
	os.WriteFile(seg, b, 0o600)

	st, _, err = alert.OpenStore(storeDir, alert.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	db, err := local.Open(t.TempDir(), local.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s, err := server.New(server.Config{Listen: "127.0.0.1:0", Alerts: st}, db, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	lc, lout, lerr := run("alerts", "-o", "jsonl", "--data", dir)
	rc, rout, rerr := run("alerts", "-o", "jsonl", "--server", ts.URL)
	for _, r := range []struct {
		code        int
		out, stderr string
	}{{lc, lout, lerr}, {rc, rout, rerr}} {
		if r.code != 3 || strings.Count(r.out, "\n") != 7 || !strings.Contains(r.stderr, fmt.Sprintf("%s: ", seg)) ||
			!strings.Contains(r.stderr, fmt.Sprintf("at offset %d", offs[2])) || !strings.Contains(r.stderr, "leaves out the damaged alert records above (1)") {
			t.Errorf("exit %d, %d alerts, stderr %q; want 3, the 7 intact alerts, and the damaged record named", r.code, strings.Count(r.out, "\n"), r.stderr)
		}
	}
	if lout != rout || lerr != rerr {
		t.Errorf("--data and --server differ:\n%s%s\n%s%s", lout, lerr, rout, rerr)
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after 10 s: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestAlertsFollow: --follow prints the matching alerts, then each new
// matching alert once (not the others), from the folder (polling beside
// the writer) and through the server (until it shuts down, which the
// follower reports with a non-zero exit).
// Planted bugs: the local tail not filtering what it reads (r1 and r2
// printed); the tail starting at 0 (every listed alert printed twice).
func TestAlertsFollow(t *testing.T) {
	dir, _, _, st := serveAlerts(t, true)
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb syncBuffer
	e := &env{stdout: &out, stderr: &errb}
	q, err := server.ParseAlertQuery(map[string][]string{"rule": {"r0"}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- followAlerts(ctx, e, &localAlerts{dir: dir}, q, &alertTable{format: "wide", w: &out})
	}()
	waitFor(t, "the listed r0 alerts", func() bool { return strings.Count(out.String(), "\n") == 4 })
	extra := cliAlerts()[:3] // r0, r1, r2: only the first matches
	if _, err := st.Append(extra); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the new r0 alert", func() bool { return strings.Contains(out.String(), "\n9  ") })
	if _, err := st.Append(cliAlerts()[3:4]); err != nil { // r0 again, seq 12
		t.Fatal(err)
	}
	waitFor(t, "the second new r0 alert", func() bool { return strings.Contains(out.String(), "\n12  ") })
	cancel()
	if err := <-done; err != nil {
		t.Errorf("follow ended with %v, want nil when stopped", err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var got []string
	for _, l := range lines[1:] {
		got = append(got, strings.Fields(l)[0])
	}
	if strings.Join(got, " ") != "1 4 7 9 12" {
		t.Errorf("followed seqs %v, want 1 4 7 9 12 once each:\n%s", got, out.String())
	}
}

// TestAlertsFollowServer: through the server, the follower gets a new
// alert as it is stored and ends, saying why, when serve shuts down.
func TestAlertsFollowServer(t *testing.T) {
	st, _, err := alert.OpenStore(filepath.Join(t.TempDir(), alert.StoreDir), alert.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	db, err := local.Open(t.TempDir(), local.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s, err := server.New(server.Config{Listen: "127.0.0.1:0", Alerts: st}, db, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr := make(chan string, 1)
	ran := make(chan error, 1)
	go func() { ran <- s.Run(ctx, func(a string) { addr <- a }) }()
	url := "http://" + <-addr
	var out, errb syncBuffer
	followed := make(chan int, 1)
	go func() {
		followed <- Main([]string{"alerts", "-f", "-o", "jsonl", "--severity", "high", "--server", url}, strings.NewReader(""), &out, &errb)
	}()
	waitFor(t, "the follower saying the store is empty", func() bool { return strings.Contains(errb.String(), "holds no alert yet") })
	if _, err := st.Append(cliAlerts()[2:5]); err != nil { // medium, high, critical
		t.Fatal(err)
	}
	waitFor(t, "the two new alerts", func() bool { return strings.Count(out.String(), "\n") == 2 })
	cancel()
	select {
	case code := <-followed:
		if code == 0 || !strings.Contains(errb.String(), "shutting down") {
			t.Errorf("follower: exit %d, stderr %q; want non-zero, saying the server is shutting down", code, errb.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the follower did not end")
	}
	if err := <-ran; err != nil {
		t.Fatal(err)
	}
	if got := out.String(); !strings.Contains(got, `"seq":2,`) || !strings.Contains(got, `"seq":3,`) {
		t.Errorf("followed %s; want seqs 2 and 3", got)
	}
}
