package policy

import (
	"iter"
	"math/bits"
	"slices"
	"strconv"
	"strings"
)

// Scope is a set of requests in words, field by field: the requests whose
// resource (or URL), verb, user, namespace and name are each in the
// field's set. The words name real resources and groups
// (deployments.apps, secrets (core)); a value neither policy names is
// said as "any other ..." (any other resource in apps, any other user),
// never by an example value.
type Scope struct {
	// What are the resources and non-resource URLs.
	What Words `json:"what" yaml:"what"`
	// Verbs are the verbs (for a URL, the lowercase HTTP method).
	Verbs Words `json:"verbs" yaml:"verbs"`
	// Users are who sends the requests.
	Users Words `json:"users" yaml:"users"`
	// Namespaces of resource requests; "cluster-scoped" is none.
	Namespaces Words `json:"namespaces" yaml:"namespaces"`
	// Names of the objects requested.
	Names Words `json:"names" yaml:"names"`
	// Text says it all on one line, as String does.
	Text string `json:"text" yaml:"text"`
}

// Words is the set of values of one field. With neither Only nor Except
// it is every value.
type Words struct {
	// Only lists the values in the set.
	Only []string `json:"only,omitempty" yaml:"only,omitempty"`
	// Except lists the values not in the set, which has every other.
	Except []string `json:"except,omitempty" yaml:"except,omitempty"`
}

// Any tells whether the set has every value.
func (w Words) Any() bool { return len(w.Only) == 0 && len(w.Except) == 0 }

// phrase says the set in words, field being the plural the values are
// ("verbs"), anyPhrase what "every value" is ("any verb").
func (w Words) phrase(field, anyPhrase string) string {
	switch {
	case len(w.Only) > 0:
		if field == "" || len(w.Only) == 1 && strings.HasPrefix(w.Only[0], "any ") {
			return strings.Join(w.Only, ", ")
		}
		return field + " " + strings.Join(w.Only, ", ")
	case len(w.Except) > 0:
		return anyPhrase + " except " + strings.Join(w.Except, ", ")
	}
	return anyPhrase
}

// String says the scope on one line: what; verbs; users; and the
// namespaces and names when not every one.
func (s Scope) String() string {
	parts := []string{s.What.phrase("", "any request"), s.Verbs.phrase("verbs", "any verb"), s.Users.phrase("", "any user")}
	if !s.Namespaces.Any() {
		parts = append(parts, s.Namespaces.phrase("namespaces", "any namespace"))
	}
	if !s.Names.Any() {
		parts = append(parts, s.Names.phrase("names", "any name"))
	}
	return strings.Join(parts, "; ")
}

// words turns a scope of probes into words.
func (sp *probeSpace) words(s scopeSet) Scope {
	verb := func(i int) string {
		if sp.verbs[i] == other {
			return "any other verb"
		}
		return sp.verbs[i]
	}
	ns := func(i int) string {
		switch sp.namespaces[i] {
		case other:
			return "any other namespace"
		case "":
			return "cluster-scoped"
		}
		return sp.namespaces[i]
	}
	name := func(i int) string {
		switch sp.names[i] {
		case other:
			return "any other name"
		case "":
			return `no name (list, create, watch of all)`
		}
		return sp.names[i]
	}
	// A resource request is never a post or put, a non-resource one (an
	// HTTP method) never a list or watch: the verbs a kind of request
	// cannot have are left out of its words.
	resources, urls := sp.kinds(s.what)
	impossible := func(i int) bool {
		v := sp.verbs[i]
		return !resources && slices.Contains(resourceVerbs, v) && !slices.Contains([]string{"get", "patch", "delete"}, v) ||
			!urls && slices.Contains(urlVerbs, v)
	}
	out := Scope{
		Verbs:      setWords(s.verbs, verb, func(i int) bool { return sp.verbs[i] == other }, impossible),
		Namespaces: setWords(s.ns, ns, func(i int) bool { return sp.namespaces[i] == other }, nil),
		Names:      setWords(s.names, name, func(i int) bool { return sp.names[i] == other }, nil),
		Users:      sp.userWords(s.users),
		What:       sp.whatWords(s.what),
	}
	// The namespace and name of a non-resource URL are not a thing.
	if !resources {
		out.Namespaces, out.Names = Words{}, Words{}
	}
	out.Text = out.String()
	return out
}

