package falco

import "testing"

// FuzzParseCondition: the condition parser never panics or loops, an error
// is always inside the input, and whatever parses also compiles or gives
// a positioned error (never a panic) and evaluates without panicking.
// The seed corpus is in testdata/fuzz/FuzzParseCondition.
func FuzzParseCondition(f *testing.F) {
	f.Add(`kevt and pod and kcreate and ka.req.pod.containers.privileged intersects (true)`)
	f.Add(`jevt.value[/stage] in (k8s_audit_stages) and not ka.user.name startswith "system:"`)
	f.Add(`tolower(ka.user.name) = val(ka.target.name)`)
	ev := event(f, podEvent)
	fields := fieldTable()
	f.Fuzz(func(t *testing.T, cond string) {
		_, err := parseCondition(cond)
		if err != nil {
			se, ok := err.(*syntaxError)
			if !ok || se.at < 0 || se.at > len(cond) {
				t.Fatalf("error %v at %d outside the %d-byte input", err, se.at, len(cond))
			}
			return
		}
		rs := newRuleset()
		rs.lists["l"] = &listDef{name: "l", items: []string{"a", "b"}}
		c := newCompiler(rs, fields)
		m, cerr := c.compileCondition(texts{{s: cond}})
		if cerr != nil {
			if cerr.at < 0 || cerr.at > len(cond) {
				t.Fatalf("compile error %q at %d outside the input", cerr.msg, cerr.at)
			}
			return
		}
		m.match(&evalCtx{e: ev, ev: ev.Ev})
	})
}
