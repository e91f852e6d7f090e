package cli

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

// The secret of these tests, and the events that carry it at
// RequestResponse, as the API server logs `kubectl apply` of a Secret.
const e2eSecret = "e2e-s3cr3t-Value-42"

var e2eSecretB64 = base64.StdEncoding.EncodeToString([]byte(e2eSecret))

func secretEvents(id string) (secretLine, plainLine string) {
	la := `{\"apiVersion\":\"v1\",\"data\":{\"password\":\"` + e2eSecretB64 + `\"},\"kind\":\"Secret\",\"metadata\":{\"annotations\":{},\"name\":\"db\",\"namespace\":\"default\"},\"type\":\"Opaque\"}\n`
	secretLine = `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"` + id + `-1","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/secrets?fieldManager=kubectl-client-side-apply\u0026fieldValidation=Strict","verb":"create","user":{"username":"admin","groups":["system:masters"]},"sourceIPs":["127.0.0.1"],"userAgent":"kubectl/v1.37.0","objectRef":{"resource":"secrets","namespace":"default","name":"db","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":201},` +
		`"requestObject":{"kind":"Secret","apiVersion":"v1","metadata":{"name":"db","namespace":"default","annotations":{"kubectl.kubernetes.io/last-applied-configuration":"` + la + `"}},"data":{"password":"` + e2eSecretB64 + `"},"stringData":{"again":"` + e2eSecret + `"},"type":"Opaque"},` +
		`"responseObject":{"kind":"Secret","apiVersion":"v1","metadata":{"name":"db","namespace":"default","uid":"9f1c","resourceVersion":"77"},"data":{"password":"` + e2eSecretB64 + `","again":"` + e2eSecretB64 + `"},"type":"Opaque"},` +
		`"requestReceivedTimestamp":"2026-11-23T10:00:00.000000Z","stageTimestamp":"2026-11-23T10:00:00.012000Z","annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":""}}`
	plainLine = `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"` + id + `-2","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/pods?limit=500","verb":"list","user":{"username":"alice","groups":["dev"]},"sourceIPs":["10.0.0.7"],"userAgent":"kubectl/v1.37.0","objectRef":{"resource":"pods","namespace":"default","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2026-11-23T10:00:01.000000Z","stageTimestamp":"2026-11-23T10:00:01.003000Z","annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":"RBAC: allowed by RoleBinding \"dev\""}}`
	return secretLine, plainLine
}

