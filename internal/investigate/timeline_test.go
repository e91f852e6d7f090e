package investigate

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kubetrail/kubetrail/internal/audit"
)

func sentences(rep *TimelineReport) []string {
	out := []string{}
	for _, row := range rep.Rows {
		out = append(out, row.Sentence)
	}
	return out
}

// recordedStory is the timeline of the recorded incident
// (testdata/incident/README.md), written by hand from what its record.sh
// did: the order and the words a reader of the story needs.
var recordedStory = []string{
	"admin created namespace production",
	"admin created serviceaccount default in production",
	"admin created secret db-creds in production",
	"admin created pod web in production",
	"attacker was denied list secrets in production 6 times in 217 ms",
	"attacker was denied list pods in production",
	"attacker was denied list clusterrolebindings",
	"system:anonymous was denied list secrets in production 2 times in 10 ms",
	"system:anonymous read /version",
	"an unauthenticated client failed to authenticate to list secrets in production",
	"admin created clusterrolebinding backdoor granting cluster-admin to attacker",
	"attacker listed secrets in production",
	"attacker read secret db-creds in production",
	"attacker listed secrets in every namespace",
	"attacker created configmap stolen in production",
	"attacker failed to exec into pod web in production over WebSocket: cat /etc/shadow (400: pod web does not have a host assigned)",
	"attacker failed to exec into pod web in production over SPDY: cat /etc/shadow (400: pod web does not have a host assigned)",
	"admin as developer read /version 2 times in 44 ms",
	"admin as developer was denied list secrets in production 2 times in 44 ms",
	"admin as attacker read /version",
	"admin as attacker read secret db-creds in production",
	"admin as system:serviceaccount:production:default read /version",
	"admin as system:serviceaccount:production:default was denied list pods in production",
	"attacker deleted clusterrolebinding backdoor",
	"attacker was denied get clusterrolebinding backdoor",
}

