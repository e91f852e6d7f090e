package e2e

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestRsyslogFromRealAPIServer runs the fleet's syslog path as
// docs/ingest.md configures it, on one run of the real API server: Debian's
// rsyslogd tails the audit log the API server writes (imfile) and forwards
// every line to `kubetrail serve` twice, over plain TCP and over TLS
// (rsyslog-gnutls, each side checking the other's certificate), each with
// its own cluster in the RFC 5424 structured data. serve in turn forwards
// every stored event with syslog+tls:// to an rsyslog TLS input (imtcp,
// gtls) that writes them to a file. Each path must carry every event once:
// per cluster, export equals the audit log's lines byte for byte and serve
// counted no duplicate; rsyslog's file holds each stored event once per
// cluster, the stored line as the message.
//
// Planted bugs it catches: the syslog listener storing each batch twice
// (serve's duplicate count), the syslog forwarder sending an event twice
// (rsyslog's file), and rsyslog's TLS action naming a peer other than
// serve's certificate (nothing arrives over TLS: the name is checked).
func TestRsyslogFromRealAPIServer(t *testing.T) {
	requireClusterDeps(t)
	rsyslogBin := requirePeer(t, "rsyslogd", "rsyslog")
	requireRsyslogGnuTLS(t)
	bin := kubetrailBinary(t)
	dir := t.TempDir()
	pki := writeTestPKI(t, dir)

	// serve: both syslog listeners, client certificates required, and a
	// syslog+tls forwarder to rsyslog's TLS input.
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	tcpAddr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	tlsAddr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	recvPort := freePort(t)
	recvAddr := "127.0.0.1:" + strconv.Itoa(recvPort)
	data := filepath.Join(t.ArtifactDir(), "kubetrail-data")
	serve := startProc(t, "kubetrail-serve", bin, "serve", "--listen", addr, "--data", data, "--detect=false",
		"--tls-cert", pki.serveCert, "--tls-key", pki.serveKey, "--client-ca", pki.ca,
		"--syslog-listen", "tcp://"+tcpAddr, "--syslog-listen", "tls://"+tlsAddr,
		"--forward", "syslog+tls://"+recvAddr+"#ca="+pki.ca)
	client := pki.client(t)
	base := "https://" + addr
	waitReady(t, serve, 30*time.Second, func(ctx context.Context) error {
		return httpGetOK(ctx, client, base+"/readyz", "")
	})

	// The audit log exists before rsyslog and the API server start, so
	// imfile reads it from its first line.
	logPath := filepath.Join(t.ArtifactDir(), "audit", "audit.log")
	if err := os.MkdirAll(filepath.Dir(logPath), 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, logPath, "")
	forwarded := filepath.Join(t.ArtifactDir(), "rsyslog-forwarded.log")
	rsDir := filepath.Join(dir, "rsyslog")
	if err := os.MkdirAll(rsDir, 0o700); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(rsDir, "rsyslog.conf")
	writeFile(t, conf, rsyslogFleetConf(rsDir, pki, logPath, tcpAddr, tlsAddr, recvPort, forwarded))
	rs := startProc(t, "rsyslogd", rsyslogBin, "-n", "-f", conf, "-i", filepath.Join(rsDir, "rsyslogd.pid"))
	waitReady(t, rs, 30*time.Second, func(ctx context.Context) error {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", recvAddr)
		if err == nil {
			conn.Close()
		}
		return err
	})

	c := startCluster(t, clusterConfig{auditLogPath: logPath})
	runScenario(t, c)
	c.stop(t)
	want, files := readAuditLog(t, c.auditLogPath)
	logCounts(t, "audit log", want, files)

	clusters := []string{"over-tcp", "over-tls"}
	deadline := time.Now().Add(60 * time.Second)
	for _, cl := range clusters {
		for len(exportEvents(t, bin, data, "--cluster", cl)) < len(want) && time.Now().Before(deadline) {
			time.Sleep(250 * time.Millisecond)
		}
	}
	for len(readForwarded(t, forwarded)) < len(clusters)*len(want) && time.Now().Before(deadline) {
		time.Sleep(250 * time.Millisecond)
	}
	// Anything sent twice would have arrived by now.
	time.Sleep(500 * time.Millisecond)
	metrics := getMetrics(t, client, base)
	if err := serve.stop(30 * time.Second); err != nil {
		t.Errorf("kubetrail serve must exit 0 on SIGTERM: %v", err)
	}

	fwd := readForwarded(t, forwarded)
	for _, cl := range clusters {
		got := exportEvents(t, bin, data, "--cluster", cl)
		assertSameEvents(t, "kubetrail export --cluster "+cl, got, "audit log", want)
		var msgs strings.Builder
		for _, f := range fwd {
			if f.cluster == cl {
				msgs.WriteString(f.msg + "\n")
			}
		}
		assertSameEvents(t, "rsyslog's file, cluster "+cl, parseEvents(t, strings.NewReader(msgs.String()), "rsyslog"), "audit log", want)
	}
	for _, tr := range []string{"tcp", "tls"} {
		stored := metricValue(metrics, `kubetrail_syslog_messages_total{result="stored",transport="`+tr+`"}`)
		dups := metricValue(metrics, `kubetrail_syslog_messages_total{result="duplicate",transport="`+tr+`"}`)
		if stored != float64(len(want)) || dups > 0 {
			t.Errorf("syslog over %s: %v stored and %v duplicates; want each of the %d events once", tr, stored, dups, len(want))
		}
	}
	t.Logf("%d events: once per transport in kubetrail, %d lines at rsyslog", len(want), len(fwd))
}