// kinds tells whether a set of probes has resources, and URLs.
func (sp *probeSpace) kinds(what bitset) (resources, urls bool) {
	for w := range what.members() {
		if sp.what[w].url {
			urls = true
		} else {
			resources = true
		}
	}
	return resources, urls
}

// setWords says a set of probe indices: every value, the values in it, or
// every value but a few (when fewer, and none of them is "any other").
// Values for which skip is true are left out of the words.
func setWords(set bitset, say func(int) string, isOther, skip func(int) bool) Words {
	var in, out []string
	otherOut := false
	for i := 0; i < set.n; i++ {
		if skip != nil && skip(i) {
			continue
		}
		if set.has(i) {
			in = append(in, say(i))
		} else {
			out = append(out, say(i))
			otherOut = otherOut || isOther(i)
		}
	}
	switch {
	case len(out) == 0:
		return Words{}
	case len(out) < len(in) && !otherOut:
		return Words{Except: out}
	}
	return Words{Only: in}
}

// userWords says a set of user probes: a user when every group probe of
// that user is in the set, a group when every user in it is, then the
// rest one by one; or every user but those, when that is shorter.
func (sp *probeSpace) userWords(set bitset) Words {
	if set.full() {
		return Words{}
	}
	in := sp.userPhrases(set, "user ")
	out := sp.userPhrases(set.complement(), "")
	anyOther := slices.ContainsFunc(out, func(s string) bool { return strings.Contains(s, "any other") })
	if len(out) < len(in) && !anyOther {
		return Words{Except: out}
	}
	return Words{Only: in}
}

// userPhrases says a set of user probes, each user name after prefix.
func (sp *probeSpace) userPhrases(set bitset, prefix string) []string {
	var out []string
	covered := newBitset(set.n)
	// All authenticated users?
	auth := newBitset(set.n)
	for i, u := range sp.users {
		if !u.unauth {
			auth.set(i)
		}
	}
	if set.contains(auth) {
		out = append(out, "any authenticated user")
		covered = auth
	} else {
		// Whole users.
		for _, name := range sp.userNames() {
			whole := newBitset(set.n)
			for i, u := range sp.users {
				if !u.unauth && u.name == name {
					whole.set(i)
				}
			}
			if set.contains(whole) {
				out = append(out, userName(name, prefix))
				covered.or(whole)
			}
		}
		// Whole groups: every user in the group (alone or with another).
		for _, g := range sp.userGroups {
			whole := newBitset(set.n)
			for i, u := range sp.users {
				if slices.Contains(u.groups, g) {
					whole.set(i)
				}
			}
			if set.contains(whole) && !covered.contains(whole) {
				out = append(out, "users in group "+g)
				covered.or(whole)
			}
		}
		// A user whenever in a group (alone or with another).
		for _, name := range sp.userNames() {
			for _, g := range sp.userGroups {
				whole := newBitset(set.n)
				for i, u := range sp.users {
					if !u.unauth && u.name == name && slices.Contains(u.groups, g) {
						whole.set(i)
					}
				}
				if set.contains(whole) && !covered.contains(whole) {
					out = append(out, userName(name, prefix)+" in group "+g)
					covered.or(whole)
				}
			}
		}
		// The rest, one by one.
		for i, u := range sp.users {
			if !set.has(i) || covered.has(i) || u.unauth {
				continue
			}
			p := userName(u.name, prefix)
			switch len(u.groups) {
			case 0:
				p += " in no listed group"
			case 1:
				p += " in group " + u.groups[0] + " and no other listed group"
			default:
				p += " in groups " + u.groups[0] + " and " + u.groups[1] + " and no other listed group"
			}
			out = append(out, p)
		}
	}
	if set.has(len(sp.users) - 1) {
		out = append(out, "unauthenticated requests")
	}
	return out
}

func (sp *probeSpace) userNames() []string {
	var out []string
	for _, u := range sp.users {
		if !u.unauth && !slices.Contains(out, u.name) {
			out = append(out, u.name)
		}
	}
	return out
}

func userName(name, prefix string) string {
	if name == other {
		return "any other user"
	}
	return prefix + name
}

