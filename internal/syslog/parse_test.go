package syslog

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParse(t *testing.T) {
	f := func(in string, want Received) {
		t.Helper()
		got, err := Parse([]byte(in))
		if err != nil {
			t.Errorf("%q: %v", in, err)
			return
		}
		if d := cmp.Diff(want, got, cmp.Transformer("str", func(b []byte) string { return string(b) })); d != "" {
			t.Errorf("%q (-want +got):\n%s", in, d)
		}
	}
	ev := `{"kind":"Event","auditID":"a"}`
	// RFC 5424: rsyslog's RSYSLOG_SyslogProtocol23Format, with kubetrail's
	// cluster element, escapes and a BOM.
	f(`<134>1 2026-01-01T10:00:00.000001+00:00 node1 kube-audit - - [kubetrail@32473 cluster="prod"][x@1 a="q\"\]\\ \n"] `+"\xEF\xBB\xBF"+ev+"\n",
		Received{Format: RFC5424, Facility: 16, Severity: 6, Hostname: "node1", AppName: "kube-audit",
			Data: []Element{{ID: "kubetrail@32473", Params: []Param{{"cluster", "prod"}}}, {ID: "x@1", Params: []Param{{"a", `q"]\ \n`}}}}, Msg: []byte(ev)})
	f(`<14>1 - - - - - - `+ev, Received{Format: RFC5424, Facility: 1, Severity: 6, Msg: []byte(ev)})
	f(`<14>1 - - - - - [a]`, Received{Format: RFC5424, Facility: 1, Severity: 6, Data: []Element{{ID: "a"}}, Msg: []byte{}})
	// RFC 3164: rsyslog's RSYSLOG_TraditionalForwardFormat and
	// RSYSLOG_ForwardFormat, syslog-ng's, and without a host.
	f(`<133>Jan  5 10:00:00 node1 kube-audit: `+ev, Received{Format: RFC3164, Facility: 16, Severity: 5, Hostname: "node1", AppName: "kube-audit", Msg: []byte(ev)})
	f(`<133>2026-01-05T10:00:00.123456+00:00 node1 kube-audit[42]: `+ev, Received{Format: RFC3164, Facility: 16, Severity: 5, Hostname: "node1", AppName: "kube-audit", Msg: []byte(ev)})
	f(`<133>Jan  5 10:00:00 kube-audit: @cee: `+ev, Received{Format: RFC3164, Facility: 16, Severity: 5, AppName: "kube-audit", Msg: []byte("@cee: " + ev)})
	f(`<13>Jan  5 10:00:00 node1 app: hello world`, Received{Format: RFC3164, Facility: 1, Severity: 5, Hostname: "node1", AppName: "app", Msg: []byte("hello world")})
	f(`<13>`+ev, Received{Format: RFC3164, Facility: 1, Severity: 5, Msg: []byte(ev)})

	bad := func(in, want string) {
		t.Helper()
		if _, err := Parse([]byte(in)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want it to say %q", in, err, want)
		}
	}
	bad(ev, `not a syslog message: starts with "{\"kind\":\"Eve..."`)
	bad(`<>1 - - - - - -`, "bad <PRI>")
	bad(`<192>1 - - - - - -`, "bad <PRI>")
	bad(`<1234>x`, "bad <PRI>")
	bad(`<14>1 2026-01-01T00:00:00Z host`, "RFC 5424 header cut short")
	bad(`<14>1 - - - - - [a b="c`, "a value never ends")
	bad(`<14>1 - - - - - [a b=c]`, `want NAME="VALUE"`)
	bad(`<14>1 - - - - - [a`, "an element never ends")
	bad(`<14>1 - - - - - x`, "want '-' or '['")
	bad(`<14>1 - - - - - -x`, "want a space after the structured data")
}
