package investigate

import (
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kubetrail/kubetrail/internal/query"
)

func TestResources(t *testing.T) {
	f := func(typed string, want ...string) {
		t.Helper()
		if got := Resources(typed); !cmp.Equal(got, want) {
			t.Errorf("Resources(%q) = %q, want %q", typed, got, want)
		}
	}
	f("secret", "secrets")
	f("secrets", "secrets")
	f("Secret", "secrets")
	f("cm", "configmaps")
	f("ConfigMap", "configmaps")
	f("deploy", "deployments")
	f("po", "pods")
	f("ns", "namespaces")
	f("sa", "serviceaccounts")
	f("crb", "clusterrolebindings")
	f("rb", "rolebindings")
	f("ClusterRoleBinding", "clusterrolebindings")
	f("netpol", "networkpolicies")
	f("ing", "ingresses")
	// Unknown kinds (custom resources): as typed, and the regular plural.
	f("widget", "widget", "widgets")
	f("policy", "policy", "policies")
	f("box", "box", "boxes")
	f("gateway", "gateway", "gateways")
	f("widgets", "widgets")
}

func TestParseTarget(t *testing.T) {
	f := func(s string, want Target) {
		t.Helper()
		got, err := ParseTarget(s)
		if err != nil {
			t.Fatalf("ParseTarget(%q): %v", s, err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("ParseTarget(%q) (-want +got):\n%s", s, diff)
		}
	}
	f("secret/important", Target{Resources: []string{"secrets"}, Name: "important"})
	f("cm", Target{Resources: []string{"configmaps"}})
	f("deploy.apps/web", Target{Resources: []string{"deployments"}, APIGroup: "apps", HasGroup: true, Name: "web"})
	f("pods/web/exec", Target{Resources: []string{"pods"}, Name: "web", Subresource: "exec"})
	f("roles.rbac.authorization.k8s.io/x", Target{Resources: []string{"roles"}, APIGroup: "rbac.authorization.k8s.io", HasGroup: true, Name: "x"})
	f("secrets/web-*", Target{Resources: []string{"secrets"}, Name: "web-*"})
	for _, bad := range []string{"", "/x", "a/b/c/d"} {
		if _, err := ParseTarget(bad); err == nil {
			t.Errorf("ParseTarget(%q): no error", bad)
		}
	}
	// Every target compiles, with and without a namespace.
	for _, s := range []string{"secret/important", "deploy.apps/web", "pods/web/exec", "ns/production", "secrets/web-*", "widget"} {
		tg, _ := ParseTarget(s)
		for _, ns := range []string{"", "production", "prod-*"} {
			for _, collections := range []bool{false, true} {
				conds, err := tg.conds(ns, false, collections)
				if err != nil {
					t.Fatalf("%s -n %q: %v", s, ns, err)
				}
				if _, err := query.CompileExpr(and(conds...), t0); err != nil {
					t.Errorf("%s -n %q: %v", s, ns, err)
				}
			}
		}
	}
	tg, _ := ParseTarget(`secrets/a"b*`)
	if _, err := tg.conds("", false, false); err == nil {
		t.Error(`a glob with a quote: no error`)
	}
}

func TestVerbs(t *testing.T) {
	f := func(s string, want ...string) {
		t.Helper()
		if got := Verbs(s); !cmp.Equal(got, want) {
			t.Errorf("Verbs(%q) = %q, want %q", s, got, want)
		}
	}
	f("delete", "delete")
	f("deleted", "delete", "deletecollection")
	f("Create,update", "create", "update")
	f("read", "get", "list", "watch")
	f("changed", "create", "delete", "deletecollection", "patch", "update")
	f("get,read", "get", "list", "watch")
	f("*")
	f("any")
	f("impersonate", "impersonate")
}

func TestShellJoin(t *testing.T) {
	f := func(args []string, want string) {
		t.Helper()
		if got := shellJoin(args); got != want {
			t.Errorf("shellJoin(%q) = %s, want %s", args, got, want)
		}
	}
	f([]string{"cat", "/etc/shadow"}, "cat /etc/shadow")
	f([]string{"sh", "-c", "id; whoami"}, "sh -c 'id; whoami'")
	f([]string{"echo", "it's"}, `echo 'it'\''s'`)
	f([]string{"printf", ""}, "printf ''")
	f(nil, "")
}

func TestURIQuery(t *testing.T) {
	q := uriQuery("/api/v1/namespaces/a/pods/b/exec?command=ls&command=-la&command=%2Ftmp&container=c&bad=%zz")
	if !cmp.Equal(q["command"], []string{"ls", "-la", "/tmp"}) || q.Get("container") != "c" {
		t.Errorf("uriQuery: a malformed pair must not hide the others: %v", q)
	}
	if len(uriQuery("/healthz")) != 0 {
		t.Error("uriQuery without a query string")
	}
}

func TestDiff(t *testing.T) {
	split := func(s string) []string {
		if s == "" {
			return nil
		}
		return strings.Split(s, "\n")
	}
	f := func(a, b string, want ...string) {
		t.Helper()
		got := unifiedDiff(split(a), split(b), 1)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("diff %q -> %q (-want +got):\n%s", a, b, diff)
		}
	}
	f("a\nb\nc", "a\nb\nc")
	f("", "x\ny", "@@ -0,0 +1,2 @@", "+x", "+y")
	f("x", "", "@@ -1 +0,0 @@", "-x")
	f("a\nb\nc", "a\nB\nc", "@@ -1,3 +1,3 @@", " a", "-b", "+B", " c")
	// Two changes far apart give two hunks; close ones, one.
	f("1\n2\n3\n4\n5\n6\n7", "1\nX\n3\n4\n5\nY\n7", "@@ -1,3 +1,3 @@", " 1", "-2", "+X", " 3", "@@ -5,3 +5,3 @@", " 5", "-6", "+Y", " 7")
	f("1\n2\n3\n4\n5", "1\nX\n3\nY\n5", "@@ -1,5 +1,5 @@", " 1", "-2", "+X", " 3", "-4", "+Y", " 5")
	f("a\nc", "a\nb\nc", "@@ -1,2 +1,3 @@", " a", "+b", " c")

	lines, kind, ok := normalizeBody([]byte(`{"kind":"Pod","metadata":{"name":"p","resourceVersion":"7","managedFields":[{}]},"spec":{"n":12345678901234567890,"s":"<&>"}}`))
	want := []string{"{", `  "kind": "Pod",`, `  "metadata": {`, `    "name": "p"`, "  },", `  "spec": {`, `    "n": 12345678901234567890,`, `    "s": "<&>"`, "  }", "}"}
	if !ok || kind != "Pod" || !cmp.Equal(lines, want) {
		t.Errorf("normalizeBody: %v %q\n%s", ok, kind, strings.Join(lines, "\n"))
	}
	for _, bad := range []string{"", "[1]", "null", "{"} {
		if _, _, ok := normalizeBody([]byte(bad)); ok {
			t.Errorf("normalizeBody(%q): ok", bad)
		}
	}
}

// TestDocumentedAliases checks that docs/investigations.md lists every
// resource name people can type, as the table rows it shows.
func TestDocumentedAliases(t *testing.T) {
	doc, err := os.ReadFile("../../docs/investigations.md")
	if err != nil {
		t.Fatal(err)
	}
	for res, aliases := range ResourceAliases() {
		row := "| `" + res + "` | `" + strings.Join(aliases, "`, `") + "` |"
		if !strings.Contains(string(doc), row) {
			t.Errorf("docs/investigations.md lacks the row %s", row)
		}
	}
}