// whatWords says a set of resource and URL probes: "any resource" when
// it has every resource, "any resource in G" for every resource of a
// group, else each; the same for URLs.
func (sp *probeSpace) whatWords(set bitset) Words {
	if set.full() {
		return Words{}
	}
	res, urls := newBitset(set.n), newBitset(set.n)
	for i, w := range sp.what {
		if w.url {
			urls.set(i)
		} else {
			res.set(i)
		}
	}
	var out []string
	switch {
	case set.contains(res):
		out = append(out, "any resource")
	case set.contains(res.complement()):
		// Every URL and most resources: name the resources left out.
		if ex := sp.resourcePhrases(res.andNot(set)); !slices.ContainsFunc(ex, isAnyPhrase) && len(ex) < 6 {
			out = append(out, "any resource except ["+strings.Join(ex, ", ")+"]")
			break
		}
		fallthrough
	default:
		in := sp.resourcePhrases(set.and(res))
		ex := sp.resourcePhrases(res.andNot(set))
		if len(ex) < len(in) && len(ex) > 0 && !slices.ContainsFunc(ex, isAnyPhrase) {
			out = append(out, "any resource except ["+strings.Join(ex, ", ")+"]")
		} else {
			out = append(out, in...)
		}
	}
	switch {
	case set.contains(urls):
		out = append(out, "any non-resource URL")
	default:
		var in, ex []string
		for i, w := range sp.what {
			if !w.url {
				continue
			}
			if set.has(i) {
				in = append(in, urlPhrase(w.path))
			} else {
				ex = append(ex, urlPhrase(w.path))
			}
		}
		if len(ex) < len(in) && !slices.ContainsFunc(ex, isOtherPhrase) {
			out = append(out, "any non-resource URL except ["+strings.Join(ex, ", ")+"]")
		} else {
			out = append(out, in...)
		}
	}
	return Words{Only: slices.DeleteFunc(out, func(s string) bool { return s == "" })}
}

func isOtherPhrase(s string) bool { return strings.Contains(s, "any other") }

// isAnyPhrase tells whether a phrase says a set of values (any other
// resource, any resource in G), which an "except" list must not hold.
func isAnyPhrase(s string) bool { return strings.Contains(s, "any ") }

// resourcePhrases says resource probes: "any resource in G" for a group
// whose every probe is in the set; "any other resource in G" for the
// resources of G that no policy names, with their subresources; "any
// other resource, in any group" when that holds for every group; else
// each probe.
func (sp *probeSpace) resourcePhrases(set bitset) []string {
	groups := sp.groupOrder()
	probes := map[string][]int{}
	otherEverywhere := true
	for _, g := range groups {
		for _, i := range sp.byGroup[g] {
			probes[g] = append(probes[g], i)
			if (sp.what[i].res.resource == other || g == other) && !set.has(i) {
				otherEverywhere = false
			}
		}
		slices.Sort(probes[g])
	}
	var out []string
	// A resource that every group has (a rule for group "*" names it) and
	// that is in the set in every group is said once.
	type key struct{ resource, sub string }
	everywhere := map[key][]int{}
	var keys []key
	for _, g := range groups {
		for _, i := range probes[g] {
			k := key{sp.what[i].res.resource, sp.what[i].res.sub}
			if k.resource == other && (k.sub == "" || k.sub == other) {
				continue // any other resource: below
			}
			if _, ok := everywhere[k]; !ok {
				keys = append(keys, k)
			}
			everywhere[k] = append(everywhere[k], i)
		}
	}
	said := newBitset(set.n)
	for _, k := range keys {
		idx := everywhere[k]
		if len(idx) < len(groups) || !slices.ContainsFunc(idx, set.has) || slices.ContainsFunc(idx, func(i int) bool { return !set.has(i) }) {
			continue
		}
		out = append(out, resourcePhrase(resProbe{"*", k.resource, k.sub}))
		for _, i := range idx {
			said.set(i)
		}
	}
	for _, g := range groups {
		all, some := true, false
		for _, i := range probes[g] {
			all = all && set.has(i)
			some = some || set.has(i) && !said.has(i)
		}
		switch {
		case !some || otherEverywhere && g == other:
		case all && !otherEverywhere:
			out = append(out, "any resource in "+groupPhrase(g))
		default:
			out = append(out, sp.groupPhrases(g, probes[g], set.andNot(said), otherEverywhere)...)
		}
	}
	if otherEverywhere {
		out = append(out, "any other resource in any group")
	}
	return out
}

