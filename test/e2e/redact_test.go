package e2e

import (
	"bytes"
	"encoding/base64"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// redactPolicy logs everything at RequestResponse, secrets included: the
// mistake redaction exists for.
const redactPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages:
  - RequestReceived
rules:
  - level: RequestResponse
`

// The values the scenario below stores in Secrets.
const (
	redactApplied = "e2e-applied-Pa55word"
	redactCreated = "e2e-created-T0ken"
)

const redactSecretManifest = `apiVersion: v1
kind: Secret
metadata:
  name: db
  namespace: vault
stringData:
  password: ` + redactApplied + `
`

// TestRedactionOnRealAPIServer runs the real API server with a policy that
// logs Secrets at RequestResponse, sending its webhook to `kubetrail
// serve` (redaction on, as by default). A Secret applied with kubectl
// (stringData, and the last-applied annotation), one created from a
// literal (base64 data), their reads (Secret and SecretList) and a service
// account token (TokenRequest) put the values into the API server's own
// log; none of them, plain or base64, is in any file of the data folder
// (while serve runs, and after it sealed and compressed them), in the
// export or in the query API's answer, while the key names and the markers
// are; every event that needed no redaction is exported as the log's own
// line, byte for byte. The log file imported with `kubetrail import` gives
// the same.
func TestRedactionOnRealAPIServer(t *testing.T) {
	requireClusterDeps(t)
	zstdBin := requireTool(t, lookPath("zstd"), "install zstd (apt-get install zstd)")
	bin := kubetrailBinary(t)

	data := filepath.Join(t.ArtifactDir(), "kubetrail-data")
	serve, addr := startServe(t, bin, data)
	hook := filepath.Join(t.ArtifactDir(), "audit-webhook.kubeconfig")
	writeWebhookConfig(t, bin, "http://"+addr+"/ingest/webhook", hook)
	policy := filepath.Join(t.ArtifactDir(), "policy.yaml")
	writeFile(t, policy, redactPolicy)

	c := startCluster(t, clusterConfig{webhookConfig: hook, policyFile: policy})
	c.kubectl(t, userAdmin, "create", "namespace", "vault")
	c.kubectlIn(t, userAdmin, redactSecretManifest, "apply", "-f", "-")
	c.kubectl(t, userAdmin, "create", "secret", "generic", "other", "-n", "vault", "--from-literal=token="+redactCreated)
	c.kubectl(t, userAdmin, "get", "secret", "db", "-n", "vault", "-o", "json")
	c.kubectl(t, userAdmin, "get", "secrets", "-n", "vault", "-o", "json")
	c.kubectl(t, userAdmin, "create", "serviceaccount", "build", "-n", "vault")
	jwt := strings.TrimSpace(c.kubectl(t, userAdmin, "create", "token", "build", "-n", "vault"))
	c.stop(t)

	// A JWT's first part is the same for every token of one key: the
	// signature part is what only this token has.
	sig := jwt[strings.LastIndexByte(jwt, '.')+1:]
	secrets := []string{redactApplied, b64(redactApplied), redactCreated, b64(redactCreated), sig}
	logFiles := func() []string { _, f := readAuditLog(t, c.auditLogPath); return f }()
	logText := readAll(t, logFiles...)
	for _, s := range []string{redactApplied, b64(redactCreated), sig} {
		if !strings.Contains(logText, s) {
			t.Fatalf("the API server's log does not hold %q: the policy did not log what this test needs", s)
		}
	}

	want, _ := readAuditLog(t, c.auditLogPath)
	if drops := c.webhookShutdownDrops(t); len(drops) > 0 {
		want = withoutEvents(t, want, drops)
	}
	waitExport(t, bin, data, len(want), 30*time.Second)

	// While serve runs, every event is in the write-ahead log, in plain
	// bytes; and the query API answers with what is stored.
	checkRedactedFolder(t, "data folder while serve runs", data, secrets, "")
	resp, err := http.Get("http://" + addr + "/api/v1/events?filter=" + url.QueryEscape("resource=secrets or resource=serviceaccounts"))
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	checkRedactedText(t, "the query API's answer", string(answer), secrets)
	if err := serve.stop(30 * time.Second); err != nil {
		t.Errorf("kubetrail serve must exit 0 on SIGTERM: %v", err)
	}
	// Stopped, serve sealed the WAL into zstd-compressed segments.
	checkRedactedFolder(t, "data folder after serve stopped", data, secrets, zstdBin)

	got := exportEvents(t, bin, data)
	checkRedactedExport(t, "kubetrail export", got, want, secrets)

	imported := filepath.Join(t.ArtifactDir(), "imported-data")
	importFiles(t, bin, imported, logFiles...)
	checkRedactedFolder(t, "data folder of the import", imported, secrets, zstdBin)
	all, _ := readAuditLog(t, c.auditLogPath)
	checkRedactedExport(t, "kubetrail export after import", exportEvents(t, bin, imported), all, secrets)
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func lookPath(name string) string {
	p, err := exec.LookPath(name)
	if err != nil {
		return filepath.Join("/nonexistent", name)
	}
	return p
}

func readAll(t *testing.T, files ...string) string {
	t.Helper()
	var b strings.Builder
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(data)
	}
	return b.String()
}

// checkRedactedText fails when text holds a secret, or lacks a marker or
// the key names (so that an empty text cannot pass).
func checkRedactedText(t *testing.T, name, text string, secrets []string) {
	t.Helper()
	checkRedactedMarks(t, name, text, secrets, `"kubetrail.io/redacted":"true"`)
}

// checkRedactedMarks is checkRedactedText with the redaction annotation
// looked for as mark.
func checkRedactedMarks(t *testing.T, name, text string, secrets []string, mark string) {
	t.Helper()
	for _, s := range secrets {
		if strings.Contains(text, s) {
			t.Errorf("%s holds the secret %q", name, s)
		}
	}
	for _, s := range []string{`"password":"<redacted:hmac-sha256:`, `"token":"<redacted:hmac-sha256:`, mark} {
		if !strings.Contains(text, s) {
			t.Errorf("%s lacks %s", name, s)
		}
	}
}

// checkRedactedFolder reads every file under dir, and with zstdBin the
// output of every zstd frame in them, and checks the whole.
func checkRedactedFolder(t *testing.T, name, dir string, secrets []string, zstdBin string) {
	t.Helper()
	var all bytes.Buffer
	magic := []byte{0x28, 0xb5, 0x2f, 0xfd}
	frames := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		all.Write(b)
		for off := 0; zstdBin != ""; off++ {
			i := bytes.Index(b[off:], magic)
			if i < 0 {
				break
			}
			off += i
			cmd := exec.Command(zstdBin, "-d", "-c", "-q")
			cmd.Stdin = bytes.NewReader(b[off:])
			out, _ := cmd.Output() // it stops at the first byte that is not zstd
			if len(out) > 0 {
				frames++
			}
			all.Write(out)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if zstdBin != "" && frames == 0 {
		t.Errorf("%s: no zstd frame decompressed: the scan would see nothing of the segments", name)
	}
	// A format-5 segment keeps an event's keys in its group's templates
	// and their values in columns (docs/adr/0025-segment-v5.md): the
	// annotation's key and "true" are not side by side in its bytes.
	// Bodies are kept whole, so the redacted fields still are.
	checkRedactedMarks(t, name, all.String(), secrets, `kubetrail.io/redacted`)
}

// checkRedactedExport checks the exported events: no secret, markers
// present, and every event not marked redacted is the API server's line
// byte for byte.
func checkRedactedExport(t *testing.T, name string, got, want []event, secrets []string) {
	t.Helper()
	var text strings.Builder
	redacted := map[string]bool{}
	var plain []event
	for _, e := range got {
		text.WriteString(e.raw + "\n")
		if e.annotation("kubetrail.io/redacted") == "true" {
			redacted[e.key()] = true
		} else {
			plain = append(plain, e)
		}
	}
	checkRedactedText(t, name, text.String(), secrets)
	var wantPlain []event
	for _, e := range want {
		if !redacted[e.key()] {
			wantPlain = append(wantPlain, e)
		}
	}
	if len(redacted) == 0 || len(plain) == 0 {
		t.Fatalf("%s: %d redacted and %d other events; the scenario needs both", name, len(redacted), len(plain))
	}
	t.Logf("%s: %d events redacted, %d stored as received", name, len(redacted), len(plain))
	assertSameEvents(t, name+" (events not redacted)", plain, "audit log", wantPlain)
}
