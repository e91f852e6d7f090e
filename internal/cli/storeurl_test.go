package cli

import (
	"strings"
	"testing"
)

// TestStoreURLPasswordNeverPrinted: whatever is wrong with a --store URL
// holding a password (a server that cannot be reached, a URL that does
// not parse, another scheme, a bad option), every command that takes
// --store, and migrate, fails without printing the password.
func TestStoreURLPasswordNeverPrinted(t *testing.T) {
	const pw = "S3cret-pw"
	for _, u := range []string{
		"clickhouse://kt:" + pw + "@127.0.0.1:1/kt",
		"clickhouses://kt:" + pw + "@127.0.0.1:1/kt",
		"clickhouse://kt:" + pw + "@127.0.0.1:bad/kt",
		"clickhouse://kt:" + pw + "%zz@127.0.0.1/kt",
		"mysql://kt:" + pw + "@127.0.0.1/kt",
		"clickhouse://kt:" + pw + "@127.0.0.1:1/kt?nope=1",
		"clickhouse://kt:" + pw + "@127.0.0.1:1/k;t",
	} {
		dir := t.TempDir()
		for _, args := range [][]string{
			{"query", "--store", u}, {"stats", "--store", u}, {"export", "--store", u}, {"setup", "clickhouse", "--store", u},
			{"timeline", "--store", u}, {"who", "get", "secrets", "--store", u},
			{"migrate", "--from", dir, "--to", u}, {"migrate", "--from", u, "--to", dir}, {"migrate", "--from", u, "--to", u},
			// serve starts while ClickHouse is down, logging why; a port
			// it cannot listen on ends it.
			{"serve", "--data", dir, "--listen", "127.0.0.1:99999", "--store", u},
			{"import", "--data", dir, "--store", u, "../investigate/testdata/incident/incident.log.gz"},
			{"detect", "--follow", "--data", dir, "--store", u},
		} {
			code, out, errOut := run(args...)
			if code == 0 || errOut == "" {
				t.Errorf("%v: exit %d, %q; want a failure", args, code, errOut)
			}
			if strings.Contains(out+errOut, pw) {
				t.Errorf("%v: the password is printed: %s", args, errOut)
			}
		}
	}
}

// TestCollectorsTakeTLSStores: the collectors (import, serve, tail) take
// a clickhouses:// store as the readers do; with no server there, they
// fail to reach it rather than refusing the URL's form.
func TestCollectorsTakeTLSStores(t *testing.T) {
	u := "clickhouses://127.0.0.1:1/kt"
	dir := t.TempDir()
	code, _, errOut := run("import", "--data", dir, "--store", u, "../investigate/testdata/incident/incident.log.gz")
	if code == 0 || strings.Contains(errOut, "want clickhouse://") || !strings.Contains(errOut, "not reachable at https://127.0.0.1:1") {
		t.Errorf("import --store %s: exit %d, %q; want a failure to reach it over HTTPS", u, code, errOut)
	}
}
