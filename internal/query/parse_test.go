package query

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseCanonical(t *testing.T) {
	f := func(src, want string) {
		t.Helper()
		e, err := Parse(src)
		if err != nil {
			t.Errorf("Parse(%q): %v", src, err)
			return
		}
		got := Canonical(e)
		if got != want {
			t.Errorf("Parse(%q)\n got  %s\n want %s", src, got, want)
			return
		}
		// The canonical form is a fixed point.
		e2, err := Parse(got)
		if err != nil {
			t.Errorf("Parse(canonical %q): %v", got, err)
			return
		}
		if again := Canonical(e2); again != got {
			t.Errorf("canonical of %q is not stable: %q", got, again)
		}
	}

	// The examples from DESIGN.md.
	f(`verb=delete resource=secrets ns=production name=important`,
		`verb=delete and resource=secrets and ns=production and name=important`)
	f(`user=attacker or ip in 192.168.0.0/16`, `user=attacker or ip in (192.168.0.0/16)`)
	f(`subresource in (exec,attach)`, `subresource in (exec, attach)`)
	f(`code>=400 not user~"^system:"`, `code>=400 and not user~"^system:"`)

	// Empty filters.
	f(``, ``)
	f("  \t\n ", ``)

	// Operators.
	f(`user=alice`, `user=alice`)
	f(`user == alice`, `user=alice`)
	f(`user != alice`, `user!=alice`)
	f(`user ~ adm`, `user~"adm"`)
	f(`user =~ adm`, `user~"adm"`)
	f(`user !~ "^system:"`, `user!~"^system:"`)
	f(`user~a*b`, `user~"a*b"`)
	f(`code<400`, `code<400`)
	f(`code <= 400`, `code<=400`)
	f(`code>499`, `code>499`)
	f(`code >= 500`, `code>=500`)
	f(`code in (401, 403)`, `code in (401, 403)`)
	f(`code not in (200,201)`, `code not in (200, 201)`)
	f(`ip in 10.0.0.0/8`, `ip in (10.0.0.0/8)`)
	f(`ip NOT IN (10.0.0.0/8, 192.168.0.0/16)`, `ip not in (10.0.0.0/8, 192.168.0.0/16)`)
	f(`ip=192.168.1.100`, `ip=192.168.1.100`)
	f(`ip=2001:db8::1`, `ip=2001:db8::1`)
	f(`peer=10.0.0.0/8`, `peer=10.0.0.0/8`)
	f(`level>=Request`, `level>=Request`)
	f(`time>=2026-01-02T15:04:05Z`, `time>=2026-01-02T15:04:05Z`)
	f(`time>-2h time<-1h30m`, `time>-2h and time<-1h30m`)
	f(`time>=2026-01-02 received<2026-01-03T10:00`, `time>=2026-01-02 and received<2026-01-03T10:00`)

	// Globs and quoting.
	f(`user=system:node:*`, `user=system:node:*`)
	f(`user="system:node:*"`, `user="system:node:*"`)
	f(`name="my pod"`, `name="my pod"`)
	f(`name='my pod'`, `name="my pod"`)
	f(`name="plain"`, `name=plain`)
	f(`name=""`, `name=""`)
	f(`name="a\"b"`, `name="a\"b"`)
	f(`name='it\'s'`, `name="it's"`)
	f(`name="back\\slash"`, `name=back\slash`)
	f(`name="a\\ b"`, `name="a\\ b"`)
	f(`user~"\d+"`, `user~"\\d+"`)
	f(`uri="/api/v1/pods?watch=true"`, `uri="/api/v1/pods?watch=true"`)
	f(`name=héllo`, `name=héllo`)
	f(`name="and"`, `name=and`)
	f(`ns in (not, or, and, in)`, `ns in (not, or, and, in)`)
	f(`verb=get and name=not`, `verb=get and name=not`)

	// Free text.
	f(`"kube-system"`, `"kube-system"`)
	f(`"kube-system" verb=delete`, `"kube-system" and verb=delete`)
	f(`'a "quoted" word'`, `"a \"quoted\" word"`)
	f(`""`, `""`)

	// Boolean structure and precedence: not > and > or.
	f(`verb=get user=a or ns=b`, `verb=get and user=a or ns=b`)
	f(`verb=get user=a or verb=list user=b`, `verb=get and user=a or verb=list and user=b`)
	f(`verb=get (user=a or user=b)`, `verb=get and (user=a or user=b)`)
	f(`verb=get and (user=a or user=b) and ns=x`, `verb=get and (user=a or user=b) and ns=x`)
	f(`not verb=get or user=a`, `not verb=get or user=a`)
	f(`not (verb=get or user=a)`, `not (verb=get or user=a)`)
	f(`not (verb=get user=a)`, `not (verb=get and user=a)`)
	f(`not not verb=get`, `not not verb=get`)
	f(`! verb=get`, `not verb=get`)
	f(`!(verb=get)`, `not verb=get`)
	f(`verb=get && user=a || ns=b`, `verb=get and user=a or ns=b`)
	f(`((verb=get))`, `verb=get`)
	f(`(verb=get and user=a) and ns=b`, `verb=get and user=a and ns=b`)
	f(`verb=get or (user=a or ns=b)`, `verb=get or user=a or ns=b`)
	f(`verb=get AND user=a Or ns=b`, `verb=get and user=a or ns=b`)

	// Field names: aliases, case and dotted event paths.
	f(`namespace=x`, `ns=x`)
	f(`objectRef.namespace=x`, `ns=x`)
	f(`OBJECTREF.NAME=x`, `name=x`)
	f(`user.username=x`, `user=x`)
	f(`user.groups=system:masters`, `group=system:masters`)
	f(`impersonatedUser.username=x`, `as=x`)
	f(`responseStatus.code=403`, `code=403`)
	f(`responseStatus.reason=Forbidden`, `reason=Forbidden`)
	f(`sourceIPs=10.0.0.1`, `ip=10.0.0.1`)
	f(`ip.peer=10.0.0.1`, `peer=10.0.0.1`)
	f(`userAgent~kubectl`, `ua~"kubectl"`)
	f(`requestURI=/healthz`, `uri=/healthz`)
	f(`auditID=abc`, `auditid=abc`)
	f(`stageTimestamp>-1h`, `time>-1h`)
	f(`requestReceivedTimestamp>-1h`, `received>-1h`)
	f(`objectref.resourceversion=5`, `objectRef.resourceVersion=5`)
	f(`annotation[authorization.k8s.io/decision]=forbid`, `annotation[authorization.k8s.io/decision]=forbid`)
	f(`annotations["my key"]=x`, `annotation["my key"]=x`)
	f(`annotations.authorization.k8s.io/reason~RBAC`, `annotation[authorization.k8s.io/reason]~"RBAC"`)
	f(`user.extra.authentication.kubernetes.io/pod-name=p`, `user.extra[authentication.kubernetes.io/pod-name]=p`)
	f(`user.extra[scopes]=x`, `user.extra[scopes]=x`)
	f(`impersonatedUser.extra.k=v`, `as.extra[k]=v`)
	f(`decision=forbid cluster=prod-*`, `decision=forbid and cluster=prod-*`)
}

