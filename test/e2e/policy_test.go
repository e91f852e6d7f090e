package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// policyEverything is what the cluster logs in the first run: every
// request at RequestResponse, every stage, managedFields included. It is
// what a provider's export at its most detailed gives.
const policyEverything = `apiVersion: audit.k8s.io/v1
kind: Policy
rules:
  - level: RequestResponse
`

// policyTeam is the team's policy: the API server logs under it in the
// second run, and kubetrail applies it to the first run's export. It uses
// every part of the ingest policy: level None (by URL, and by
// resourceNames, which never matches a create), omitted stages (the
// policy's, and a rule's), each level, omitManagedFields (the policy's,
// and a rule's false).
const policyTeam = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
omitManagedFields: true
rules:
  - level: None
    nonResourceURLs: ["/version"]
  - level: None
    resources: [{group: "", resources: ["configmaps"], resourceNames: ["noise"]}]
  - level: RequestResponse
    resources: [{group: "", resources: ["configmaps"], resourceNames: ["keep"]}]
    omitManagedFields: false
  - level: Metadata
    verbs: ["watch"]
    omitStages: ["ResponseStarted"]
  - level: Request
    users: ["bob"]
  - level: Request
    verbs: ["create", "update", "patch", "delete"]
  - level: RequestResponse
    verbs: ["get", "list"]
    resources: [{group: ""}]
  - level: Metadata
`

// policyRequest is one request of the scenario; the Audit-ID header makes
// its events findable in both runs under the same auditID.
type policyRequest struct {
	id, user, method, path, contentType, accept, body string
	// fromGet: the body is the answer of the previous GET with this
	// string replaced by the next (an update sends back managedFields).
	fromGet [2]string
}

const auditIDPrefix = "e2e-policy-"

// policyScenario: creates, server-side apply (managedFields), an update
// sending managedFields back, gets, a list, a Table with objects, a watch
// (ResponseStarted), a 403, a non-resource URL, deletes.
var policyScenario = []policyRequest{
	{user: userAdmin, method: "POST", path: "/api/v1/namespaces", body: `{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"pol"}}`},
	{user: userAdmin, method: "POST", path: "/api/v1/namespaces/pol/configmaps", body: `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cfg"},"data":{"a":"1"}}`},
	{user: userAdmin, method: "POST", path: "/api/v1/namespaces/pol/configmaps", body: `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"noise"},"data":{"n":"1"}}`},
	{user: userAdmin, method: "POST", path: "/api/v1/namespaces/pol/configmaps", body: `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"keep"},"data":{"k":"1"}}`},
	{user: userAdmin, method: "PATCH", path: "/api/v1/namespaces/pol/configmaps/cfg?fieldManager=e2e-apply&force=true", contentType: "application/apply-patch+yaml",
		body: "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\ndata:\n  b: \"2\"\n"},
	{user: userAdmin, method: "PATCH", path: "/api/v1/namespaces/pol/configmaps/keep", contentType: "application/merge-patch+json", body: `{"data":{"k":"2"}}`},
	{user: userAdmin, method: "GET", path: "/api/v1/namespaces/pol/configmaps/cfg"},
	{user: userAdmin, method: "PUT", path: "/api/v1/namespaces/pol/configmaps/cfg", fromGet: [2]string{`"a":"1"`, `"a":"3"`}},
	// A patch that writes managedFields (resetting them): the API server
	// logs a patch's body as sent, managedFields included.
	{user: userAdmin, method: "PATCH", path: "/api/v1/namespaces/pol/configmaps/cfg", contentType: "application/merge-patch+json", body: `{"metadata":{"managedFields":[{}]},"data":{"c":"4"}}`},
	{user: userAdmin, method: "GET", path: "/api/v1/namespaces/pol/configmaps/noise"},
	{user: userAdmin, method: "GET", path: "/api/v1/namespaces/pol/configmaps/keep"},
	{user: userAdmin, method: "GET", path: "/api/v1/namespaces/pol/configmaps"},
	{user: userAdmin, method: "GET", path: "/api/v1/namespaces/pol/configmaps?includeObject=Object", accept: "application/json;as=Table;v=v1;g=meta.k8s.io"},
	{user: userAdmin, method: "GET", path: "/api/v1/namespaces/pol/configmaps?watch=true&timeoutSeconds=1"},
	{user: userBob, method: "GET", path: "/api/v1/namespaces/pol/configmaps"},
	{user: userAdmin, method: "GET", path: "/version"},
	{user: userAdmin, method: "DELETE", path: "/api/v1/namespaces/pol/configmaps/cfg"},
	{user: userAdmin, method: "DELETE", path: "/api/v1/namespaces/pol/configmaps/keep"},
}

