package investigate

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// SecretsQuery asks who read, listed, watched and changed which secrets.
type SecretsQuery struct {
	Scope
}

// SecretAccess is one user's use of one verb on secrets.
type SecretAccess struct {
	// User is the authenticated user; As the impersonated one, if any.
	User string `json:"user"`
	As   string `json:"impersonatedUser,omitempty"`
	Verb string `json:"verb"`
	// Requests counts the requests; Failed those answered 400 or more.
	Requests int `json:"requests"`
	Failed   int `json:"failed"`
	// First and Last are when the first and last of them were received.
	First time.Time `json:"first"`
	Last  time.Time `json:"last"`
	// Secrets lists the secrets touched as namespace/name, most used
	// first; a list or watch of a namespace is namespace/*, of the whole
	// cluster *.
	Secrets []Count `json:"secrets"`
	// Codes counts the status codes.
	Codes []Count `json:"codes"`
	// Flag is set when a user outside system: (a person, not a component
	// or service account) read secrets: "non-system read", or "non-system
	// read attempt" when no such read is known to have succeeded (every
	// one refused, or with no response in the log: "non-system read
	// attempt; no response is in the log" when none has one, "; N with no
	// response in the log" when some); "anonymous read" (attempt) for
	// requests without credentials.
	Flag string `json:"flag,omitempty"`

	secrets, codes counter
	unanswered     int // requests with no response in the log (code 0)
}

// SecretsReport answers a SecretsQuery, people before system users.
type SecretsReport struct {
	Accesses []*SecretAccess
	Requests int
	// Cut counts the groups left out by Scope.Limit.
	Cut int
	// Hidden counts the rows of the control plane left out (see
	// Scope.IncludeSystem).
	Hidden int
}

// Secrets groups the requests on secrets by user and verb.
func Secrets(r Source, q SecretsQuery) (*SecretsReport, error) {
	reqs, hidden, err := collect(r, q.Scope, and(eq("resource", "secrets"), eq("apigroup", "")), false, false)
	if err != nil {
		return nil, err
	}
	type key struct{ user, as, verb string }
	groups := map[key]*SecretAccess{}
	rep := &SecretsReport{Requests: len(reqs), Hidden: hidden}
	for _, rq := range reqs {
		k := key{rq.User, rq.As, rq.Verb}
		a := groups[k]
		if a == nil {
			a = &SecretAccess{User: rq.User, As: rq.As, Verb: rq.Verb, First: rq.Time, secrets: counter{}, codes: counter{}}
			groups[k] = a
			rep.Accesses = append(rep.Accesses, a)
		}
		a.Requests++
		if rq.Code >= 400 {
			a.Failed++
		}
		if rq.Code == 0 {
			a.unanswered++ // only RequestReceived: asked, answer unknown
		}
		a.Last = rq.Time
		obj := rq.Name
		if obj == "" {
			obj = "*"
		}
		if rq.Namespace != "" {
			obj = rq.Namespace + "/" + obj
		}
		a.secrets[obj]++
		code := "none"
		if rq.Code != 0 {
			code = strconv.Itoa(rq.Code)
		}
		a.codes[code]++
	}
	for _, a := range rep.Accesses {
		a.Secrets, a.Codes = a.secrets.top(0), a.codes.top(0)
		if !isComponent(a.User) && slices.Contains(readVerbs, a.Verb) {
			a.Flag = "non-system read"
			if isAnonymous(a.User) {
				a.Flag = "anonymous read"
			}
			switch {
			case a.Failed+a.unanswered < a.Requests:
			case a.unanswered == a.Requests:
				a.Flag += " attempt; no response is in the log"
			case a.unanswered > 0:
				a.Flag += fmt.Sprintf(" attempt; %d with no response in the log", a.unanswered)
			default:
				a.Flag += " attempt"
			}
		}
	}
	slices.SortStableFunc(rep.Accesses, func(a, b *SecretAccess) int {
		return cmp.Or(
			cmp.Compare(boolRank(isComponent(a.User)), boolRank(isComponent(b.User))),
			cmp.Compare(a.User, b.User),
			cmp.Compare(a.As, b.As),
			cmp.Compare(verbRank(a.Verb), verbRank(b.Verb)),
			cmp.Compare(a.Verb, b.Verb),
		)
	})
	rep.Accesses, rep.Cut = firstN(rep.Accesses, q.Limit)
	return rep, nil
}

func boolRank(b bool) int {
	if b {
		return 1
	}
	return 0
}

// verbRank orders verbs as people read them: reads, then writes.
func verbRank(v string) int {
	if i := slices.Index(append(slices.Clone(readVerbs), writeVerbs...), v); i >= 0 {
		return i
	}
	return 100
}

// Records returns the groups.
func (s *SecretsReport) Records() []any { return records(s.Accesses) }

// Table lists the groups; wide adds the first time and every secret.
func (s *SecretsReport) Table(wide bool) *Table {
	t := &Table{
		Head:  []string{"USER", "AS", "VERB", "REQUESTS", "CODES", "SECRETS", "LAST", "FLAG"},
		Empty: "no requests on secrets",
	}
	if wide {
		t.Head = append(t.Head, "FIRST")
	}
	users := map[string]bool{}
	flagged := 0
	for _, a := range s.Accesses {
		n := 3
		if wide {
			n = 0
		}
		flag := ""
		if a.Flag != "" {
			flag = "! " + a.Flag
			flagged++
		}
		cells := []string{userOrNone(a.User), a.As, a.Verb, strconv.Itoa(a.Requests), fmtCounts(a.codes, 0, ","), fmtList(a.Secrets, n), fmtTime(a.Last), flag}
		if wide {
			cells = append(cells, fmtTime(a.First))
		}
		t.Rows = append(t.Rows, Row{Cells: cells})
		users[a.User] = true
	}
	if len(s.Accesses) > 0 && s.Cut == 0 {
		t.Notes = append(t.Notes, fmt.Sprintf("%s on secrets by %s", nRows(s.Requests, "request", false), nRows(len(users), "user", false)))
	}
	t.Notes = append(t.Notes, cutNote(s.Cut)...)
	if flagged > 0 {
		t.Notes = append(t.Notes, fmt.Sprintf("%d rows flagged: secrets read (get, list, watch) by users outside system: (people rather than components); `kubetrail activity USER` shows each request.", flagged))
	}
	t.Notes = append(t.Notes, hiddenNote(s.Hidden, false)...)
	return t
}

// fmtList prints values most used first, with their count when above
// one, and "+N more" past n (0 for all).
func fmtList(cs []Count, n int) string {
	var parts []string
	for i, c := range cs {
		if n > 0 && i == n {
			parts = append(parts, fmt.Sprintf("+%d more", len(cs)-n))
			break
		}
		if c.Count > 1 {
			parts = append(parts, fmt.Sprintf("%s(%d)", c.Value, c.Count))
		} else {
			parts = append(parts, c.Value)
		}
	}
	return strings.Join(parts, ",")
}