// canonicalOf parses src and returns its canonical text, failing the test
// on error.
func canonicalOf(t *testing.T, src string) string {
	t.Helper()
	e, err := Parse(src)
	if err != nil {
		t.Fatalf("Parse(%q): %v", src, err)
	}
	return Canonical(e)
}

func TestParseTree(t *testing.T) {
	e, err := Parse(`verb=delete (user=a or ip in (10.0.0.0/8, 1.2.3.4)) not "x"`)
	if err != nil {
		t.Fatal(err)
	}
	want := &And{Terms: []Expr{
		&Cmp{Field: Field{Name: "verb"}, Op: OpEq, Values: []Value{{Text: "delete", Pos: 5}}, Pos: 0},
		&Or{Terms: []Expr{
			&Cmp{Field: Field{Name: "user"}, Op: OpEq, Values: []Value{{Text: "a", Pos: 18}}, Pos: 13},
			&Cmp{Field: Field{Name: "ip"}, Op: OpIn, Values: []Value{{Text: "10.0.0.0/8", Pos: 30}, {Text: "1.2.3.4", Pos: 42}}, Pos: 23},
		}},
		&Not{X: &Text{Text: "x", Pos: 56}},
	}}
	if diff := cmp.Diff(want, e); diff != "" {
		t.Errorf("tree (-want +got):\n%s", diff)
	}
	if got := Conjuncts(e); len(got) != 3 {
		t.Errorf("Conjuncts: %d terms, want 3", len(got))
	}
	var n int
	Walk(e, func(Expr) bool { n++; return true })
	if n != 7 {
		t.Errorf("Walk visited %d nodes, want 7", n)
	}
}