// TestPolicyAtIngestMatchesAPIServer runs the scenario twice on a real API
// server: once logging everything (policyEverything), once under the
// team's policy (policyTeam). The first log, wrapped as an EKS CloudWatch
// Logs export, is imported with `kubetrail import --policy` the team's
// policy. For every request of the scenario (found by the Audit-ID it was
// sent with), the imported events must be the ones the API server wrote
// under the team's policy, event by event (auditID and stage): the same
// set, and in each the same fields, level and bodies included, once the
// values that differ between two runs anyway (times, uids, resource
// versions, latency annotations, a Table's age column) are masked. The
// import's summary must count what the policy dropped and stripped.
func TestPolicyAtIngestMatchesAPIServer(t *testing.T) {
	requireClusterDeps(t)
	bin := kubetrailBinary(t)

	var everything, team []event
	t.Run("everything", func(t *testing.T) { everything = runPolicyScenario(t, policyEverything) })
	t.Run("team", func(t *testing.T) { team = runPolicyScenario(t, policyTeam) })
	if t.Failed() {
		return
	}

	dir := t.TempDir()
	export := filepath.Join(dir, "eks-audit-export.jsonl")
	writeCloudWatchExport(t, export, everything)
	policy := filepath.Join(dir, "team-policy.yaml")
	writeFile(t, policy, policyTeam)
	data := filepath.Join(dir, "data")
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "import", "--progress", "never", "--no-redact", "--data", data, "--policy", policy, export).CombinedOutput()
	if err != nil {
		t.Fatalf("kubetrail import --policy: %v\n%s", err, out)
	}
	t.Logf("kubetrail import:\n%s", out)
	imported := exportEvents(t, bin, data)

	got := scenarioEvents(imported)
	want := scenarioEvents(team)
	if len(want) == 0 || len(scenarioEvents(everything)) <= len(want) {
		t.Fatalf("the runs logged %d and %d scenario events: the team's policy must log fewer", len(scenarioEvents(everything)), len(want))
	}
	compareUnderPolicy(t, got, want)

	// Every part of the policy is exercised, or the comparison proves less.
	levels := map[string]int{}
	for _, e := range want {
		levels[e.str("level")]++
	}
	if levels["Metadata"] == 0 || levels["Request"] == 0 || levels["RequestResponse"] == 0 {
		t.Errorf("levels under the team's policy: %v; want each of Metadata, Request, RequestResponse", levels)
	}
	if !strings.Contains(string(out), "policy ") || regexp.MustCompile(` 0 stripped| 0 dropped \(level None\)| 0 dropped \(omitted stage\)`).Match(out) {
		t.Errorf("the import's policy summary must count stripped events and both kinds of drop:\n%s", out)
	}
	managed := 0
	for _, e := range scenarioEvents(everything) {
		if strings.Contains(e.raw, `"managedFields"`) {
			managed++
		}
	}
	keepMF := 0
	for _, e := range want {
		if strings.Contains(e.raw, `"managedFields"`) {
			keepMF++
		}
	}
	patchMF := false
	for _, e := range want {
		if e.str("verb") == "patch" && strings.Contains(fmt.Sprint(e.get("requestObject.metadata")), "managedFields") {
			patchMF = true
		}
	}
	if !patchMF {
		t.Error("no patch's request body holds managedFields under the team's policy: the scenario does not show that they stay")
	}
	if managed == 0 || keepMF == 0 {
		t.Errorf("%d events of the first run and %d under the team's policy hold managedFields; want some in both (removed by the policy, kept by its rule)", managed, keepMF)
	}
}

// runPolicyScenario starts a cluster under policy, plays the scenario,
// stops the cluster and returns its audit log.
func runPolicyScenario(t *testing.T, policy string) []event {
	pf := filepath.Join(t.ArtifactDir(), "policy.yaml")
	writeFile(t, pf, policy)
	c := startCluster(t, clusterConfig{policyFile: pf})
	var last []byte
	for i, r := range policyScenario {
		body := r.body
		if r.fromGet[0] != "" {
			if !bytes.Contains(last, []byte(r.fromGet[0])) || !bytes.Contains(last, []byte(`"managedFields"`)) {
				t.Fatalf("request %d: the previous answer has no %s or no managedFields: %s", i, r.fromGet[0], last)
			}
			body = strings.Replace(string(last), r.fromGet[0], r.fromGet[1], 1)
		}
		code, answer := c.send(t, r, fmt.Sprintf("%s%02d", auditIDPrefix, i), body)
		want := 200
		switch {
		case r.user == userBob:
			want = 403
		case r.method == "POST":
			want = 201
		}
		if code != want {
			t.Fatalf("request %d %s %s as %s: %d, want %d: %s", i, r.method, r.path, r.user, code, want, answer)
		}
		last = answer
	}
	c.stop(t)
	events, _ := readAuditLog(t, c.auditLogPath)
	return events
}