// rsyslogFleetConf is docs/ingest.md's rsyslog configuration, TCP and TLS
// actions side by side with their own cluster names, plus a TLS input
// (imtcp, gtls) that writes what kubetrail forwards to a file as
// STRUCTURED-DATA|MSG. One certificate serves rsyslog as a client (to
// kubetrail's --client-ca) and as a server (to kubetrail's forwarder).
func rsyslogFleetConf(dir string, pki testPKI, logPath, tcpAddr, tlsAddr string, recvPort int, out string) string {
	port := func(a string) string { return a[strings.LastIndexByte(a, ':')+1:] }
	return fmt.Sprintf(`global(workDirectory=%q maxMessageSize="4m"
       DefaultNetstreamDriverCAFile=%q
       DefaultNetstreamDriverCertFile=%q
       DefaultNetstreamDriverKeyFile=%q)
module(load="imfile")
module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1" StreamDriver.AuthMode="anon")
template(name="tcp" type="string"
         string="<%%PRI%%>1 %%TIMESTAMP:::date-rfc3339%% %%HOSTNAME%% %%APP-NAME%% - - [kubetrail@32473 cluster=\"over-tcp\"] %%msg%%")
template(name="tls" type="string"
         string="<%%PRI%%>1 %%TIMESTAMP:::date-rfc3339%% %%HOSTNAME%% %%APP-NAME%% - - [kubetrail@32473 cluster=\"over-tls\"] %%msg%%")
input(type="imfile" file=%q tag="kube-audit:" reopenOnTruncate="on" ruleset="kubetrail")
ruleset(name="kubetrail") {
  action(type="omfwd" target="127.0.0.1" port="%s" protocol="tcp"
         tcp_framing="octet-counted" template="tcp"
         queue.type="LinkedList" queue.filename="kubetrail-tcp" queue.saveOnShutdown="on"
         queue.maxDiskSpace="1g" action.resumeRetryCount="-1")
  action(type="omfwd" target="127.0.0.1" port="%s" protocol="tcp"
         StreamDriver="gtls" StreamDriverMode="1"
         StreamDriverAuthMode="x509/name" StreamDriverPermittedPeers="kubetrail.test"
         tcp_framing="octet-counted" template="tls"
         queue.type="LinkedList" queue.filename="kubetrail-tls" queue.saveOnShutdown="on"
         action.resumeRetryCount="-1")
}
template(name="received" type="string" string="%%structured-data%%|%%msg%%\n")
input(type="imtcp" port="%d" address="127.0.0.1" ruleset="received")
ruleset(name="received") {
  action(type="omfile" file=%q template="received")
}
`, dir, pki.ca, pki.rsyslogCert, pki.rsyslogKey, logPath, port(tcpAddr), port(tlsAddr), recvPort, out)
}