func TestParseErrors(t *testing.T) {
	f := func(src string, col int, msg string) {
		t.Helper()
		_, err := Parse(src)
		var pe *Error
		if !errors.As(err, &pe) {
			t.Errorf("Parse(%q): error %v, want *Error", src, err)
			return
		}
		if pe.Col != col || !strings.Contains(pe.Msg, msg) {
			t.Errorf("Parse(%q):\n got  column %d: %s\n want column %d: ...%s...", src, pe.Col, pe.Msg, col, msg)
		}
	}
	f(`usr=alice`, 1, `unknown field "usr" (did you mean "user"?); fields: user, group,`)
	f(`verb=get namespce=x`, 10, `unknown field "namespce" (did you mean "namespace"?)`)
	f(`verb=get xyzzy=1`, 10, `unknown field "xyzzy"; fields: user`)
	f(`kube-system`, 1, `to search free text, quote it: "kube-system"`)
	f(`verb get`, 6, `expected an operator after "verb"`)
	f(`verb=`, 6, `expected a value after '=', got end of filter`)
	f(`verb=get and`, 13, `expected a term after 'and', got end of filter`)
	f(`verb=get or or user=a`, 13, `expected a term after 'or', got "or"`)
	f(`not`, 4, `expected a term after 'not'`)
	f(`and verb=get`, 1, `expected a term, got 'and'`)
	f(`(verb=get`, 1, `unclosed '('`)
	f(`verb=get)`, 9, `unexpected ')' with no matching '('`)
	f(`()`, 2, `empty parentheses`)
	f(`user=a,b`, 7, `to match several values write field in (a, b)`)
	f(`user in ()`, 10, `empty list`)
	f(`user in (a b)`, 12, `expected ',' or ')' in the list, got "b"`)
	f(`user in (a,`, 12, `expected a value after '(', got end of filter`)
	f(`user in (a`, 9, `unclosed '('`)
	f(`user=(a)`, 6, `lists go with in`)
	f(`name="abc`, 6, `unterminated quoted string`)
	f(`name='abc"`, 6, `unterminated quoted string: missing closing '`)
	f(`user=a & verb=b`, 8, `unexpected "&"`)
	f(`"user"=alice`, 1, `field names must not be quoted`)
	f(`annotation=x`, 1, `field annotation needs a key: annotation[KEY]`)
	f(`annotation[x=y`, 13, `expected ']' after the key`)
	f(`annotation[=y`, 12, `expected a key after '['`)
	f(`user[x]=y`, 6, `field user takes no [key]`)
	f(`user~"(a"`, 6, `invalid regular expression "(a": missing closing )`)
	f(`user<b`, 1, `operator < applies to code, level, time and received only`)
	f(`code=abc`, 6, `invalid code "abc"`)
	f(`code=4*`, 6, `invalid code "4*"`)
	f(`code=-1`, 6, `invalid code "-1"`)
	f(`code~"^4"`, 1, `operator ~ does not apply to code`)
	f(`ip=10.0.0.300`, 4, `invalid IP "10.0.0.300"`)
	f(`ip in (10.0.0.0/8, 10.0.0.0/33)`, 20, `invalid IP "10.0.0.0/33"`)
	f(`ip<10.0.0.1`, 1, `operator < applies to code, level, time and received only`)
	f(`level=metadata`, 7, `invalid level "metadata" (did you mean "Metadata"?)`)
	f(`level>=Everything`, 8, `invalid level "Everything"`)
	f(`stage in (ResponseComplete, Done)`, 29, `invalid stage "Done"`)
	f(`time>yesterday`, 6, `invalid time "yesterday": expected an RFC 3339 time`)
	f(`time>-2y`, 6, `unknown duration unit "y"`)
	f(`time>-`, 6, `expected a duration after '-'`)
	f(`time>-99999999999h`, 6, `too large: at most 100 years`)
	f(`time>-2h3`, 6, `whole numbers each followed by a unit`)
	f(`time~"2026"`, 1, `operator ~ does not apply to time`)
	f(`time in (2026-01-02)`, 1, `operator in does not apply to time`)
	f(`time>2026-*`, 6, `takes a time, not a pattern`)
	f(strings.Repeat("(", 200)+"verb=get"+strings.Repeat(")", 200), 101, `nested more than 100 levels deep`)
	f(strings.Repeat("not ", 200)+"verb=get", 401, `nested more than 100 levels deep`)
	// Columns count characters, not bytes.
	f(`name=héllo usr=x`, 12, `unknown field "usr"`)
	// Several lines.
	_, err := Parse("verb=get\n  usr=x")
	var pe *Error
	if !errors.As(err, &pe) || pe.Line != 2 || pe.Col != 3 || !strings.HasPrefix(pe.Error(), "line 2, column 3: unknown field") {
		t.Errorf("multi-line error: %v", err)
	}
}