// TestTimelineRecordedIncident: the story of the incident a real API
// server recorded, in order, in words, with the control plane's 454
// bootstrap requests and kubectl's discovery reads left out.
// Mutations it catches: folding by user only (the denied lists, pods and
// clusterrolebindings fold together), sorting rows by last time instead of
// first, the impersonated user left out of the sentence, the RBAC body not
// read (no "granting cluster-admin to attacker").
func TestTimelineRecordedIncident(t *testing.T) {
	r := openRecorded(t)
	run := func(q TimelineQuery) *TimelineReport {
		t.Helper()
		rep, err := Timeline(r, q)
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	rep := run(TimelineQuery{Gap: DefaultGap})
	if diff := cmp.Diff(recordedStory, sentences(rep)); diff != "" {
		t.Fatalf("the story (-want +got):\n%s", diff)
	}
	if rep.Hidden != 454 || rep.Reads != 25 || rep.Requests != 33 {
		t.Errorf("hidden %d, reads %d, requests %d; want 454, 25, 33", rep.Hidden, rep.Reads, rep.Requests)
	}
	// The folded row holds every audit ID, first and last.
	denied := rep.Rows[4]
	if denied.Count != 6 || len(denied.AuditIDs) != 6 || denied.First == nil || denied.Last == nil ||
		denied.Last.Sub(*denied.First).Milliseconds() != 217 ||
		denied.Actor != "attacker" || denied.Verb != "list" || denied.Object.Resource != "secrets" || denied.Result != "403 forbid" {
		t.Errorf("the folded denials: %+v", denied)
	}
	if b := rep.Rows[10]; b.Object.Name != "backdoor" || b.Count != 1 || b.First != nil || b.AuditIDs[0] != "921593c2-76c6-44a0-ab0a-3ad06eb32b4e" {
		t.Errorf("the backdoor row: %+v", b)
	}
	if imp := rep.Rows[18]; imp.Actor != "admin" || imp.As != "developer" {
		t.Errorf("the impersonation row: actor %q as %q", imp.Actor, imp.As)
	}

	// One user's story: theirs, as them, and the binding naming them.
	got := sentences(run(TimelineQuery{Gap: DefaultGap, User: "attacker"}))
	for _, want := range []string{
		"admin created clusterrolebinding backdoor granting cluster-admin to attacker",
		"admin as attacker read secret db-creds in production",
		"attacker was denied list secrets in production 6 times in 217 ms",
	} {
		if !slices.Contains(got, want) {
			t.Errorf("--user attacker lacks %q:\n%s", want, strings.Join(got, "\n"))
		}
	}
	for _, s := range got {
		if strings.Contains(s, "developer") || strings.HasPrefix(s, "system:anonymous") {
			t.Errorf("--user attacker shows %q", s)
		}
	}

	// -n production (ns=production) leaves out cluster-scoped events.
	for _, s := range sentences(run(TimelineQuery{Gap: DefaultGap, Scope: Scope{Where: "ns=production"}})) {
		if strings.Contains(s, "clusterrolebinding") {
			t.Errorf("ns=production shows %q", s)
		}
	}

	// --include-system shows the bootstrap; --reads the discovery reads.
	if rep := run(TimelineQuery{Gap: DefaultGap, Scope: Scope{IncludeSystem: true}}); rep.Hidden != 0 || !strings.HasPrefix(rep.Rows[0].Sentence, "system:apiserver ") {
		t.Errorf("--include-system: hidden %d, first row %q", rep.Hidden, rep.Rows[0].Sentence)
	}
	if got := sentences(run(TimelineQuery{Gap: DefaultGap, Reads: true})); !slices.Contains(got, "attacker read /version 14 times in 7.9 s") || !slices.Contains(got, "attacker read pod web in production") {
		t.Errorf("--reads lacks the discovery reads:\n%s", strings.Join(got, "\n"))
	}
	if rep := run(TimelineQuery{Gap: DefaultGap, Scope: Scope{Limit: 2}}); !cmp.Equal(sentences(rep), recordedStory[len(recordedStory)-2:]) || rep.Requests != 2 {
		t.Errorf("--limit 2: %q, %d requests", sentences(rep), rep.Requests)
	}
	n := 0
	for _, s := range sentences(run(TimelineQuery{Gap: 0})) {
		if s == "attacker was denied list secrets in production" {
			n++
		}
	}
	if n != 6 {
		t.Errorf("--gap 0: %d rows of the denied list, want 6", n)
	}
}

// TestTimelineFolding: the folding rule, on requests built for it.
// Mutations it catches: "<" for "<=" at the gap, measuring the gap from the
// row's first request instead of the previous one, a request of another
// kind in between breaking the fold, namespace or result left out of the
// key.
func TestTimelineFolding(t *testing.T) {
	secrets := func(sec float64, user, ns string, code int32, decision string) *evb {
		return req(sec, user, "list", "/api/v1/namespaces/"+ns+"/secrets").Obj("secrets", ns, "").Code(code, decision)
	}
	evs := []*evb{
		secrets(0, "eve", "production", 403, "forbid"),
		secrets(1, "bob", "production", 403, "forbid"), // another user between
		secrets(6, "eve", "production", 403, "forbid"),
		secrets(16, "eve", "production", 403, "forbid"),   // 10 s after the previous: folds
		secrets(26.5, "eve", "production", 403, "forbid"), // 10.5 s after: a new row
		secrets(27, "eve", "staging", 403, "forbid"),
		secrets(28, "eve", "production", 200, "allow"),
		secrets(29, "eve", "production", 403, "forbid").As("alice"),
		req(40, "eve", "delete", "/api/v1/namespaces/production/configmaps/a").Obj("configmaps", "production", "a").Code(200, "allow"),
		req(41, "eve", "delete", "/api/v1/namespaces/production/configmaps/b").Obj("configmaps", "production", "b").Code(200, "allow"),
		req(50, "eve", "get", "/api/v1/namespaces/production/pods/web").Obj("pods", "production", "web").Code(200, "allow"), // a read: hidden
		req(60, "", "get", "/api/v1/namespaces/production/pods/web").Obj("pods", "production", "web").NoUser().Code(401, "").Stage(audit.StageResponseStarted),
	}
	r := openFixture(t, evs)
	rep, err := Timeline(r, TimelineQuery{Gap: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"eve was denied list secrets in production 3 times in 16 s",
		"bob was denied list secrets in production",
		"eve was denied list secrets in production",
		"eve was denied list secrets in staging",
		"eve listed secrets in production",
		"eve as alice was denied list secrets in production",
		"eve deleted configmaps a, b in production in 1.0 s",
		"an unauthenticated client failed to authenticate to get pod web in production",
	}
	if diff := cmp.Diff(want, sentences(rep)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if rep.Reads != 1 {
		t.Errorf("%d reads hidden, want 1", rep.Reads)
	}
	if _, err := Timeline(r, TimelineQuery{Gap: -time.Second}); err == nil {
		t.Error("a negative gap is accepted")
	}
}

// TestTimelineNoResponse: a request whose only event is RequestReceived
// (the log ends, or --until falls between its stages) has no result, so
// the timeline must not tell it as done: the request may have been denied.
// Mutation it catches: code 0 told as a success ("bob deleted secret x").
func TestTimelineNoResponse(t *testing.T) {
	r := openFixture(t, []*evb{
		req(10, "bob", "delete", "/api/v1/namespaces/production/secrets/x").Obj("secrets", "production", "x").Stage(audit.StageRequestReceived),
		req(20, "bob", "get", "/api/v1/namespaces/production/pods/web/exec?command=sh").Obj("pods/exec", "production", "web").Stage(audit.StageRequestReceived),
		req(30, "bob", "delete", "/api/v1/namespaces/production/secrets/y").Obj("secrets", "production", "y").Code(200, "allow"),
	})
	rep, err := Timeline(r, TimelineQuery{Gap: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"bob asked to delete secret x in production; no response is in the log",
		"bob asked to exec into pod web in production over WebSocket: sh; no response is in the log",
		"bob deleted secret y in production",
	}
	if diff := cmp.Diff(want, sentences(rep)); diff != "" {
		t.Errorf("sentences (-want +got):\n%s", diff)
	}
}

// TestImpersonationByControlPlaneShown: the timeline always shows an
// impersonated request (docs/investigations.md), also when the sender is
// a control-plane identity, whose own requests are hidden: a stolen
// kube-system token used to act as someone else is the story.
// Mutation it catches: dropControlPlane ignoring impersonation.
func TestImpersonationByControlPlaneShown(t *testing.T) {
	sa := "system:serviceaccount:kube-system:generic-garbage-collector"
	r := openFixture(t, []*evb{
		req(10, sa, "delete", "/api/v1/namespaces/production/configmaps/a").Obj("configmaps", "production", "a").Code(200, "allow"),
		req(20, sa, "delete", "/api/v1/namespaces/production/secrets/b").Obj("secrets", "production", "b").As("system:admin").Code(200, "allow"),
	})
	rep, err := Timeline(r, TimelineQuery{Gap: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{sa + " as system:admin deleted secret b in production"}
	if diff := cmp.Diff(want, sentences(rep)); diff != "" || rep.Hidden != 1 {
		t.Errorf("hidden %d, want 1; sentences (-want +got):\n%s", rep.Hidden, diff)
	}
	act, err := Activity(r, ActivityQuery{User: "system:admin"})
	if err != nil {
		t.Fatal(err)
	}
	if len(act.Requests) != 1 {
		t.Errorf("activity system:admin: %d requests, want the one made as system:admin", len(act.Requests))
	}
}

// TestSecretsNoResponse: a read of secrets whose only event is
// RequestReceived is an attempt with no response known, not a read
// (as timeline says "asked to ...; no response is in the log").
// Mutation it catches: code 0 counted as a success ("non-system read").
func TestSecretsNoResponse(t *testing.T) {
	r := openFixture(t, []*evb{
		req(10, "bob", "get", "/api/v1/namespaces/production/secrets/x").Obj("secrets", "production", "x").Stage(audit.StageRequestReceived),
		req(20, "carol", "get", "/api/v1/namespaces/production/secrets/x").Obj("secrets", "production", "x").Stage(audit.StageRequestReceived),
		req(21, "carol", "get", "/api/v1/namespaces/production/secrets/y").Obj("secrets", "production", "y").Code(403, "forbid"),
		req(30, "dave", "get", "/api/v1/namespaces/production/secrets/x").Obj("secrets", "production", "x").Stage(audit.StageRequestReceived),
		req(31, "dave", "get", "/api/v1/namespaces/production/secrets/y").Obj("secrets", "production", "y").Code(200, "allow"),
	})
	rep, err := Secrets(r, SecretsQuery{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range rep.Accesses {
		got = append(got, a.User+": "+a.Flag)
	}
	want := []string{
		"bob: non-system read attempt; no response is in the log",
		"carol: non-system read attempt; 1 with no response in the log",
		"dave: non-system read",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("flags (-want +got):\n%s", diff)
	}
}

// TestHistoryGeneratedName: an object created with metadata.generateName
// has no name in its create event's objectRef (the audit log takes it
// from the request body, which holds only the prefix); its history still
// starts with that creation, found by the name in the responseObject. The
// creation of a sibling (web-zzzzz), whose body holds the name elsewhere,
// is not in it.
// Mutation it catches: the name condition alone (the history begins at
// the patch, and the creation is lost).
func TestHistoryGeneratedName(t *testing.T) {
	pod := func(name string) string {
		return `{"kind":"Pod","apiVersion":"v1","metadata":{"name":"` + name + `","generateName":"web-","namespace":"d"},"spec":{}}`
	}
	evs := []*evb{
		req(1, "a", "create", "/api/v1/namespaces/d/pods").Obj("pods", "d", "").Level(audit.LevelRequestResponse).Code(201, "allow").
			ReqBody(`{"kind":"Pod","apiVersion":"v1","metadata":{"generateName":"web-"}}`).RespBody(pod("web-x7k2p")),
		req(2, "a", "create", "/api/v1/namespaces/d/pods").Obj("pods", "d", "").Level(audit.LevelRequestResponse).Code(201, "allow").
			RespBody(strings.Replace(pod("web-zzzzz"), `"spec":{}`, `"spec":{"hostname":"web-x7k2p"}`, 1)),
		req(3, "b", "patch", "/api/v1/namespaces/d/pods/web-x7k2p").Obj("pods", "d", "web-x7k2p").Level(audit.LevelMetadata).Code(200, "allow"),
	}
	r := openFixture(t, evs)
	for _, diffs := range []bool{false, true} {
		rep, err := History(r, HistoryQuery{Target: Target{Resources: Resources("pod"), Name: "web-x7k2p"}, Namespace: "d", Diffs: diffs})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, c := range rep.Changes {
			got = append(got, summary(c.Request))
		}
		want := []string{
			"1 a create pods/web-x7k2p -n d ResponseComplete 201 allow",
			"3 b patch pods/web-x7k2p -n d ResponseComplete 200 allow",
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("diffs=%v (-want +got):\n%s", diffs, diff)
		}
		if diffs && (len(rep.Changes) == 0 || rep.Changes[0].Body != "responseObject") {
			t.Errorf("the creation's body is not the object it created")
		}
	}
}
