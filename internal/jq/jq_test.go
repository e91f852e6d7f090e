package jq

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"

	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/query"
	"github.com/kubetrail/kubetrail/internal/testenv"
)

// jqPath finds the real jq, the oracle of these tests: exactly the version
// the byte identity is proven for (testenv.JQVersion). CI installs it; a
// developer without it gets a skip, CI a failure.
func jqPath(t testing.TB) string {
	t.Helper()
	return testenv.JQ(t)
}

// runJQ runs jq -c prog over input and returns its standard output.
func runJQ(t testing.TB, prog string, input []byte, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(jqPath(t), append(append([]string{"-c"}, args...), prog)...)
	cmd.Stdin = bytes.NewReader(input)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		// jq exits 5 after runtime errors but still prints the rest.
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 5 {
			t.Fatalf("jq %s: %v\n%s", prog, err, stderr.Bytes())
		}
	}
	return out.Bytes()
}

// corpus is a generated audit log: the bench generator's realistic mix
// (bodies with managedFields, URIs with & in the query, impersonation, ...)
// plus hand-made lines for the encodings the generator does not produce.
var corpus = sync.OnceValues(func() ([]byte, error) {
	out, err := exec.Command("go", "run", "../../bench/gen", "--events", "6000", "--seed", "11").Output()
	if err != nil {
		return nil, fmt.Errorf("bench/gen: %v", err)
	}
	return append(out, oddLines...), nil
})

