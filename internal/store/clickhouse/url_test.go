package clickhouse

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubetrail/kubetrail/internal/store/clickhouse/chtest"
)

// TestParseURLOptions: the scheme chooses HTTP or HTTPS and its default
// port; cluster, password_file and ca are read, and every misuse of them
// is an error naming the option.
func TestParseURLOptions(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pw := write("pw", "s3cret\r\n")
	empty := write("empty", "\n")
	notPEM := write("notpem", "hello")
	certs, err := chtest.WriteCerts(dir)
	if err != nil {
		t.Fatal(err)
	}
	ca := certs.CA

	f := func(in string, check func(Config) bool, wantErr string) {
		t.Helper()
		got, err := ParseURL(in)
		if wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), wantErr) {
				t.Errorf("ParseURL(%q): %v, want an error with %q", in, err, wantErr)
			}
			return
		}
		if err != nil || !check(got) {
			t.Errorf("ParseURL(%q) = %+v, %v", in, got, err)
		}
	}
	f("clickhouses://ch.example/k", func(c Config) bool { return c.Endpoint == "https://ch.example:8443" && c.TLS == nil }, "")
	f("clickhouses://ch.example:9443/k", func(c Config) bool { return c.Endpoint == "https://ch.example:9443" }, "")
	f("clickhouse://ch/k?cluster=logs_2", func(c Config) bool { return c.Cluster == "logs_2" && c.Endpoint == "http://ch:8123" }, "")
	f("clickhouse://bob@ch/k?password_file="+pw, func(c Config) bool { return c.User == "bob" && c.Password == "s3cret" }, "")
	f("clickhouses://ch/k?ca="+ca, func(c Config) bool { return c.TLS != nil && c.TLS.RootCAs != nil }, "")
	f("clickhouse://ch/k?cluster=a-b", nil, `cluster "a-b"`)
	f("clickhouse://ch/k?cluster=a;b", nil, "invalid semicolon")
	f("clickhouse://ch/k?cluster=", nil, "option cluster: want one value")
	f("clickhouse://ch/k?cluster=a&cluster=b", nil, "option cluster: want one value")
	f("clickhouse://bob:x@ch/k?password_file="+pw, nil, "give one")
	f("clickhouse://ch/k?password_file="+empty, nil, "is empty")
	shared := write("shared", "s3cret")
	if err := os.Chmod(shared, 0o644); err != nil {
		t.Fatal(err)
	}
	f("clickhouse://ch/k?password_file="+shared, nil, "chmod 600")
	f("clickhouse://ch/k?password_file="+filepath.Join(dir, "none"), nil, "password_file: open")
	f("clickhouse://ch/k?ca="+ca, nil, "use clickhouses://")
	f("clickhouses://ch/k?ca="+notPEM, nil, "no PEM certificate")
	f("clickhouses://ch/k?user=bob", nil, `unknown option "user"`)
	f("clickhouse://ch/k#x", nil, "fragment")
}

// TestRedact: what Redact returns never holds the password, whether or
// not the URL parses, and keeps the rest to be recognised.
func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"clickhouse://bob:s3cret@ch:8123/k":             "clickhouse://bob:xxxxx@ch:8123/k",
		"clickhouse://bob:s3cret@ch:bad/k":              "clickhouse://bob:xxxxx@ch:bad/k",
		"clickhouse://bob:s3%zzcret@ch/k?cluster=x":     "clickhouse://bob:xxxxx@ch/k?cluster=x",
		"clickhouse://bob:s3cr@t@ch:bad/k":              "clickhouse://bob:xxxxx@ch:bad/k",
		"bob:s3cret@ch:bad/k":                           "bob:xxxxx@ch:bad/k",
		"clickhouse://ch/k?password_file=/etc/kt/pw":    "clickhouse://ch/k?password_file=/etc/kt/pw",
		"clickhouses://bob@ch/k":                        "clickhouses://bob@ch/k",
		"clickhouse://bob:s3cret@ch:bad/k?x=a@b":        "clickhouse://bob:xxxxx@ch:bad/k?x=a@b",
		"clickhouse://bob:s3cret@[::1:bad/k":            "clickhouse://bob:xxxxx@[::1:bad/k",
		"clickhouse://bob:s3cret@ch:bad":                "clickhouse://bob:xxxxx@ch:bad",
		"clickhouses://bob:s3cret@ch:8443/k?cluster=c1": "clickhouses://bob:xxxxx@ch:8443/k?cluster=c1",
	} {
		if got := Redact(in); got != want || strings.Contains(got, "s3cr") {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}
