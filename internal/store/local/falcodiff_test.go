package local

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/pipeline"
	"github.com/kubetrail/kubetrail/internal/rules"
	"github.com/kubetrail/kubetrail/internal/rules/engine"
	"github.com/kubetrail/kubetrail/internal/rules/falco"
	"github.com/kubetrail/kubetrail/internal/testenv"
)

// falcoValues are the strings the crafted events hold and the random
// rules compare with: empty, prefixes of one another, regular expression
// metacharacters, non-ASCII, case variants.
var falcoValues = []string{
	"", "admin", "Admin", "adm", "system:", "system:anonymous", "system:kube-scheduler", "a.b", "a*b", "ab", "(x)", "[x]",
	"x|y", "\\", "\"q\"", " ", "ä", "äx", "é", "get", "create", "delete", "pods", "secrets", "exec", "kube-system", "default",
	"/api/v1/pods", "/healthz?verbose", "/healthz", "kubectl/v1.30", "curl", "allow", "forbid", "RBAC: allowed",
	"ResponseComplete", "ResponseStarted", "RequestReceived", "id-1", "$", "^a", "a\nb", "\u00a0", "İ", "ı",
	"\ufffd", "a\ufffd", "Panic", "configmaps", "system:serviceaccount:kube-system:replicaset-controller", "minikube-user",
	"kubernetes-admin", "system:kube-controller-manager", "pods/exec", "kube-public", "clusterrolebindings", "namespaces",
}

// craftedLine is one audit event's JSON text, made of falcoValues, with
// members absent, null, empty, written twice, in another case, with
// escaped keys, and strings holding invalid UTF-8 or escapes.
func craftedLine(rng *rand.Rand, seq int) string {
	pick := func(vs []string) string { return vs[rng.IntN(len(vs))] }
	str := func() string {
		s := pick(falcoValues)
		switch rng.IntN(12) {
		case 0:
			return `"` + s + "\xff" + `"` // invalid UTF-8, written raw
		case 1:
			return `"\ud800` + jsonEsc(s)[1:] // a lone surrogate
		case 2:
			b, _ := json.Marshal(s)
			return strings.ReplaceAll(string(b), "a", `\u0061`)
		}
		return jsonEsc(s)
	}
	var members []string
	member := func(key, val string) {
		switch rng.IntN(14) {
		case 0:
			return // absent
		case 1:
			members = append(members, jsonEsc(key)+":null")
			return
		case 2:
			key = strings.ToUpper(key[:1]) + key[1:] // another case
		case 3:
			key = strings.ToLower(key)
		case 4:
			members = append(members, jsonEsc(key)+":"+str()) // written twice
		case 5:
			k, _ := json.Marshal(key)
			key = strings.Replace(string(k), "e", `\u0065`, 1)
			members = append(members, key+":"+val)
			return
		}
		members = append(members, jsonEsc(key)+":"+val)
	}
	obj := func(fill func()) string {
		saved := members
		members = nil
		fill()
		out := "{" + strings.Join(members, ",") + "}"
		members = saved
		return out
	}
	times := []string{"2026-03-01T10:00:00.5Z", "1970-01-01T00:00:00Z", "1970-01-01T00:00:00.000000005Z", "1970-01-01T00:00:00.9Z",
		"1969-12-31T23:59:59Z", "2262-04-11T23:47:16.854775808Z", "2554-07-21T23:34:33.709551616Z", "2026-03-01T10:00:00+02:00",
		fmt.Sprintf("2026-03-01T10:%02d:%02d.%06dZ", seq/60%60, seq%60, seq)}
	members = append(members, `"kind":"Event"`, `"apiVersion":"audit.k8s.io/v1"`, `"level":"Metadata"`)
	member("auditID", str())
	member("stage", jsonEsc(pick([]string{"ResponseComplete", "ResponseStarted", "RequestReceived", "Panic", ""})))
	member("user", obj(func() {
		member("username", str())
		member("groups", `["dev","system:authenticated"]`)
	}))
	member("impersonatedUser", obj(func() { member("username", str()) }))
	member("verb", str())
	member("requestURI", str())
	member("userAgent", str())
	member("objectRef", obj(func() {
		member("resource", str())
		member("subresource", str())
		member("namespace", str())
		member("name", str())
	}))
	member("annotations", obj(func() {
		member("authorization.k8s.io/decision", str())
		member("authorization.k8s.io/reason", str())
	}))
	member("responseStatus", obj(func() { member("code", pick([]string{"200", "403", "0"})) }))
	// A body holding the keys of the fields above, which are not them.
	member("requestObject", obj(func() {
		member("requestURI", str())
		member("auditID", str())
		member("user", `{"username":`+str()+`}`)
		member("annotations", `{"authorization.k8s.io/reason":`+str()+`}`)
	}))
	member("requestReceivedTimestamp", jsonEsc(pick(times)))
	member("stageTimestamp", jsonEsc(pick(times)))
	members = append(members, `"seq":`+strconv.Itoa(seq)) // no two alike: nothing is a duplicate
	rng.Shuffle(len(members)-3, func(i, j int) { members[i+3], members[j+3] = members[j+3], members[i+3] })
	return "{" + strings.Join(members, ",") + "}"
}