var oddLines = []byte(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Request","auditID":"odd-1","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/configmaps?fieldManager=kubectl\u0026dryRun=All","verb":"create","user":{"username":"alice","groups":["system:authenticated"]},"sourceIPs":["10.0.0.1"],"userAgent":"kubectl/v1.32 \u003cscript\u003e","objectRef":{"resource":"configmaps","namespace":"default","name":"odd","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":201},"requestObject":{"kind":"ConfigMap","data":{"z":"line1\nline2\ttab \"q\" \\ back \u0001 \u007f é ü 日本 \u2028 😀","a":"1e5","n":[1,1.0,1.5,-0,0.1,1e-7,123456789012345678,2.5e17,1e300,12345.678]}},"requestReceivedTimestamp":"2026-11-01T00:00:00.000001Z","stageTimestamp":"2026-11-01T00:00:00.000200Z"}
{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"odd-2","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/kube-system/secrets/x","verb":"get","user":{"username":"bob"},"impersonatedUser":{"username":"system:admin","groups":["system:masters"]},"sourceIPs":["192.168.1.100","10.0.0.2"],"userAgent":"curl","objectRef":{"resource":"secrets","namespace":"kube-system","name":"x","apiVersion":"v1"},"responseStatus":{"metadata":{},"status":"Failure","reason":"Forbidden","code":403},"requestReceivedTimestamp":"2026-11-01T00:00:01.000001Z","stageTimestamp":"2026-11-01T00:00:01.000200Z","annotations":{"authorization.k8s.io/decision":"forbid","authorization.k8s.io/reason":""}}
`)

func loadCorpus(t testing.TB) [][]byte {
	t.Helper()
	b, err := corpus()
	if err != nil {
		t.Fatal(err)
	}
	return bytes.SplitAfter(bytes.TrimSuffix(b, []byte("\n")), []byte("\n"))
}

// runProgram runs a program over every line as --jq does and returns what
// it printed; runtime errors are skipped as jq skips them (jq prints them to
// standard error and goes on).
func runProgram(t testing.TB, p *Program, lines [][]byte) []byte {
	t.Helper()
	var out []byte
	for _, l := range lines {
		var err error
		out, _, err = p.Run(context.Background(), bytes.TrimSuffix(l, []byte("\n")), out)
		if err == ErrHalt {
			break
		}
	}
	return out
}

// seedPrograms are the jq queries of the seed material, and the
// shapes analysts write around them.
var seedPrograms = []string{
	`.`,
	`select(.objectRef.resource == "secrets")`,
	`select(.user.username == "admin")`,
	`select(.responseStatus.code >= 400)`,
	`select(.objectRef.subresource == "exec")`,
	`select(.sourceIPs[] == "192.168.1.100")`,
	`select(any(.sourceIPs[]?; . == "192.168.1.100"))`,
	`select(.objectRef.resource | test("role"))`,
	`select(.objectRef.resource != null and (.objectRef.resource | test("role")))`,
	`{user: .user.username, time: .requestReceivedTimestamp}`,
	`select(.objectRef.resource == "secrets") | {user: .user.username, verb: .verb, name: .objectRef.name, time: .requestReceivedTimestamp}`,
	`select(.verb == "delete" and .objectRef.resource == "secrets" and .objectRef.namespace == "production" and .objectRef.name == "important")`,
	`select(.verb=="delete" and .objectRef.resource=="secrets" and .objectRef.namespace=="production" and .objectRef.name=="important") | {user: .user, impersonated: .impersonatedUser, ips: .sourceIPs, ua: .userAgent, time: .requestReceivedTimestamp, code: .responseStatus.code}`,
	`select(.objectRef.apiGroup == "rbac.authorization.k8s.io" and (.verb == "create" or .verb == "update" or .verb == "patch" or .verb == "delete"))`,
	`select(.responseStatus.code == 401 or .responseStatus.code == 403 or .annotations["authorization.k8s.io/decision"] == "forbid") | .user.username`,
	`select(.impersonatedUser != null) | [.user.username, .impersonatedUser.username]`,
	`select(.user.groups[]? == "system:masters") | .auditID`,
	`select(.userAgent | startswith("kubectl")) | .objectRef`,
	`select(.verb | IN("create","update","patch")) | .requestObject`,
	`.user`,
	`.responseStatus`,
	`select(.level == "RequestResponse") | .responseObject`,
	`del(.requestObject, .responseObject)`,
	`. + {cluster: "prod"}`,
	`.annotations`,
	`.objectRef.name |= ascii_upcase`,
	`select(.requestObject != null) | .requestObject.metadata`,
	`[.verb, .responseStatus.code, .sourceIPs[0]]`,
	`.stageTimestamp, .requestURI`,
	`select(.requestURI | contains("&"))| .requestURI`,
	`select(.responseStatus.code > 399) | .responseStatus.code / 7`,
	`{a: 1, b: [1.5, 2, 100000000000000000000, 0.00001]}`,
}

func TestProgramsMatchJQ(t *testing.T) {
	jqPath(t)
	lines := loadCorpus(t)
	input := bytes.Join(lines, nil)
	for _, src := range seedPrograms {
		t.Run(src, func(t *testing.T) {
			p, err := Compile(src, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Warnings) > 0 {
				t.Fatalf("unexpected order warnings: %v", p.Warnings)
			}
			want := runJQ(t, src, input)
			have := runProgram(t, p, lines)
			if len(want) == 0 {
				t.Fatalf("jq printed nothing for %s: the corpus does not exercise it", src)
			}
			compareLines(t, want, have)
		})
	}
}

func compareLines(t *testing.T, want, have []byte) {
	t.Helper()
	if bytes.Equal(want, have) {
		return
	}
	w := strings.Split(string(want), "\n")
	h := strings.Split(string(have), "\n")
	for i := range max(len(w), len(h)) {
		var a, b string
		if i < len(w) {
			a = w[i]
		}
		if i < len(h) {
			b = h[i]
		}
		if a != b {
			t.Fatalf("line %d of %d (jq) / %d (kubetrail) differs:\n  jq        %s\n  kubetrail %s", i+1, len(w), len(h), a, b)
		}
	}
}

// TestRawOutput: -r prints strings as they are, other values as JSON.
func TestRawOutput(t *testing.T) {
	lines := loadCorpus(t)
	src := `select(.responseStatus.code >= 400) | .user.username, .responseStatus.code, .requestURI`
	p, err := Compile(src, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	p.Raw = true
	compareLines(t, runJQ(t, src, bytes.Join(lines, nil), "-r"), runProgram(t, p, lines))
}

// TestPushdownIsImplied: on every event a program prints something for,
// the pushed-down filter holds. Programs without push-down are listed so
// that a change that loses one is noticed.
func TestPushdownIsImplied(t *testing.T) {
	lines := loadCorpus(t)
	noPushdown := map[string]bool{
		`.`: true, `{user: .user.username, time: .requestReceivedTimestamp}`: true, `.user`: true, `.responseStatus`: true,
		`del(.requestObject, .responseObject)`: true, `. + {cluster: "prod"}`: true, `.annotations`: true,
		`.objectRef.name |= ascii_upcase`: true, `[.verb, .responseStatus.code, .sourceIPs[0]]`: true,
		`.stageTimestamp, .requestURI`: true, `{a: 1, b: [1.5, 2, 100000000000000000000, 0.00001]}`: true,
		`select(.impersonatedUser != null) | [.user.username, .impersonatedUser.username]`: true,
		`select(.requestObject != null) | .requestObject.metadata`:                         true,
		`select(.objectRef.resource != null and (.objectRef.resource | test("role")))`:     false,
	}
	for _, src := range seedPrograms {
		p, err := Compile(src, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		f := p.Filter()
		if (f == nil) != noPushdown[src] {
			t.Errorf("%s: push-down %v, want one: %v", src, f, !noPushdown[src])
			continue
		}
		if f == nil {
			continue
		}
		kept, printed := 0, 0
		for _, l := range lines {
			l = bytes.TrimSuffix(l, []byte("\n"))
			out, n, _ := p.Run(context.Background(), l, nil)
			var ev audit.Event
			if err := audit.DecodeStored(l, &ev); err != nil {
				t.Fatal(err)
			}
			match := f.Match(&ev, "")
			if match {
				kept++
			}
			if n > 0 {
				printed++
				if !match {
					t.Fatalf("%s: push-down %s drops an event the program prints %s for:\n%s", src, f, out, l)
				}
			}
		}
		t.Logf("%-60.60s push-down %s keeps %d of %d events, %d printed", src, f, kept, len(lines), printed)
	}
}

// TestPushdownFilters pins the translation of each supported shape.
func TestPushdownFilters(t *testing.T) {
	for src, want := range map[string]string{
		`select(.objectRef.resource == "secrets")`:                                `resource=secrets`,
		`select("secrets" == .objectRef.resource)`:                                `resource=secrets`,
		`select(.sourceIPs[] == "192.168.1.100")`:                                 `ip=192.168.1.100`,
		`select(any(.sourceIPs[]?; . == "192.168.1.100"))`:                        `ip=192.168.1.100`,
		`select(.responseStatus.code >= 400)`:                                     `code>=400`,
		`select(400 < .responseStatus.code)`:                                      `code>400`,
		`select(.responseStatus.code <= 400)`:                                     ``,
		`select(.objectRef.resource | test("role"))`:                              `resource~"role"`,
		`select(.userAgent | startswith("kubectl/"))`:                             `ua~"^kubectl/"`,
		`select(.verb | IN("create", "delete"))`:                                  `verb in (create, delete)`,
		`select(.verb == "delete" or .verb == "create") | .user`:                  `verb=delete or verb=create`,
		`select(.verb == "delete") | select(.objectRef.namespace == "p") | .user`: `verb=delete and ns=p`,
		`select(.annotations["authorization.k8s.io/decision"] == "forbid")`:       `annotation[authorization.k8s.io/decision]=forbid`,
		`select(.user.groups[] == "system:masters")`:                              `group=system:masters`,
		`select(.verb == "delete" and (.objectRef.name | test("a")) and .x == 1)`: `verb=delete and name~"a"`,
		`select(.verb == "delete" or .x == 1)`:                                    ``,
		`select(.objectRef.name == "")`:                                           ``,
		`def select(f): .; select(.verb == "delete")`:                             ``,
		`.items[] | select(.verb == "delete")`:                                    ``,
		`select(.verb == "delete"), select(.verb == "create")`:                    `verb=delete or verb=create`,
		`select(.objectRef.name == "a*b")`:                                        `name="a*b"`,
		`select(.responseStatus.code == 0)`:                                       ``,
	} {
		p, err := Compile(src, time.Now())
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		have := ""
		if e := p.Pushdown(); e != nil {
			have = query.Canonical(e)
		}
		if have != want {
			t.Errorf("%s\n  push-down %q, want %q", src, have, want)
		}
	}
}

// TestNumbersAndStringsMatchJQ prints every number and string form through
// decode and encode and compares with jq -c.
func TestNumbersAndStringsMatchJQ(t *testing.T) {
	values := []string{
		`0`, `-0`, `1`, `-1`, `1.0`, `1.5`, `0.1`, `0.0001`, `0.00001`, `1e-5`, `1E5`, `1e15`, `1e16`, `1.5e16`,
		`1e17`, `2.5e17`, `123456789012345678`, `12345678901234567890`, `9007199254740993`, `9007199254740992`,
		`-9007199254740993`, `1e300`, `1.7976931348623157e308`, `1e1000`, `-1e1000`, `5e-324`, `1e-400`,
		`3.14159265358979323846`, `100`, `1e2`, `0.000123456`, `123456789.123`, `-0.0`, `2e-7`,
		`"plain"`, `""`, `"a\"b\\c\/d"`, `"\u0000\u0001\u001f\u007f\u0080"`, `"\b\f\n\r\t"`,
		`"\u003c\u003e\u0026 <>&"`, `"é日本😀"`, `"\ud83d\ude00"`, `"\u2028\u2029"`, "\"\xff\xfeab\"",
		`{"b":1,"a":2,"b":3}`, `{"":{"":[]}}`, `[]`, `{}`, `[{}, [[]], null, true, false]`,
		// Escaped keys, alone and repeating another spelled plainly.
		`{"k:{\"name\":\"app\"}":{}}`, `{"ve\u0072b":1}`, `{"ve\u0072b":1,"verb":2}`, `{"verb":1,"ve\u0072b":2}`,
		`{"é":1,"\u00e9":2}`, `{"a\u0000b":1,"a\nb":2}`, `{"x":{"\u0061":1,"a":2},"a":3}`,
		// Strings crossing eight-byte words with a quote, a backslash, DEL
		// and non-ASCII at each place.
		"\"abcdefg\\\"h\"", "\"abcdefgh\\\\\"", "\"abcdefgh\x7f\"", "\"abcdefghé\"", "\"abcdefghijklmnop\"", "\"\x7fabcdefgh\"",
		"\"abcdefghijklmno\x7f\"",
	}
	// Each value also inside an object with white space around it, which
	// takes the path that reformats the event's text.
	for _, v := range values[:len(values):len(values)] {
		values = append(values, "{ \"v\" : "+v+" ,\n \"w\":[ "+v+" ] }")
	}
	in := []byte(strings.Join(values, "\n") + "\n")
	want := runJQ(t, ".", in)
	p, err := Compile(".", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var have []byte
	for _, v := range values {
		have, _, err = p.Run(context.Background(), []byte(v), have)
		if err != nil {
			t.Fatalf("%s: %v", v, err)
		}
	}
	compareLines(t, want, have)
}

func TestCompileErrors(t *testing.T) {
	for src, want := range map[string]string{
		`select(.verb == )`:         "--jq: unexpected token \")\"\n  select(.verb == )\n                  ^",
		`inputs`:                    "--jq: inputs reads the remaining inputs; --jq runs the program once per stored event",
		`[.[] | input_line_number]`: "--jq: input_line_number needs the line of the raw log",
		`foo(1)`:                    "--jq: function not defined: foo/1",
	} {
		_, err := Compile(src, time.Now())
		if err == nil {
			t.Fatalf("%s: compiled", src)
		}
		have := err.(*Error).Format(src)
		if !strings.HasPrefix(have, want) {
			t.Errorf("%s:\n%s\nwant prefix\n%s", src, have, want)
		}
	}
}

func TestOrderWarnings(t *testing.T) {
	p, err := Compile(`.annotations | to_entries`, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Warnings) != 1 || !strings.Contains(p.Warnings[0], "to_entries") {
		t.Fatalf("warnings %v", p.Warnings)
	}
}

func BenchmarkRun(b *testing.B) {
	lines := loadCorpus(b)
	for _, src := range []string{`select(.objectRef.resource == "secrets")`, `.`, `{user: .user.username, time: .requestReceivedTimestamp}`} {
		b.Run(src, func(b *testing.B) {
			p, err := Compile(src, time.Now())
			if err != nil {
				b.Fatal(err)
			}
			var size int64
			for _, l := range lines {
				size += int64(len(l))
			}
			b.SetBytes(size / int64(len(lines)))
			var buf []byte
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				buf, _, _ = p.Run(context.Background(), bytes.TrimSuffix(lines[i%len(lines)], []byte("\n")), buf[:0])
			}
		})
	}
}

// BenchmarkRunContexts runs an instruction-heavy program under the three
// contexts a run can have: none (gojq skips its per-instruction check), a
// plain cancellable one (the check is a channel poll), and the watchdog's,
// which also counts instructions to sample the limits every probeEvery.
func BenchmarkRunContexts(b *testing.B) {
	lines := loadCorpus(b)
	p, err := Compile(`[..] | length`, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	plain, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := Watch(context.Background(), Limits{Timeout: time.Hour, MaxMemory: 1 << 40})
	defer w.Stop()
	for _, c := range []struct {
		name string
		ctx  context.Context
	}{{"background", context.Background()}, {"cancellable", plain}, {"watchdog", w.Context()}} {
		b.Run(c.name, func(b *testing.B) {
			var buf []byte
			w.Begin()
			defer w.End()
			for i := 0; b.Loop(); i++ {
				buf, _, _ = p.Run(c.ctx, bytes.TrimSuffix(lines[i%len(lines)], []byte("\n")), buf[:0])
			}
		})
	}
}
