package investigate

import (
	"context"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// withBootstrap is the incident with the control plane's own traffic
// around it, as a cluster's first minutes log: the API server creating its
// default roles, the controllers binding theirs, a kubelet, and some
// requests by system: identities that must stay in sight.
func withBootstrap() []*evb {
	rb := func(sec float64, user, resource, name string, code int32, decision string) *evb {
		return req(sec, user, "create", "/apis/rbac.authorization.k8s.io/v1/"+resource).
			Obj(resource, "", name).Group("rbac.authorization.k8s.io").Code(code, decision)
	}
	return append(incident(),
		rb(0.1, "system:apiserver", "clusterroles", "admin", 201, "allow"),
		rb(0.2, "system:apiserver", "clusterrolebindings", "system:basic-user", 201, "allow"),
		rb(0.3, "system:kube-controller-manager", "clusterrolebindings", "system:controller:job", 201, "allow"),
		rb(0.4, "system:serviceaccount:kube-system:bootstrap-signer", "clusterroles", "bs", 201, "allow"),
		rb(0.5, "system:node:n1", "clusterroles", "node", 201, "allow"),
		// Kept: denied, though by the control plane; a workload's service
		// account; anonymous; unauthenticated.
		rb(0.6, "system:kube-scheduler", "clusterrolebindings", "sched", 403, "forbid"),
		rb(0.7, "system:serviceaccount:prod:app", "clusterrolebindings", "app", 201, "allow"),
		rb(0.8, "system:anonymous", "clusterroles", "anon", 201, "allow"),
		rb(0.9, "", "clusterroles", "nobody", 401, ""),
	)
}

// TestControlPlaneHidden checks the default that keeps bootstrap noise out
// of the investigations but who, and what it must never hide.
// Mutations it catches: hiding denied requests too (controlPlane alone,
// without denied), hiding every system: user, not hiding at all, and
// hiding in who.
func TestControlPlaneHidden(t *testing.T) {
	r := openFixture(t, withBootstrap())
	users := func(rep *RBACReport) []string {
		var out []string
		for _, c := range rep.Changes {
			out = append(out, userOrNone(c.User)+" "+c.Name)
		}
		return out
	}
	rep, err := RBAC(r, RBACQuery{})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"system:kube-scheduler sched", "system:serviceaccount:prod:app app", "system:anonymous anon", "(unauthenticated) nobody",
		"mallory backdoor", "mallory all", "admin view",
	}
	if diff := cmp.Diff(want, users(rep)); diff != "" {
		t.Errorf("rbac by default (-want +got):\n%s", diff)
	}
	note := "5 requests by the control plane hidden; --include-system shows them"
	if text := render(t, rep, "table"); !strings.Contains(text, note) {
		t.Errorf("rbac table lacks %q:\n%s", note, text)
	}

	rep, err = RBAC(r, RBACQuery{Scope: Scope{IncludeSystem: true}})
	if err != nil {
		t.Fatal(err)
	}
	got := users(rep)
	for _, u := range []string{"system:apiserver admin", "system:apiserver system:basic-user", "system:kube-controller-manager system:controller:job",
		"system:serviceaccount:kube-system:bootstrap-signer bs", "system:node:n1 node"} {
		if !slices.Contains(got, u) {
			t.Errorf("rbac with IncludeSystem lacks %q: %q", u, got)
		}
	}
	if len(got) != len(want)+5 {
		t.Errorf("rbac with IncludeSystem: %d rows, want %d: %q", len(got), len(want)+5, got)
	}
	if text := render(t, rep, "table"); strings.Contains(text, "hidden") {
		t.Errorf("rbac with IncludeSystem says rows were hidden:\n%s", text)
	}

	// The same through Run's parameters, as the API and the CLI pass them.
	now := time.Now()
	for params, wantHidden := range map[string]bool{"": true, "include-system=1": false} {
		p, _ := url.ParseQuery(params)
		rep, err := Run(context.Background(), r, "rbac", p, now)
		if err != nil {
			t.Fatal(err)
		}
		text := render(t, rep, "table")
		if strings.Contains(text, "system:apiserver") == wantHidden || strings.Contains(text, note) != wantHidden {
			t.Errorf("rbac?%s, want hidden %v:\n%s", params, wantHidden, text)
		}
	}

	// who hides nothing, and takes no include-system.
	who, err := Run(context.Background(), r, "who", url.Values{"resource": {"clusterroles.rbac.authorization.k8s.io"}}, now)
	if err != nil {
		t.Fatal(err)
	}
	if text := render(t, who, "table"); !strings.Contains(text, "system:apiserver") || !strings.Contains(text, "system:node:n1") || strings.Contains(text, "hidden") {
		t.Errorf("who hid the control plane:\n%s", text)
	}
	if _, err := Run(context.Background(), r, "who", url.Values{"resource": {"pods"}, "include-system": {"1"}}, now); err == nil {
		t.Error("who took include-system")
	}
}

// TestControlPlaneHiddenEmpty: an answer left empty by the filter says so.
func TestControlPlaneHiddenEmpty(t *testing.T) {
	r := openFixture(t, []*evb{
		req(1, "system:apiserver", "get", "/api/v1/namespaces/kube-system/secrets/x").Obj("secrets", "kube-system", "x").Code(200, "allow"),
	})
	rep, err := From(r, FromQuery{Addr: "10.0.0.5"})
	if err != nil {
		t.Fatal(err)
	}
	want := "no requests from 10.0.0.5\n1 request by the control plane hidden; --include-system shows them\n"
	if text := render(t, rep, "table"); text != want {
		t.Errorf("from table:\n%s\nwant:\n%s", text, want)
	}
}