// forwardedLine is one message rsyslog received from kubetrail's
// forwarder.
type forwardedLine struct{ cluster, msg string }

var sdClusterRE = regexp.MustCompile(`^\[audit@32473 cluster="([^"]*)" auditID="[^"]*" stage="[^"]*"\]\|`)

// readForwarded reads rsyslog's file of forwarded events; a line not in
// the forwarder's format fails the test.
func readForwarded(t *testing.T, path string) []forwardedLine {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []forwardedLine
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 8<<20)
	for sc.Scan() {
		m := sdClusterRE.FindStringSubmatch(sc.Text())
		if m == nil {
			t.Fatalf("rsyslog's file has a line that is not a forwarded event: %.300q", sc.Text())
		}
		out = append(out, forwardedLine{cluster: m[1], msg: sc.Text()[len(m[0]):]})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// requireRsyslogGnuTLS checks for rsyslog's gtls network stream driver,
// which Debian ships apart from rsyslog.
func requireRsyslogGnuTLS(t *testing.T) {
	t.Helper()
	for _, pattern := range []string{"/usr/lib/*/rsyslog/lmnsd_gtls.so", "/usr/lib/rsyslog/lmnsd_gtls.so"} {
		if m, _ := filepath.Glob(pattern); len(m) > 0 {
			return
		}
	}
	unavailable(t, "rsyslog's gtls driver (lmnsd_gtls.so) is missing: apt-get install -y rsyslog-gnutls (Debian 12)")
}

// getMetrics returns serve's /metrics text.
func getMetrics(t *testing.T, client *http.Client, base string) string {
	t.Helper()
	resp, err := client.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s %v", resp.Status, err)
	}
	return string(b)
}

// metricValue returns the value of one series (name and labels as
// Prometheus prints them), or -1 when it is absent.
func metricValue(metrics, series string) float64 {
	for _, l := range strings.Split(metrics, "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return -1
			}
			return f
		}
	}
	return -1
}

// testPKI is a CA with a serving certificate for kubetrail
// (kubetrail.test, 127.0.0.1) and one for rsyslog (rsyslog.test,
// 127.0.0.1) good for both ends of a TLS connection; all PEM files.
type testPKI struct {
	ca, serveCert, serveKey, rsyslogCert, rsyslogKey string
}

func writeTestPKI(t *testing.T, dir string) testPKI {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kubetrail e2e CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	p := testPKI{ca: filepath.Join(dir, "ca.pem")}
	writeFile(t, p.ca, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})))
	leaf := func(serial int64, name string) (certPath, keyPath string) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
			DNSNames: []string{name}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
			KeyUsage:    x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		certPath, keyPath = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
		writeFile(t, certPath, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
		writeFile(t, keyPath, string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})))
		return certPath, keyPath
	}
	p.serveCert, p.serveKey = leaf(2, "kubetrail.test")
	p.rsyslogCert, p.rsyslogKey = leaf(3, "rsyslog.test")
	return p
}

// client is an HTTPS client that trusts the CA and presents rsyslog's
// certificate (serve runs with --client-ca).
func (p testPKI) client(t *testing.T) *http.Client {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(p.rsyslogCert, p.rsyslogKey)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p.ca)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(b)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}