// send sends one request of the scenario with its Audit-ID.
func (c *cluster) send(t *testing.T, r policyRequest, auditID, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), r.method, c.url+r.path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+c.tokens[r.user])
	req.Header.Set("User-Agent", "kubetrail-e2e")
	req.Header.Set("Audit-ID", auditID)
	if body != "" {
		ct := r.contentType
		if ct == "" {
			ct = "application/json"
		}
		req.Header.Set("Content-Type", ct)
	}
	if r.accept != "" {
		req.Header.Set("Accept", r.accept)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", r.method, r.path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// writeCloudWatchExport writes events as EKS delivers them to CloudWatch
// Logs, one log event per line as an export of the log group gives them:
// the audit event is the message, as a JSON string.
func writeCloudWatchExport(t *testing.T, path string, events []event) {
	t.Helper()
	var b bytes.Buffer
	for i, e := range events {
		ts, _ := time.Parse(time.RFC3339Nano, e.str("stageTimestamp"))
		line, err := json.Marshal(map[string]any{
			"logStreamName": "kube-apiserver-audit-3f1c0e2b9d6a4c57a1e0f4b2c8d9e6a1",
			"timestamp":     ts.UnixMilli(),
			"message":       e.raw,
			"ingestionTime": ts.UnixMilli() + 700,
			"eventId":       fmt.Sprintf("3829%032d", i),
		})
		if err != nil {
			t.Fatal(err)
		}
		b.Write(line)
		b.WriteByte('\n')
	}
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

// scenarioEvents keeps the events of the scenario's requests, by auditID
// and stage (each is there once: the IDs are the test's own).
func scenarioEvents(events []event) map[string]event {
	out := map[string]event{}
	for _, e := range events {
		if strings.HasPrefix(e.str("auditID"), auditIDPrefix) {
			out[e.key()] = e
		}
	}
	return out
}

// compareUnderPolicy compares the imported events with the API server's,
// key by key: the same events, each with the same level, stage and
// bodies, and every other field the same once masked.
func compareUnderPolicy(t *testing.T, got, want map[string]event) {
	t.Helper()
	var keys []string
	for k := range want {
		keys = append(keys, k)
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	same := 0
	for _, k := range keys {
		g, gok := got[k]
		w, wok := want[k]
		switch {
		case !gok:
			t.Errorf("%s: the API server logged it under the policy; the import dropped it: %s", k, w.summary())
			continue
		case !wok:
			t.Errorf("%s: imported, but the API server did not log it under the policy: %s", k, g.summary())
			continue
		}
		if g.str("level") != w.str("level") {
			t.Errorf("%s: level %s, the API server's %s", k, g.str("level"), w.str("level"))
		}
		for _, body := range []string{"requestObject", "responseObject"} {
			_, gb := g.v[body]
			_, wb := w.v[body]
			if gb != wb {
				t.Errorf("%s: %s present=%v, the API server's %v", k, body, gb, wb)
			}
		}
		if diff := cmp.Diff(masked(w.v), masked(g.v)); diff != "" {
			t.Errorf("%s: differs from the API server's event (-API server +imported):\n%s", k, diff)
			continue
		}
		same++
	}
	t.Logf("%d scenario events under the team's policy, %d imported the same", len(want), same)
}

// volatile are the keys whose values differ between two runs of the same
// requests: times, identities the API server makes up, and annotations
// other than the authorization decision (latency figures).
var volatile = map[string]bool{
	"requestReceivedTimestamp": true, "stageTimestamp": true, "creationTimestamp": true,
	"uid": true, "resourceVersion": true, "time": true, "cells": true,
}

// masked returns a copy of v with the volatile values replaced by "*".
func masked(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, val := range x {
			switch {
			case volatile[k]:
				out[k] = "*"
			case k == "annotations":
				if m, ok := val.(map[string]any); ok && m["authorization.k8s.io/decision"] != nil {
					out[k] = map[string]any{"authorization.k8s.io/decision": m["authorization.k8s.io/decision"]}
					continue
				}
				out[k] = masked(val)
			default:
				out[k] = masked(val)
			}
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i := range x {
			out[i] = masked(x[i])
		}
		return out
	}
	return v
}
