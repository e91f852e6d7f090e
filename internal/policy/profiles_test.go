package policy

import (
	"slices"
	"testing"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/policy/profiles"
)

// TestProfiles loads every profile of "policy init" with the strict loader
// and checks the level of representative requests.
func TestProfiles(t *testing.T) {
	alice := &UserInfo{Name: "alice", Groups: []string{"system:authenticated"}}
	res := func(verb, group, resource, sub, ns, name string) *Request {
		return &Request{User: alice, Verb: verb, APIGroup: group, Resource: resource, Subresource: sub, Namespace: ns, Name: name, ResourceRequest: true}
	}
	url := func(verb, path string) *Request { return &Request{User: alice, Verb: verb, Path: path} }
	unauth := &Request{Verb: "get", Path: "/apis"}

	type check struct {
		what  string
		req   *Request
		level audit.Level
	}
	common := []check{
		{"secret get", res("get", "", "secrets", "", "prod", "db"), audit.LevelMetadata},
		{"secret create", res("create", "", "secrets", "", "prod", ""), audit.LevelMetadata},
		{"secret list", res("list", "", "secrets", "", "prod", ""), audit.LevelMetadata},
		{"configmap update", res("update", "", "configmaps", "", "prod", "cfg"), audit.LevelMetadata},
		{"tokenreview create", res("create", "authentication.k8s.io", "tokenreviews", "", "", ""), audit.LevelMetadata},
		{"serviceaccount token", res("create", "", "serviceaccounts", "token", "prod", "sa"), audit.LevelMetadata},
	}
	full := []check{
		{"pods/exec create", res("create", "", "pods", "exec", "prod", "web"), audit.LevelRequestResponse},
		{"pods/exec get", res("get", "", "pods", "exec", "prod", "web"), audit.LevelRequestResponse},
		{"pods/attach create", res("create", "", "pods", "attach", "prod", "web"), audit.LevelRequestResponse},
		{"pods/portforward get", res("get", "", "pods", "portforward", "prod", "web"), audit.LevelRequestResponse},
		{"clusterrolebinding create", res("create", "rbac.authorization.k8s.io", "clusterrolebindings", "", "", ""), audit.LevelRequestResponse},
		{"role patch", res("patch", "rbac.authorization.k8s.io", "roles", "", "prod", "r"), audit.LevelRequestResponse},
	}
	cases := map[string][]check{
		"minimal": append(slices.Clone(common),
			check{"pods/exec create", res("create", "", "pods", "exec", "prod", "web"), audit.LevelRequest},
			check{"pods/exec get (WebSocket)", res("get", "", "pods", "exec", "prod", "web"), audit.LevelRequest},
			check{"clusterrolebinding create", res("create", "rbac.authorization.k8s.io", "clusterrolebindings", "", "", ""), audit.LevelRequest},
			check{"pod get", res("get", "", "pods", "", "prod", "web"), audit.LevelMetadata},
			check{"healthz", url("get", "/healthz"), audit.LevelMetadata},
		),
		"recommended": append(append(slices.Clone(common), full...),
			check{"healthz", url("get", "/healthz"), audit.LevelNone},
			check{"healthz/etcd", url("get", "/healthz/etcd"), audit.LevelNone},
			check{"readyz", url("get", "/readyz"), audit.LevelNone},
			check{"metrics", url("get", "/metrics"), audit.LevelNone},
			check{"kube-proxy watch", &Request{User: &UserInfo{Name: "system:kube-proxy"}, Verb: "watch", Resource: "endpoints", ResourceRequest: true}, audit.LevelNone},
			check{"kubelet node status", &Request{User: &UserInfo{Name: "system:node:n1", Groups: []string{"system:nodes"}}, Verb: "get", Resource: "nodes", Subresource: "status", Name: "n1", ResourceRequest: true}, audit.LevelNone},
			check{"scheduler lease", &Request{User: &UserInfo{Name: "system:kube-scheduler"}, Verb: "update", APIGroup: "coordination.k8s.io", Resource: "leases", Namespace: "kube-system", Name: "kube-scheduler", ResourceRequest: true}, audit.LevelNone},
			check{"deployment create", res("create", "apps", "deployments", "", "prod", ""), audit.LevelRequest},
			check{"pod get", res("get", "", "pods", "", "prod", "web"), audit.LevelMetadata},
		),
		"cks": append(append(slices.Clone(common), full...),
			check{"healthz", url("get", "/healthz"), audit.LevelNone},
			check{"namespace create", res("create", "", "namespaces", "", "", ""), audit.LevelRequestResponse},
			check{"deployment create", res("create", "apps", "deployments", "", "prod", ""), audit.LevelRequest},
			check{"pod delete", res("delete", "", "pods", "", "prod", "web"), audit.LevelRequest},
			check{"pod get", res("get", "", "pods", "", "prod", "web"), audit.LevelMetadata},
		),
		"compliance": append(append(slices.Clone(common), full...),
			check{"healthz", url("get", "/healthz"), audit.LevelMetadata},
			check{"deployment create", res("create", "apps", "deployments", "", "prod", ""), audit.LevelRequestResponse},
			check{"pod get", res("get", "", "pods", "", "prod", "web"), audit.LevelMetadata},
		),
	}
	for _, name := range profiles.Names {
		t.Run(name, func(t *testing.T) {
			data, err := profiles.Get(name)
			if err != nil {
				t.Fatal(err)
			}
			p, err := Load(name+".yaml", data)
			if err != nil {
				t.Fatalf("strict load: %v", err)
			}
			if !slices.Contains(p.OmitStages, audit.StageRequestReceived) {
				t.Errorf("omitStages lacks RequestReceived")
			}
			last := len(p.Rules) - 1
			if r := p.Rules[last]; r.Level != audit.LevelMetadata || len(r.Users)+len(r.UserGroups)+len(r.Verbs)+len(r.Resources)+len(r.Namespaces)+len(r.NonResourceURLs) != 0 {
				t.Errorf("last rule is not a Metadata catch-all: %+v", r)
			}
			// No rule may log secrets, configmaps or tokens above Metadata.
			for i, r := range p.Rules {
				for _, gr := range r.Resources {
					for _, res := range gr.Resources {
						switch res {
						case "secrets", "configmaps", "tokenreviews", "serviceaccounts/token":
							if r.Level != audit.LevelMetadata && r.Level != audit.LevelNone {
								t.Errorf("rule %d logs %s at %s", i, res, r.Level)
							}
						}
					}
				}
			}
			ev := NewEvaluator(p)
			if d := ev.Evaluate(unauth); d.Rule != last {
				t.Errorf("unauthenticated GET /apis: rule %d (%s), want the catch-all %d", d.Rule, d.Level, last)
			}
			cases[name] = append(cases[name], check{"unauthenticated", unauth, audit.LevelMetadata})
			for _, c := range cases[name] {
				if d := ev.Evaluate(c.req); d.Level != c.level {
					t.Errorf("%s: level %s (rule %d), want %s", c.what, d.Level, d.Rule, c.level)
				}
			}
		})
	}
	if _, err := profiles.Get("nope"); err == nil {
		t.Error("unknown profile: no error")
	}
}
