package jq

import (
	"bytes"
	"context"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// oddEvents are shapes a real API server does not write but a file given
// to import may hold: the fast path must decide them as gojq does, or hand
// them to gojq.
var oddEvents = []string{
	`{"verb":"delete","verb":"get","objectRef":{"resource":"secrets"}}`,
	`{"verb":"get","verb":"delete"}`,
	`{"ve\u0072b":"delete"}`,
	`{"Verb":"delete","VERB":"delete"}`,
	`{"verb":1}`, `{"verb":null}`, `{"verb":["delete"]}`, `{"verb":{"a":1}}`, `{"verb":true}`,
	`{"verb":"del\u0065te"}`, `{"verb":"delete\u0000"}`,
	`{"responseStatus":{"code":"403"}}`, `{"responseStatus":{"code":403.0}}`, `{"responseStatus":{"code":403.5}}`,
	`{"responseStatus":null}`, `{"responseStatus":{"code":[403]}}`, `{"responseStatus":{"code":null}}`,
	`{"responseStatus":{"code":-1}}`, `{"responseStatus":{"code":1e3}}`, `{"responseStatus":"403"}`, `{}`,
	`{"sourceIPs":"192.168.1.100"}`, `{"sourceIPs":null}`, `{"sourceIPs":[1,"192.168.1.100"]}`,
	`{"sourceIPs":["192.168.1.100",1]}`, `{"sourceIPs":[["192.168.1.100"]]}`, `{"sourceIPs":[{"a":"192.168.1.100"}]}`,
	`{"sourceIPs":["10.0.0.1","192.168.1.100"]}`, `{"sourceIPs":[]}`, `{"sourceIPs":{"a":"192.168.1.100"}}`,
	`{"objectRef":{"resource":"secrets"},"verb":"delete"}`, `{"objectRef":"secrets"}`,
	`{"objectRef":{"sub":{"resource":"secrets"},"resource":"pods"},"verb":"delete"}`,
	`{"requestObject":{"verb":"delete","objectRef":{"resource":"secrets"}},"verb":"get"}`,
	`{"x":[{"verb":"delete"}],"y":[[{"verb":"delete"}]]}`,
	`{"annotations":{"authorization.k8s.io/decision":"forbid"}}`, `{"annotations":{"authorization.k8s.io/decision":["forbid"]}}`,
	`{"user":{"username":"admin"},"impersonatedUser":{"username":"admin"}}`,
	` { "verb" : "delete" , "n" : [ 1.50 , -0 , 1e-7 ] , "s" : "a\/b\u003c" } `,
	// Escaped keys: managedFields' k:{...}, a key spelling another, one
	// with a control character, non-ASCII ones, raw and escaped.
	`{"f":{"k:{\"name\":\"app\"}":{}},"verb":"delete"}`,
	`{"verb":"get","ve\u0072b":"delete"}`, `{"ve\u0072b":"get","verb":"delete"}`,
	`{"a\u0000b":1,"verb":"delete"}`, `{"é":1,"\u00e9":2,"verb":"delete"}`, `{"objectRef":{"re\u0073ource":"secrets"},"verb":"delete"}`,
	// Strings crossing eight-byte words with a quote, a backslash, DEL
	// and non-ASCII at each place.
	"{\"verb\":\"delete\",\"s\":[\"abcdefg\\\"h\",\"abcdefgh\\\\\",\"abcdefgh\x7f\",\"abcdefghé\",\"abcdefghijklmnop\",\"\x7fabcdefgh\"]}",
}

var fastPrograms = []string{
	`select(.verb == "delete")`,
	`select("delete" == .verb)`,
	`select(.responseStatus.code >= 400)`,
	`select(.responseStatus.code < 400)`,
	`select(400 <= .responseStatus.code)`,
	`select(.responseStatus.code == 403)`,
	`select(any(.sourceIPs[]?; . == "192.168.1.100"))`,
	`select(any(.sourceIPs[]; . == "192.168.1.100"))`,
	`select(.objectRef.resource == "secrets" and .verb == "delete")`,
	`select(.verb == "delete" or .responseStatus.code > 300)`,
	`select(.verb | IN("delete", "get"))`,
	`select(.annotations["authorization.k8s.io/decision"] == "forbid")`,
	`select(.user.username == "admin") | select(.impersonatedUser.username == "admin")`,
	`select(.objectRef.resource == "secrets")`,
	`select(.objectRef.apiGroup == "rbac.authorization.k8s.io" and (.verb == "create" or .verb == "update" or .verb == "patch" or .verb == "delete"))`,
}

// TestFastPathAgreesWithGojq runs each select program on every event both
// ways, the fast path and gojq alone, and wants the same output; and the
// fast path must decide most corpus events itself, or it would be dead
// code that only looks like speed.
func TestFastPathAgreesWithGojq(t *testing.T) {
	events := loadCorpus(t)
	for _, e := range oddEvents {
		events = append(events, []byte(e+"\n"))
	}
	programs := fastPrograms
	// And generated conditions, over values the corpus holds.
	g := &progGen{r: rand.New(rand.NewPCG(3, 5)), values: map[string][]string{
		".verb": {"get", "delete", "create"}, ".user.username": {"admin", "alice"}, ".objectRef.resource": {"secrets", "pods"},
		".objectRef.namespace": {"production", "kube-system"}, ".objectRef.name": {"important"}, ".sourceIPs[]": {"192.168.1.100", "10.0.0.1"},
		".level": {"Metadata", "RequestResponse"}, ".stage": {"ResponseComplete"}, ".user.groups[]": {"system:masters"},
	}}
	generated := 0
	for generated < 60 {
		src := "select(" + g.cond(0) + ")"
		if p, err := Compile(src, time.Now()); err == nil && p.fast != nil {
			programs = append(programs, src)
			generated++
		}
	}
	for _, src := range programs {
		fast, err := Compile(src, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if fast.fast == nil {
			t.Errorf("%s: no fast path", src)
			continue
		}
		slow, _ := Compile(src, time.Now())
		slow.fast = nil
		decided := 0
		for _, l := range events {
			l = bytes.TrimSuffix(l, []byte("\n"))
			want, wn, werr := slow.Run(context.Background(), l, nil)
			have, hn, herr := fast.Run(context.Background(), l, nil)
			if !bytes.Equal(want, have) || wn != hn || (werr == nil) != (herr == nil) {
				t.Fatalf("%s on %s:\n  gojq %q %d %v\n  fast %q %d %v", src, l, want, wn, werr, have, hn, herr)
			}
			out, ok := fast.dec.scan(fast.fast, nil, l, fast.vals)
			_ = out
			if ok {
				if _, sure := fast.fast.cond(fast.vals); sure {
					decided++
				}
			}
		}
		if decided < len(events)*9/10 {
			t.Errorf("%s: the fast path decided only %d of %d events", src, decided, len(events))
		}
	}
}

func TestNoFastPath(t *testing.T) {
	for _, src := range []string{
		`select(.verb == "delete") | .user`, `select(.sourceIPs[] == "x")`, `select(.verb != "get")`,
		`select(.verb | test("del"))`, `def f: .; select(.verb == "delete")`, `.`, `select(.verb == "a"), select(.verb == "b")`,
	} {
		p, err := Compile(src, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if p.fast != nil {
			t.Errorf("%s: has a fast path", src)
		}
	}
	_ = strings.TrimSpace
}