func jsonEsc(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// falcoFields are the fields random rules compare: those Prefilters
// translates and some it does not.
var falcoFields = []string{
	"ka.user.name", "ka.impuser.name", "ka.verb", "ka.uri", "ka.target.name", "ka.target.namespace", "ka.target.resource",
	"ka.target.subresource", "ka.req.configmap.name", "ka.useragent", "ka.auditid", "ka.stage", "ka.auth.decision", "ka.auth.reason",
	"ka.target.pod.name", "jevt.value[/stage]", "jevt.value[/verb]", "ka.auth.openshift.decision", "ka.uri.param[verbose]",
}

// randomCheck is one Falco check.
func randomCheck(rng *rand.Rand) string {
	pick := func(vs []string) string { return vs[rng.IntN(len(vs))] }
	q := func(s string) string {
		return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s) + `"`
	}
	switch rng.IntN(24) {
	case 0:
		return pick([]string{"jevt.rawtime=0", "evt.rawtime < 1000000000", "evt.rawtime.ns=5", `jevt.rawtime="-1"`, "evt.rawtime <= 0",
			"evt.rawtime.s < 1", "ka.user.groups intersects (dev)", "ka.response.code=403", "tolower(ka.verb)=get", "ka.verb=val(ka.user.name)"})
	case 1:
		return pick(falcoFields) + " exists"
	}
	f := falcoFields[rng.IntN(14)] // translated, mostly
	if rng.IntN(6) == 0 {
		f = pick(falcoFields)
	}
	switch op := pick([]string{"=", "!=", "in", "intersects", "startswith", "endswith", "contains", "icontains", "glob"}); op {
	case "in", "intersects":
		var vs []string
		for range 1 + rng.IntN(4) {
			vs = append(vs, q(pick(falcoValues)))
		}
		if rng.IntN(3) == 0 {
			vs = append(vs, "vals")
		}
		return f + " " + op + " (" + strings.Join(vs, ", ") + ")"
	default:
		return f + " " + op + " " + q(pick(falcoValues))
	}
}

// randomCondition is a Falco condition of depth at most d, naming the
// macros m0 and m1 when macros.
func randomCondition(rng *rand.Rand, d int, macros bool) string {
	if d == 0 || rng.IntN(3) == 0 {
		if macros && rng.IntN(8) == 0 {
			return "m" + strconv.Itoa(rng.IntN(2))
		}
		return randomCheck(rng)
	}
	switch rng.IntN(4) {
	case 0:
		return "not (" + randomCondition(rng, d-1, macros) + ")"
	case 1:
		return "(" + randomCondition(rng, d-1, macros) + " or " + randomCondition(rng, d-1, macros) + ")"
	}
	return "(" + randomCondition(rng, d-1, macros) + " and " + randomCondition(rng, d-1, macros) + ")"
}

// randomFalcoFile is a Falco rule file of random rules, macros, a list
// and exceptions.
func randomFalcoFile(rng *rand.Rand) string {
	y := func(s string) string { return jsonEsc(s) }
	var b strings.Builder
	b.WriteString("- list: vals\n  items: [" + y(falcoValues[rng.IntN(len(falcoValues))]) + ", \"\", admin]\n")
	for i := range 2 {
		fmt.Fprintf(&b, "- macro: m%d\n  condition: %s\n", i, y(randomCondition(rng, 2, false)))
	}
	for i := range 1 + rng.IntN(3) {
		fmt.Fprintf(&b, "- rule: r%d\n  desc: d\n  output: o %%ka.user.name\n  priority: INFO\n  source: k8s_audit\n  condition: %s\n", i, y(randomCondition(rng, 3, true)))
		if rng.IntN(4) == 0 {
			fmt.Fprintf(&b, "  exceptions:\n  - name: e\n    fields: [%s, ka.verb]\n    comps: [%s, \"=\"]\n    values:\n    - [%s, get]\n    - [%s, \"\"]\n",
				falcoFields[rng.IntN(14)], y([]string{"=", "startswith", "!=", "in"}[rng.IntN(4)]), y(falcoValues[rng.IntN(len(falcoValues))]), y(falcoValues[rng.IntN(len(falcoValues))]))
		}
	}
	return b.String()
}

