package e2e

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The users the API server knows through --token-auth-file. Their
// permissions are granted by the scenario with kubectl (see scenario_test.go),
// except admin's, which come from the system:masters group.
const (
	userAdmin        = "admin"        // system:masters
	userAlice        = "alice"        // may manage secrets, configmaps and pods in production
	userBob          = "bob"          // authenticated, no permissions: 403s
	userImpersonator = "impersonator" // may impersonate users and groups
	userMallory      = "mallory"      // presents a token the API server does not know: 401s
)

// auditPolicy is the policy the API server runs with: secret and configmap
// bodies stay out of the log, everything else is logged in full, and the
// RequestReceived stage is dropped so each request gives one or two events.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages:
  - RequestReceived
rules:
  - level: Metadata
    resources:
      - group: ""
        resources: ["secrets", "configmaps"]
  - level: RequestResponse
`

// clusterConfig selects the audit backends of one API server.
type clusterConfig struct {
	// webhookConfig is the kubeconfig passed as --audit-webhook-config-file;
	// empty disables the webhook backend.
	webhookConfig string
	// auditLogPath is --audit-log-path; empty means <dir>/audit/audit.log.
	auditLogPath string
	// logMaxSizeMB is --audit-log-maxsize; 0 leaves rotation off.
	logMaxSizeMB int
	// logMaxBackup is --audit-log-maxbackup; it must be large enough that
	// no backup is deleted during a test, or the log loses events.
	logMaxBackup int
	// policyFile, when set, replaces the harness's own audit policy.
	policyFile string
	// extraArgs are appended to the API server's flags (later flags win).
	extraArgs []string
}

// cluster is one etcd plus one kube-apiserver on loopback, with a bearer
// token and a kubeconfig for each test user.
type cluster struct {
	dir          string
	url          string // https://127.0.0.1:PORT
	auditLogPath string
	tokens       map[string]string // user -> bearer token
	kubeconfigs  map[string]string // user -> kubeconfig path
	kubectlBin   string
	kubectlHome  string // HOME for kubectl, so its cache stays in the test's temp dir
	client       *http.Client
	etcd         *proc
	apiserver    *proc
}

// startCluster starts etcd and kube-apiserver and waits until the API
// server's /readyz passes. Everything is stopped at the end of the test.
func startCluster(t *testing.T, cfg clusterConfig) *cluster {
	t.Helper()
	apiserverBin := kubeAPIServerBinary(t)
	etcdBin := etcdBinary(t)
	kubectlBin := kubectlBinary(t)

	// Logs, kubeconfigs and the audit log go to the artifact folder, kept
	// with `go test -artifacts -outputdir DIR`; etcd's data is scratch.
	dir := t.ArtifactDir()
	c := &cluster{
		dir:         dir,
		tokens:      map[string]string{},
		kubeconfigs: map[string]string{},
		kubectlBin:  kubectlBin,
		kubectlHome: filepath.Join(dir, "home"),
		client: &http.Client{
			Timeout: 30 * time.Second,
			Transport: &http.Transport{
				// The API server serves a self-signed certificate it made
				// in --cert-dir.
				TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
			},
		},
	}
	t.Cleanup(c.client.CloseIdleConnections)

	var etcdURL string
	c.etcd, etcdURL = startEtcd(t, etcdBin, filepath.Join(t.TempDir(), "etcd"))

	// Service-account tokens are signed with this key; the scenario never
	// uses one, but the API server refuses to start without it.
	saKey := filepath.Join(dir, "sa.key")
	writeECKey(t, saKey)

	tokenFile := filepath.Join(dir, "tokens.csv")
	var tokens strings.Builder
	for _, u := range []struct{ name, groups string }{
		{userAdmin, "system:masters"},
		{userAlice, "developers"},
		{userBob, ""},
		{userImpersonator, ""},
	} {
		tok := randomToken(t)
		c.tokens[u.name] = tok
		// token,user,uid,"group1,group2"
		fmt.Fprintf(&tokens, "%s,%s,uid-%s,%q\n", tok, u.name, u.name, u.groups)
	}
	c.tokens[userMallory] = randomToken(t) // deliberately not in the file
	writeFile(t, tokenFile, tokens.String())

	policyFile := cfg.policyFile
	if policyFile == "" {
		policyFile = filepath.Join(dir, "audit-policy.yaml")
		writeFile(t, policyFile, auditPolicy)
	}

	c.auditLogPath = cfg.auditLogPath
	if c.auditLogPath == "" {
		c.auditLogPath = filepath.Join(dir, "audit", "audit.log")
	}
	if err := os.MkdirAll(filepath.Dir(c.auditLogPath), 0o700); err != nil {
		t.Fatal(err)
	}

	port := freePort(t)
	c.url = "https://127.0.0.1:" + strconv.Itoa(port)
	args := []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + filepath.Join(dir, "certs"),
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + saKey,
		"--service-account-signing-key-file=" + saKey,
		"--service-cluster-ip-range=10.96.0.0/24",
		// Nothing here reaches the API server through the kubernetes
		// Service, so it need not publish this machine's address in it.
		"--endpoint-reconciler-type=none",
		"--token-auth-file=" + tokenFile,
		"--authorization-mode=Node,RBAC",
		"--audit-policy-file=" + policyFile,
		"--audit-log-path=" + c.auditLogPath,
		"--audit-log-format=json",
		"--audit-log-mode=blocking",
	}
	if cfg.logMaxSizeMB > 0 {
		args = append(args,
			"--audit-log-maxsize="+strconv.Itoa(cfg.logMaxSizeMB),
			"--audit-log-maxbackup="+strconv.Itoa(max(cfg.logMaxBackup, 1)),
		)
	}
	if cfg.webhookConfig != "" {
		args = append(args,
			"--audit-webhook-config-file="+cfg.webhookConfig,
			"--audit-webhook-mode=batch",
			"--audit-webhook-batch-max-wait=1s",
		)
	}
	args = append(args, cfg.extraArgs...)
	start := time.Now()
	c.apiserver = startProc(t, "kube-apiserver", apiserverBin, args...)
	waitReady(t, c.apiserver, 90*time.Second, func(ctx context.Context) error {
		return httpGetOK(ctx, c.client, c.url+"/readyz", c.tokens[userAdmin])
	})
	t.Logf("kube-apiserver ready at %s after %s", c.url, time.Since(start).Round(time.Millisecond))

	for name, tok := range c.tokens {
		c.kubeconfigs[name] = c.writeKubeconfig(t, name, tok)
	}
	return c
}

// startEtcd starts a single-member etcd on two free loopback ports with its
// data in dataDir, and returns it with its client URL.
func startEtcd(t *testing.T, bin, dataDir string) (*proc, string) {
	t.Helper()
	client := "http://127.0.0.1:" + strconv.Itoa(freePort(t))
	peer := "http://127.0.0.1:" + strconv.Itoa(freePort(t))
	p := startProc(t, "etcd", bin,
		"--name=e2e",
		"--data-dir="+dataDir,
		"--listen-client-urls="+client,
		"--advertise-client-urls="+client,
		"--listen-peer-urls="+peer,
		"--initial-advertise-peer-urls="+peer,
		"--initial-cluster=e2e="+peer,
		"--log-level=warn",
		// The data dies with the test; fsync only slows it down.
		"--unsafe-no-fsync",
	)
	p.diesBySIGTERM = true
	waitReady(t, p, 30*time.Second, func(ctx context.Context) error {
		return httpGetOK(ctx, http.DefaultClient, client+"/health", "")
	})
	return p, client
}

// stop stops the API server cleanly, which also flushes its audit
// webhook buffer, then etcd.
func (c *cluster) stop(t *testing.T) {
	t.Helper()
	start := time.Now()
	if err := c.apiserver.stop(90 * time.Second); err != nil {
		t.Errorf("stop kube-apiserver: %v", err)
	}
	t.Logf("kube-apiserver stopped in %s", time.Since(start).Round(time.Millisecond))
	if err := c.etcd.stop(30 * time.Second); err != nil {
		t.Errorf("stop etcd: %v", err)
	}
}

// writeKubeconfig writes a kubeconfig that authenticates as user with a
// bearer token. JSON is valid YAML, so kubectl reads it as is.
func (c *cluster) writeKubeconfig(t *testing.T, user, token string) string {
	t.Helper()
	cfg := map[string]any{
		"apiVersion": "v1",
		"kind":       "Config",
		"clusters": []any{map[string]any{
			"name": "e2e",
			"cluster": map[string]any{
				"server":                   c.url,
				"insecure-skip-tls-verify": true,
			},
		}},
		"users": []any{map[string]any{
			"name": user,
			"user": map[string]any{"token": token},
		}},
		"contexts": []any{map[string]any{
			"name":    user,
			"context": map[string]any{"cluster": "e2e", "user": user},
		}},
		"current-context": user,
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(c.dir, "kubeconfig-"+user)
	writeFile(t, path, string(b))
	return path
}

// do sends one request to the API server as user and returns the status
// code; the body is discarded. It is the fast way to make traffic.
func (c *cluster) do(t *testing.T, user, method, path string) int {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, c.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+c.tokens[user])
	req.Header.Set("User-Agent", "kubetrail-e2e")
	resp, err := c.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s as %s: %v", method, path, user, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

func writeECKey(t *testing.T, path string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})))
}

func randomToken(t *testing.T) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// auditLineRE matches the one-line event summary the API server prints
// under "Impacted events:" when an audit backend loses events.
var auditLineRE = regexp.MustCompile(` AUDIT: id="([^"]*)" stage="([^"]*)"`)

// webhookShutdownDrops returns, by auditID/stage, the events the API
// server reported it could not hand to its batching webhook backend because
// that backend had already shut down. The API server closes the webhook
// before its own loopback watches end, so the ResponseComplete events of
// those watches reach only the log file. This is the API server's doing,
// not the receiver's; events the webhook failed to deliver for any other
// reason (a 5xx from kubetrail, a timeout) are not in this set.
func (c *cluster) webhookShutdownDrops(t *testing.T) map[string]int {
	t.Helper()
	f, err := os.Open(c.apiserver.logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	drops := map[string]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	inDrop := false
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.Contains(line, "Error in audit plugin 'buffered'") &&
			strings.Contains(line, "audit backend shut down"):
			inDrop = true
		case inDrop && strings.HasPrefix(line, "Impacted events:"):
		case inDrop && auditLineRE.MatchString(line):
			m := auditLineRE.FindStringSubmatch(line)
			drops[m[1]+"/"+m[2]]++
		default:
			inDrop = false
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read %s: %v", c.apiserver.logPath, err)
	}
	return drops
}

// withoutEvents returns events less one occurrence per count in drop,
// keyed by auditID/stage. Every dropped key must be found.
func withoutEvents(t *testing.T, events []event, drop map[string]int) []event {
	t.Helper()
	left := maps.Clone(drop)
	var out []event
	for _, e := range events {
		if left[e.key()] > 0 {
			left[e.key()]--
			continue
		}
		out = append(out, e)
	}
	for k, n := range left {
		if n > 0 {
			t.Errorf("the API server reported dropping event %s, which is not in its log file", k)
		}
	}
	return out
}
