package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestInvestigate runs the scenario once against a real API server whose
// audit webhook feeds `kubetrail serve`, then asks kubetrail's
// investigation commands the analyst's questions and checks the answers
// against what the scenario did with kubectl.
func TestInvestigate(t *testing.T) {
	requireClusterDeps(t)
	bin := kubetrailBinary(t)

	data := filepath.Join(t.ArtifactDir(), "kubetrail-data")
	serve, addr := startServe(t, bin, data)
	hook := filepath.Join(t.ArtifactDir(), "audit-webhook.kubeconfig")
	writeWebhookConfig(t, bin, "http://"+addr+"/ingest/webhook", hook)

	c := startCluster(t, clusterConfig{webhookConfig: hook})
	runScenario(t, c)
	c.stop(t)

	want, _ := readAuditLog(t, c.auditLogPath)
	if drops := c.webhookShutdownDrops(t); len(drops) > 0 {
		want = withoutEvents(t, want, drops)
	}
	waitExport(t, bin, data, len(want), 30*time.Second)
	if err := serve.stop(30 * time.Second); err != nil {
		t.Errorf("kubetrail serve must exit 0 on SIGTERM: %v", err)
	}

	// kt runs a kubetrail command on the data folder and returns its
	// output; jsonOut runs it with -o json and decodes the records.
	run := func(log bool, args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, append(args, "--data", data)...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("kubetrail %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
		}
		if log {
			t.Logf("$ kubetrail %s\n%s", strings.Join(args, " "), stdout.String())
		}
		return stdout.String()
	}
	kt := func(args ...string) string { t.Helper(); return run(true, args...) }
	jsonOut := func(args ...string) []map[string]any {
		t.Helper()
		out := run(false, append(args, "-o", "json")...)
		var recs []map[string]any
		if err := json.Unmarshal([]byte(out), &recs); err != nil {
			t.Fatalf("kubetrail %s -o json: %v\n%s", strings.Join(args, " "), err, out)
		}
		return recs
	}
	str := func(r map[string]any, k string) string { s, _ := r[k].(string); return s }
	num := func(r map[string]any, k string) int { f, _ := r[k].(float64); return int(f) }
	strs := func(r map[string]any, k string) []string {
		var out []string
		l, _ := r[k].([]any)
		for _, v := range l {
			s, _ := v.(string)
			out = append(out, s)
		}
		return out
	}
	// rowWith finds a table row holding every one of the words.
	rowWith := func(table string, words ...string) string {
		for _, line := range strings.Split(table, "\n") {
			fields := strings.Fields(line)
			if !slices.ContainsFunc(words, func(w string) bool { return !slices.Contains(fields, w) }) {
				return line
			}
		}
		return ""
	}

	t.Run("who deleted secret important in production", func(t *testing.T) {
		for _, args := range [][]string{
			{"who", "delete", "secrets/important", "-n", "production"},
			{"who", "deleted", "secret", "important", "-n", "production"},
		} {
			table := kt(args...)
			if rowWith(table, userAlice, "delete", "production", "secrets/important", "ResponseComplete", "200", "allow") == "" {
				t.Errorf("kubetrail %s: no row naming alice:\n%s", strings.Join(args, " "), table)
			}
			recs := jsonOut(args...)
			if len(recs) != 1 {
				t.Fatalf("kubetrail %s: %d requests, want exactly alice's one delete: %v", strings.Join(args, " "), len(recs), recs)
			}
			r := recs[0]
			if str(r, "user") != userAlice || !slices.Contains(strs(r, "groups"), "developers") || str(r, "peer") != "127.0.0.1" ||
				!strings.HasPrefix(str(r, "userAgent"), "kubectl/") || num(r, "code") != 200 || str(r, "decision") != "allow" {
				t.Errorf("who deleted the secret: %v", r)
			}
		}
	})

	t.Run("denied shows bob and the unknown token", func(t *testing.T) {
		table := kt("denied")
		if rowWith(table, userBob, "403(1)") == "" || rowWith(table, "(unauthenticated)") == "" {
			t.Errorf("denied:\n%s", table)
		}
		recs := jsonOut("denied")
		i := slices.IndexFunc(recs, func(r map[string]any) bool { return str(r, "user") == userBob })
		if i < 0 {
			t.Fatalf("denied: no record for bob: %v", recs)
		}
		res, _ := recs[i]["resources"].([]any)
		if len(res) != 1 || str(res[0].(map[string]any), "value") != "secrets" || num(recs[i], "requests") != 1 {
			t.Errorf("denied: bob's record does not name his list of secrets: %v", recs[i])
		}
	})

	t.Run("execs shows admin's exec into web with its command", func(t *testing.T) {
		table := kt("execs")
		if rowWith(table, userAdmin, "production", "web", "exec", "cat", "/etc/shadow") == "" {
			t.Errorf("execs: no row for admin's exec:\n%s", table)
		}
		recs := jsonOut("execs")
		found := false
		for _, r := range recs {
			if str(r, "user") == userAdmin && str(r, "namespace") == "production" && str(r, "name") == "web" &&
				str(r, "kind") == "exec" && slices.Equal(strs(r, "command"), []string{"cat", "/etc/shadow"}) && str(r, "container") == "web" {
				found = true
				t.Logf("exec via %s (verb %s), code %d", str(r, "transport"), str(r, "verb"), num(r, "code"))
			}
		}
		if !found {
			t.Errorf("execs: no record of admin exec'ing cat /etc/shadow in production/web: %v", recs)
		}
	})

	t.Run("activity alice includes the secret's create, get and delete", func(t *testing.T) {
		table := kt("activity", userAlice)
		for _, verb := range []string{"create", "get", "delete"} {
			if rowWith(table, userAlice, verb, "production", "secrets/important") == "" {
				t.Errorf("activity alice: no %s of secrets/important:\n%s", verb, table)
			}
		}
		// Being impersonated is part of alice's activity too.
		if rowWith(table, userAdmin, userAlice, "list", "pods") == "" || rowWith(table, userImpersonator, userAlice, "list", "configmaps") == "" {
			t.Errorf("activity alice: the requests made as alice are missing:\n%s", table)
		}
	})

	t.Run("from 127.0.0.1 finds the events, all from the peer", func(t *testing.T) {
		recs := jsonOut("from", "127.0.0.1")
		if len(recs) < 20 {
			t.Fatalf("from 127.0.0.1: %d requests", len(recs))
		}
		users := map[string]bool{}
		for _, r := range recs {
			users[str(r, "user")] = true
			if str(r, "match") != "peer" {
				t.Errorf("from 127.0.0.1: a request matched through a forwarded entry: %v", r)
			}
		}
		for _, u := range []string{userAdmin, userAlice, userBob} {
			if !users[u] {
				t.Errorf("from 127.0.0.1: nothing by %s", u)
			}
		}
		if table := kt("from", "127.0.0.0/8", "--where", "user=bob"); rowWith(table, userBob, "list", "secrets", "403", "forbid", "peer") == "" {
			t.Errorf("from 127.0.0.0/8 --where user=bob:\n%s", table)
		}
	})

	t.Run("secrets flags reads by people", func(t *testing.T) {
		table := kt("secrets")
		// kubectl delete reads the secret again to see it gone, so the
		// count of gets depends on the kubectl version.
		if row := rowWith(table, userAlice, "get", "!", "non-system", "read"); !strings.Contains(row, " production/important") {
			t.Errorf("secrets: alice's read is not flagged:\n%s", table)
		}
	})

	t.Run("rbac shows admin's bindings with their role", func(t *testing.T) {
		table := kt("rbac", "--where", `user!~"^system:"`)
		if rowWith(table, userAdmin, "create", "RoleBinding", "alice-edit", "Role/alice-edit", "User/alice") == "" ||
			rowWith(table, userAdmin, "create", "ClusterRoleBinding", "impersonator", "ClusterRole/impersonate-all", "User/impersonator") == "" ||
			rowWith(table, userAdmin, "ClusterRole", "impersonate-all", "!", "impersonate") == "" {
			t.Errorf("rbac:\n%s", table)
		}
	})

	t.Run("history of namespace production", func(t *testing.T) {
		table := kt("history", "ns/production")
		if rowWith(table, userAdmin, "create", "namespaces/production", "201") == "" ||
			rowWith(table, userAdmin, "delete", "namespaces/production", "200") == "" ||
			!strings.Contains(table, `+    "deletionTimestamp": `) || !strings.Contains(table, `+    "phase": "Terminating"`) {
			t.Errorf("history ns/production:\n%s", table)
		}
	})

	// --jq over the real API server's log, imported, prints what jq
	// prints over the same files: real events carry what a generator may
	// miss (Go's \u0026 escapes in URIs, managedFields, every stage).
	t.Run("--jq over the imported log prints what jq 1.6 prints", func(t *testing.T) {
		jqBin := jqBinary(t)
		_, files := readAuditLog(t, c.auditLogPath)
		logData := filepath.Join(t.ArtifactDir(), "kubetrail-log-data")
		if out, err := exec.Command(bin, append([]string{"import", "--data", logData}, files...)...).CombinedOutput(); err != nil {
			t.Fatalf("import: %v\n%s", err, out)
		}
		for _, prog := range []string{
			`.`,
			`select(.objectRef.resource == "secrets")`,
			`select(.verb == "delete" and .objectRef.resource == "secrets" and .objectRef.namespace == "production" and .objectRef.name == "important") | {user: .user.username, groups: .user.groups, ips: .sourceIPs, ua: .userAgent, time: .requestReceivedTimestamp, code: .responseStatus.code}`,
			`select(.responseStatus.code >= 400) | [.user.username, .verb, .requestURI, .responseStatus.code]`,
			`select(.objectRef.subresource == "exec") | .requestURI`,
			`select(.objectRef.resource | test("role")) | del(.requestObject)`,
			`select(.level == "RequestResponse") | .responseObject`,
		} {
			cmd := exec.Command(bin, "query", "--data", logData, "--jq", prog)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			have, err := cmd.Output()
			if err != nil {
				t.Fatalf("kubetrail query --jq %s: %v\n%s", prog, err, stderr.String())
			}
			want, err := exec.Command(jqBin, append([]string{"-c", prog}, files...)...).Output()
			if err != nil {
				t.Fatalf("jq %s: %v", prog, err)
			}
			if len(want) == 0 {
				t.Errorf("jq prints nothing for %s: the scenario does not exercise it", prog)
				continue
			}
			if !bytes.Equal(have, want) {
				hl, wl := strings.Split(string(have), "\n"), strings.Split(string(want), "\n")
				for i := range min(len(hl), len(wl)) {
					if hl[i] != wl[i] {
						t.Fatalf("%s: line %d differs (kubetrail %d lines, jq %d):\n  kubetrail %s\n  jq        %s", prog, i+1, len(hl), len(wl), hl[i], wl[i])
					}
				}
				t.Fatalf("%s: kubetrail printed %d lines, jq %d", prog, len(hl), len(wl))
			}
			t.Logf("%-60.60s %5d lines identical", prog, bytes.Count(want, []byte("\n")))
		}
	})
}