// sigmaFields are the fields random Sigma rules compare: those Prefilters
// writes filters of, and some it does not.
var sigmaFields = []string{
	"verb", "objectRef.resource", "objectRef.subresource", "objectRef.namespace", "objectRef.name", "user.username",
	"impersonatedUser.username", "userAgent", "stage", "responseStatus.code", "requestURI", "auditID",
}

// randomSigmaRule is a Sigma rule of random searches over sigmaFields
// with plain, cased, listed and wildcard values, codes as numbers and
// strings, and a condition of them under and, or, not, 1 of.
func randomSigmaRule(rng *rand.Rand, n int) string {
	pick := func(vs []string) string { return vs[rng.IntN(len(vs))] }
	var b strings.Builder
	fmt.Fprintf(&b, "title: random %d\nlogsource:\n  product: kubernetes\n  service: audit\ndetection:\n", n)
	sels := 1 + rng.IntN(3)
	for s := range sels {
		fmt.Fprintf(&b, "  sel%d:\n", s)
		var keys []string
		for range 1 + rng.IntN(2) {
			f := pick(sigmaFields)
			mod := pick([]string{"", "", "", "", "", "|cased", "|cased", "|contains", "|startswith", "|all"})
			if slices.Contains(keys, f+mod) {
				continue
			}
			keys = append(keys, f+mod)
			var vals []string
			for range 1 + rng.IntN(3) {
				switch v := pick(falcoValues); {
				case f == "responseStatus.code" && rng.IntN(2) == 0:
					vals = append(vals, pick([]string{"403", "200", "0", "403.0"}))
				case v == "" || strings.ContainsAny(v, `*?\`):
					vals = append(vals, jsonEsc("x"))
				case rng.IntN(3) == 0:
					vals = append(vals, jsonEsc(strings.ToUpper(v)))
				default:
					vals = append(vals, jsonEsc(v))
				}
			}
			fmt.Fprintf(&b, "    %s%s: [%s]\n", f, mod, strings.Join(vals, ", "))
		}
	}
	conds := [][]string{{"sel0", "sel0", "not sel0", "1 of sel*"}, {"sel0 and not sel1", "sel0 or sel1", "all of sel*"}, {"sel0 and (sel1 or not sel2)", "1 of sel*"}}[sels-1]
	fmt.Fprintf(&b, "  condition: %s\nlevel: medium\n", pick(conds))
	return b.String()
}

// craftedStore is a store of n crafted events (those the decoder
// takes) in several segments and the WAL, with the records as decoded
// at import.
func craftedStore(t *testing.T, rng *rand.Rand, n int) (string, *Reader, []audit.Record) {
	t.Helper()
	dir := t.TempDir()
	db, err := Open(dir, Options{WALSegmentBytes: 64 << 10, SegmentFormat: 5, layout: segLayout{groupBytes: 16 << 10, blockBytes: 4 << 10, blockEvents: 6}})
	if err != nil {
		t.Fatal(err)
	}
	dec := audit.NewDecoder(audit.Limits{})
	var recs []audit.Record
	for b := 0; len(recs) < n; b++ {
		batch := &pipeline.Batch{Cluster: "c", Received: time.Date(2026, 3, 1, 0, 0, b, 0, time.UTC)}
		for range 50 {
			dec.DecodeLine("crafted", 1, []byte(craftedLine(rng, len(recs)+len(batch.Records))), func(r audit.Record) {
				batch.Records = append(batch.Records, r)
			}, func(audit.Problem) {})
		}
		if _, err := db.Append(t.Context(), batch); err != nil {
			t.Fatal(err)
		}
		recs = append(recs, batch.Records...)
	}
	t.Cleanup(func() { db.Close() })
	waitSealed(t, dir)
	r, err := OpenReader(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return dir, r, recs
}

// TestLazyFalcoMatchesWholeEventsRandom: random Falco rule files (checks
// on the fields Prefilters translates and on some it does not, under and,
// or, not, in macros, lists and exceptions; first and all matching; with
// the built-in pack, with SigmaHQ's rules), Falco's own rules, and random
// Sigma rules (plain, cased, listed values, modifiers, codes, under and,
// or, not), over crafted events (members absent, null, empty, twice, in
// another case, with escaped keys and values, lone surrogates, bodies
// holding their keys; lines with invalid UTF-8 the decoder refuses)
// raise over the store's lazy events exactly the alerts, in the same
// order, that they raise over every stored event read whole and over the
// events as imported (detect FILE). FALCODIFF_SEEDS=N runs N stores of
// 400 rule files each.
// Mutations it catches: Falco's annotations taken as empty-is-missing;
// the != "" conjunct of a Falco check true on "" dropped; Sigma's plain
// values compared with case.
func TestLazyFalcoMatchesWholeEventsRandom(t *testing.T) {
	seeds, nFiles := 1, 60
	if s := os.Getenv("FALCODIFF_SEEDS"); s != "" {
		seeds, _ = strconv.Atoi(s)
		nFiles = 400
	}
	sigmaFiles, _, err := engine.ReadPaths([]string{filepath.Join(testenv.SharedDir(t), "rulesets", "sigma")})
	if err != nil {
		t.Fatal(err)
	}
	falcoFiles, _, err := engine.ReadPaths([]string{filepath.Join(testenv.SharedDir(t), "rulesets", "falco")})
	if err != nil {
		t.Fatal(err)
	}
	for seed := range seeds {
		rng := rand.New(rand.NewPCG(uint64(seed), 77))
		dir, r, recs := craftedStore(t, rng, 1500)
		all := scanAll(t, dir)
		if len(all) != len(recs) {
			t.Fatalf("%d events stored, %d imported", len(all), len(recs))
		}
		lazyRuns, alerts, spared, sigmaRuns := 0, 0, 0, 0
		for k := range nFiles {
			text := randomFalcoFile(rng)
			files := []rules.File{{Name: "r.yaml", Data: []byte(text)}}
			switch {
			case k%10 == 5:
				files = falcoFiles // Falco's own rules
			case k%5 == 2:
				files = nil // random Sigma rules, some beside random Falco rules
				for j := range 1 + rng.IntN(4) {
					files = append(files, rules.File{Name: fmt.Sprintf("s%d.yml", j), Data: []byte(randomSigmaRule(rng, j))})
				}
				if k%10 == 7 {
					files = append(files, rules.File{Name: "r.yaml", Data: []byte(text)})
				}
			case k%4 == 1:
				files = append(files, sigmaFiles...)
			}
			load := func() *engine.Engine {
				eng, probs := engine.Load(files,
					engine.Options{Builtin: k%3 == 0, Falco: falco.Options{Matching: []falco.Matching{falco.MatchFirst, falco.MatchAll}[k%2]}})
				for _, p := range probs {
					if !p.Warning {
						t.Fatalf("%s: %s\n%s", p.File, p, files[0].Data)
					}
				}
				return eng
			}
			want := wholeAlerts(all, load().Eval)
			var file []string
			fe := load()
			for i := range recs {
				for _, a := range fe.Eval(&rules.Event{Ev: &recs[i].Event, Raw: recs[i].Raw, Cluster: "c"}) {
					file = append(file, fmt.Sprintf("%s %v %s %s", a.Rule, a.AuditIDs, a.User, a.Message))
				}
			}
			lazy := load()
			plan, ok := lazy.Lazy()
			if !ok {
				continue
			}
			lazyRuns++
			if k%5 == 2 && k%10 != 5 {
				sigmaRuns++
			}
			alerts += len(want)
			got, given, _ := lazyAlerts(t, r, LazyOptions{Filters: plan.Filters, Fields: plan.Fields, ReadAhead: plan.WillRead}, lazy.Eval)
			if given < len(all) {
				spared++
			}
			if !slices.Equal(got, want) || !slices.Equal(file, want) {
				for _, f := range files {
					if len(files) < 8 {
						t.Logf("seed %d, rule file %d, %s:\n%s", seed, k, f.Name, f.Data)
					}
				}
				for i, f := range plan.Filters {
					t.Logf("filter %d: %v", i, f)
				}
				sameAlerts(t, "whole vs file", file, want)
				sameAlerts(t, "lazy vs whole", got, want)
			}
		}
		t.Logf("seed %d: %d events, %d of %d rule files lazy (%d spared events, %d random Sigma), %d alerts", seed, len(all), lazyRuns, nFiles, spared, sigmaRuns, alerts)
		if lazyRuns < nFiles/3 || spared < lazyRuns/2 || sigmaRuns == 0 || alerts < 1000 {
			t.Errorf("seed %d: %d of %d rule files had a lazy plan, %d of them spared events, %d random Sigma, %d alerts: the test proves little", seed, lazyRuns, nFiles, spared, sigmaRuns, alerts)
		}
	}
}