// groupPhrases says the probes of group g that are in set, the named ones
// first; those of resources no policy names are left to the caller when
// skipOther.
func (sp *probeSpace) groupPhrases(g string, probes []int, set bitset, skipOther bool) []string {
	var named, others []string
	var plain, subs bool
	for _, i := range probes {
		p := sp.what[i].res
		switch {
		case !set.has(i):
		case p.resource != other:
			named = append(named, resourcePhrase(p))
		case skipOther:
		case p.sub == "":
			plain = true
		case p.sub == other:
			subs = true
		default:
			others = append(others, resourcePhrase(p))
		}
	}
	switch {
	case plain && subs:
		named = append(named, "any other resource in "+groupPhrase(g))
	case plain:
		named = append(named, "any other resource in "+groupPhrase(g)+" (not its subresources)")
	case subs:
		named = append(named, "subresources of any other resource in "+groupPhrase(g))
	}
	return append(named, others...)
}

// groupOrder lists the probed API groups: the core group, the others by
// name, then any other group.
func (sp *probeSpace) groupOrder() []string {
	gs := make([]string, 0, len(sp.byGroup))
	for g := range sp.byGroup {
		if g != other {
			gs = append(gs, g)
		}
	}
	slices.Sort(gs)
	return append(gs, other)
}

func groupPhrase(g string) string {
	switch g {
	case "":
		return "the core group"
	case other:
		return "any other group"
	}
	return g
}

// resourcePhrase names a resource probe as kubectl does (RES.GROUP/SUB),
// with "(core)" for the core group.
func resourcePhrase(p resProbe) string {
	switch {
	case p.resource == other && p.sub == "":
		return "any other resource in " + groupPhrase(p.group) + " (not its subresources)"
	case p.resource == other && p.sub == other:
		return "subresources of any other resource in " + groupPhrase(p.group)
	case p.resource == other && p.group == "*":
		return p.sub + " of any other resource in any group"
	case p.resource == other:
		return p.sub + " of any other resource in " + groupPhrase(p.group)
	}
	s := p.resource
	if p.group != "" && p.group != other && p.group != "*" {
		s += "." + p.group
	}
	switch p.sub {
	case "":
	case other:
		s += "/<any other subresource>"
	default:
		s += "/" + p.sub
	}
	switch p.group {
	case "":
		return s + " (core)"
	case other:
		return s + " in any other group"
	case "*":
		return s + " in any group"
	}
	return s
}

func urlPhrase(path string) string {
	if path == other {
		return "any other non-resource URL"
	}
	if prefix, ok := strings.CutSuffix(path, other); ok {
		return "any other path starting with " + prefix
	}
	return path
}

// bitset is a set of small integers below n.
type bitset struct {
	words []uint64
	n     int
}

func newBitset(n int) bitset { return bitset{words: make([]uint64, (n+63)/64), n: n} }

func (b bitset) set(i int)      { b.words[i/64] |= 1 << (i % 64) }
func (b bitset) has(i int) bool { return b.words[i/64]&(1<<(i%64)) != 0 }

func (b bitset) fill() {
	for i := 0; i < b.n; i++ {
		b.set(i)
	}
}

func (b bitset) full() bool {
	for i := 0; i < b.n; i++ {
		if !b.has(i) {
			return false
		}
	}
	return true
}

// contains tells whether every member of c is in b.
func (b bitset) contains(c bitset) bool {
	for i, w := range c.words {
		if w&^b.words[i] != 0 {
			return false
		}
	}
	return true
}

func (b bitset) or(c bitset) {
	for i, w := range c.words {
		b.words[i] |= w
	}
}

func (b bitset) and(c bitset) bitset {
	out := newBitset(b.n)
	for i := range out.words {
		out.words[i] = b.words[i] & c.words[i]
	}
	return out
}

func (b bitset) andNot(c bitset) bitset {
	out := newBitset(b.n)
	for i := range out.words {
		out.words[i] = b.words[i] &^ c.words[i]
	}
	return out
}

func (b bitset) complement() bitset {
	out := newBitset(b.n)
	for i := 0; i < b.n; i++ {
		if !b.has(i) {
			out.set(i)
		}
	}
	return out
}

func (b bitset) members() iter.Seq[int] {
	return func(yield func(int) bool) {
		for wi, w := range b.words {
			for w != 0 {
				bit := bits.TrailingZeros64(w)
				if !yield(wi*64 + bit) {
					return
				}
				w &^= 1 << bit
			}
		}
	}
}

// key is the set as a string, for map keys.
func (b bitset) key() string {
	var sb strings.Builder
	sb.WriteString(strconv.Itoa(b.n))
	sb.WriteByte(':')
	for _, w := range b.words {
		for i := 0; i < 8; i++ {
			sb.WriteByte(byte(w >> (8 * i)))
		}
	}
	return sb.String()
}
