package cli

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestServeSyslogFlags: the flags reach the listener's configuration and
// its checks: plain TCP on every interface is refused without --insecure,
// a bad --syslog-listen or --syslog-cluster is named.
func TestServeSyslogFlags(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	f := func(want string, args ...string) {
		t.Helper()
		code, _, errOut := run(append([]string{"serve", "--data", data, "--listen", "127.0.0.1:0", "--detect=false"}, args...)...)
		if code != 1 || !strings.Contains(errOut, want) {
			t.Errorf("serve %q: exit %d, stderr %q; want 1 and %q", args, code, errOut, want)
		}
	}
	f("refusing to take syslog on tcp://0.0.0.0:0 without TLS", "--syslog-listen", "tcp://0.0.0.0:0")
	f(`unknown transport "relp"`, "--syslog-listen", "relp://127.0.0.1:0")
	f("--syslog-listen tls://127.0.0.1:0 needs --tls-cert", "--syslog-listen", "tls://127.0.0.1:0")
	f(`--syslog-cluster "bad name" is not a valid name`, "--syslog-listen", "tcp://127.0.0.1:0", "--syslog-cluster", "bad name")
}