// scanData reads every file under dir, and the output of every zstd frame
// found in it (segments keep event text zstd-compressed), and reports
// which of the needles occur.
func scanData(t *testing.T, dir string, needles ...string) map[string]bool {
	t.Helper()
	dec, err := zstd.NewReader(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	found := map[string]bool{}
	check := func(b []byte) {
		for _, n := range needles {
			if bytes.Contains(b, []byte(n)) {
				found[n] = true
			}
		}
	}
	magic := []byte{0x28, 0xb5, 0x2f, 0xfd}
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		check(b)
		for off := 0; ; {
			i := bytes.Index(b[off:], magic)
			if i < 0 {
				break
			}
			off += i
			if dec.Reset(bytes.NewReader(b[off:])) == nil {
				out, _ := io.ReadAll(dec) // up to the first byte that is not zstd
				check(out)
			}
			off++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// checkNoSecret fails when the secret, plain or base64, is anywhere under
// dir, and when the marker and the key name are not (so that a scan that
// reads nothing cannot pass).
func checkNoSecret(t *testing.T, dir string) {
	t.Helper()
	found := scanData(t, dir, e2eSecret, e2eSecretB64, "<redacted:hmac-sha256:", `"password":"<redacted`, "kubetrail.io/redacted")
	if found[e2eSecret] || found[e2eSecretB64] {
		t.Errorf("the secret is stored under %s: %v", dir, found)
	}
	for _, want := range []string{"<redacted:hmac-sha256:", `"password":"<redacted`, "kubetrail.io/redacted"} {
		if !found[want] {
			t.Errorf("%q is nowhere under %s", want, dir)
		}
	}
}

// TestImportRedacts: a log holding a Secret at RequestResponse is
// imported; the secret's value is in no file of the data folder (segments
// decompressed) nor in the export, the key names and markers are, the
// event with nothing to redact is exported byte for byte, and the key file
// is private. With --no-redact every line comes back exactly, and the same
// scan finds the secret (so the scan can see it).
// Mutations caught: import not wrapping the store (sinkFlags.open
// returning db), --no-redact ignored, the key file created 0644.
func TestImportRedacts(t *testing.T) {
	secretLine, plainLine := secretEvents("imp")
	log := filepath.Join(t.TempDir(), "audit.log")
	if err := os.WriteFile(log, []byte(secretLine+"\n"+plainLine+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	if code, _, errOut := run("import", "--data", dir, "--progress", "never", log); code != 0 {
		t.Fatalf("import: exit %d: %s", code, errOut)
	}
	checkNoSecret(t, dir)
	code, out, errOut := run("export", "--data", dir)
	if code != 0 {
		t.Fatalf("export: %s", errOut)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 2 || strings.Contains(out, e2eSecret) || strings.Contains(out, e2eSecretB64) || !strings.Contains(lines[0], `"password":"<redacted:hmac-sha256:`) {
		t.Errorf("export:\n%s", out)
	}
	if len(lines) == 2 && lines[1] != plainLine {
		t.Errorf("the event with nothing to redact changed:\n%s\nwant\n%s", lines[1], plainLine)
	}
	if fi, err := os.Stat(filepath.Join(dir, "redact.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("redact.key: %v %v", fi, err)
	}
	// Importing the same log again adds nothing: redaction is the same
	// each time, so de-duplication still sees the same events.
	if code, _, errOut := run("import", "--data", dir, "--progress", "never", log); code != 0 || !strings.Contains(errOut, "0 events stored, 2 already stored") {
		t.Errorf("second import: exit %d: %s", code, errOut)
	}

	raw := t.TempDir()
	if code, _, errOut := run("import", "--data", raw, "--progress", "never", "--no-redact", log); code != 0 {
		t.Fatalf("import --no-redact: %s", errOut)
	}
	if _, out, _ := run("export", "--data", raw); out != secretLine+"\n"+plainLine+"\n" {
		t.Errorf("--no-redact export is not the log:\n%s", out)
	}
	if found := scanData(t, raw, e2eSecret); !found[e2eSecret] {
		t.Error("the scan does not find the secret that --no-redact stored: it proves nothing")
	}
	if _, err := os.Stat(filepath.Join(raw, "redact.key")); err == nil {
		t.Error("--no-redact made a key")
	}
}

// TestRedactFlagErrors: the flag combinations that cannot mean anything
// are refused, and a key file others can read is refused.
func TestRedactFlagErrors(t *testing.T) {
	log := filepath.Join(t.TempDir(), "audit.log")
	os.WriteFile(log, nil, 0o600)
	key := filepath.Join(t.TempDir(), "key")
	os.WriteFile(key, []byte(strings.Repeat("k", 40)), 0o644)
	f := func(want string, args ...string) {
		t.Helper()
		if code, _, errOut := run(args...); code == 0 || !strings.Contains(errOut, want) {
			t.Errorf("%v: exit %d, %q; want %q", args, code, errOut, want)
		}
	}
	f("chmod 600", "import", "--data", t.TempDir(), "--redact-key-file", key, log)
	f("choose one", "import", "--data", t.TempDir(), "--redact-key-file", key, "--no-redact", log)
	f("start it with serve --no-redact", "import", "--server", "http://127.0.0.1:1", "--no-redact", log)
}

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestServeAndTailRedact runs the serve and tail commands themselves: an
// EventList posted to serve's webhook, and a log that tail follows, are
// redacted before the write-ahead log (scanned while the command still
// runs, before anything is sealed), and serve counts it on /metrics; the
// two commands share one key file, so the same value gets the same marker.
// Mutations caught: serve handing the webhook the store instead of
// cfg.Ingest, the metric not registered, tail not redacting.
func TestServeAndTailRedact(t *testing.T) {
	key := filepath.Join(t.TempDir(), "shared.key")
	os.WriteFile(key, []byte(strings.Repeat("0123456789abcdef", 4)+"\n"), 0o600)
	e := &env{stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard, logLevel: "error"}
	markers := map[string]string{}

	t.Run("serve", func(t *testing.T) {
		dir, addr := t.TempDir(), freeAddr(t)
		ctx, cancel := context.WithCancel(context.Background())
		cmd := serveCmd(e)
		cmd.SetArgs([]string{"--data", dir, "--listen", addr, "--detect=false", "--redact-key-file", key})
		done := make(chan error, 1)
		go func() { done <- cmd.ExecuteContext(ctx) }()
		defer func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("serve: %v", err)
			}
		}()
		secretLine, _ := secretEvents("srv")
		item := strings.Replace(secretLine, `"kind":"Event","apiVersion":"audit.k8s.io/v1",`, "", 1) // webhook items carry no kind
		body := `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[` + item + `]}`
		var resp *http.Response
		var err error
		for start := time.Now(); time.Since(start) < 10*time.Second; time.Sleep(50 * time.Millisecond) {
			if resp, err = http.Post("http://"+addr+"/ingest/webhook", "application/json", strings.NewReader(body)); err == nil {
				break
			}
		}
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("webhook answered %s", resp.Status)
		}
		checkNoSecret(t, dir) // the WAL, before sealing
		resp, err = http.Get("http://" + addr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		m, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !bytes.Contains(m, []byte("\nkubetrail_redacted_events_total 1\n")) {
			t.Errorf("/metrics has no kubetrail_redacted_events_total 1")
		}
		markers["serve"] = string(scanMarker(t, dir))
	})

	t.Run("tail", func(t *testing.T) {
		dir := t.TempDir()
		secretLine, plainLine := secretEvents("tail")
		log := filepath.Join(t.TempDir(), "audit.log")
		os.WriteFile(log, []byte(plainLine+"\n"+secretLine+"\n"), 0o600)
		ctx, cancel := context.WithCancel(context.Background())
		cmd := tailCmd(e)
		cmd.SetArgs([]string{"--data", dir, "--poll", "20ms", "--redact-key-file", key, log})
		done := make(chan error, 1)
		go func() { done <- cmd.ExecuteContext(ctx) }()
		for start := time.Now(); !scanData(t, dir, "kubetrail.io/redacted")["kubetrail.io/redacted"]; time.Sleep(50 * time.Millisecond) {
			if time.Since(start) > 10*time.Second {
				t.Fatal("tail stored nothing in 10 s")
			}
		}
		checkNoSecret(t, dir)
		markers["tail"] = string(scanMarker(t, dir))
		cancel()
		<-done
		checkNoSecret(t, dir)
	})
	if markers["serve"] == "" || markers["serve"] != markers["tail"] {
		t.Errorf("one key file, different markers for one value: %v", markers)
	}
}

// scanMarker returns the marker of the Secret's "password" in the first
// file under dir that has one in plain bytes (a WAL segment).
func scanMarker(t *testing.T, dir string) []byte {
	t.Helper()
	var m []byte
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || m != nil {
			return nil
		}
		b, _ := os.ReadFile(path)
		if i := bytes.Index(b, []byte(`"password":"<redacted:hmac-sha256:`)); i >= 0 {
			m = b[i : i+len(`"password":"<redacted:hmac-sha256:`)+17]
		}
		return nil
	})
	return m
}