func TestErrorFormat(t *testing.T) {
	f := func(src, want string) {
		t.Helper()
		_, err := Parse(src)
		var pe *Error
		if !errors.As(err, &pe) {
			t.Fatalf("Parse(%q): %v, want *Error", src, err)
		}
		got := pe.Format(src)
		// Cut the long field list out of unknown-field messages.
		if i := strings.Index(got, "; fields:"); i >= 0 {
			got = got[:i] + got[strings.IndexByte(got, '\n'):]
		}
		if got != want {
			t.Errorf("Format:\n%s\nwant:\n%s", got, want)
		}
	}
	f(`verb=get usr=alice`, ""+
		"column 10: unknown field \"usr\" (did you mean \"user\"?)\n"+
		"  verb=get usr=alice\n"+
		"           ^")
	f(`code>=400 and (user=a`, ""+
		"column 15: unclosed '(': no matching ')'\n"+
		"  code>=400 and (user=a\n"+
		"                ^")
	f("verb=get and\n\tusr=x", ""+
		"line 2, column 2: unknown field \"usr\" (did you mean \"user\"?)\n"+
		"  \tusr=x\n"+
		"  \t^")
	f(`user=`, ""+
		"column 6: expected a value after '=', got end of filter\n"+
		"  user=\n"+
		"       ^")
}

func TestLookupField(t *testing.T) {
	f := func(name string, want Field, wantOK bool) {
		t.Helper()
		got, ok := LookupField(name)
		if got != want || ok != wantOK {
			t.Errorf("LookupField(%q) = %+v, %v; want %+v, %v", name, got, ok, want, wantOK)
		}
	}
	f("namespace", Field{Name: "ns"}, true)
	f("objectRef.name", Field{Name: "name"}, true)
	f("annotations.a.b/c", Field{Name: "annotation", Key: "a.b/c"}, true)
	f("user.extra.Scopes", Field{Name: "user.extra", Key: "Scopes"}, true)
	f("nope", Field{}, false)

	seen := map[string]bool{}
	for _, fi := range Fields() {
		if fi.Doc == "" {
			t.Errorf("field %s has no doc", fi.Name)
		}
		seen[fi.Name] = true
	}
	for _, want := range []string{"user", "group", "as", "verb", "resource", "subresource", "ns", "name",
		"apigroup", "apiversion", "code", "reason", "status", "ip", "peer", "ua", "level", "stage", "uri",
		"auditid", "cluster", "decision", "annotation", "time"} {
		if !seen[want] {
			t.Errorf("field %s missing", want)
		}
	}
}

func TestCompileExpr(t *testing.T) {
	e := &And{Terms: []Expr{
		&Cmp{Field: Field{Name: "namespace"}, Op: OpEq, Values: []Value{{Text: "prod"}}},
		&Cmp{Field: Field{Name: "user"}, Op: OpIn, Values: []Value{{Text: "a"}, {Text: "system:*", Glob: true}}},
	}}
	f, err := CompileExpr(e, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := f.String(), `namespace=prod and user in (a, system:*)`; got != want {
		t.Errorf("String = %s, want %s", got, want)
	}
	if _, err := CompileExpr(&Cmp{Field: Field{Name: "nope"}, Op: OpEq, Values: []Value{{Text: "x"}}}, time.Now()); err == nil {
		t.Error("CompileExpr accepted an unknown field")
	}
	if _, err := CompileExpr(&Cmp{Field: Field{Name: "user"}, Op: OpEq}, time.Now()); err == nil {
		t.Error("CompileExpr accepted a comparison without a value")
	}
}
