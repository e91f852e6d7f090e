package clickhouse

import (
	"encoding/hex"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/kubetrail/kubetrail/internal/query"
)

// quote returns s as a ClickHouse string literal. It is the only way a
// value reaches the text of a statement: backslash and quote are escaped
// with a backslash, and every byte outside printable ASCII is written as
// \xHH, so no byte of s can end the literal or change how it is read.
func quote(s string) string {
	const digits = "0123456789abcdef"
	b := make([]byte, 0, len(s)+2)
	b = append(b, '\'')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' || c == '\'':
			b = append(b, '\\', c)
		case c < 0x20 || c >= 0x7f:
			b = append(b, '\\', 'x', digits[c>>4], digits[c&15])
		default:
			b = append(b, c)
		}
	}
	return string(append(b, '\''))
}

// where is a filter compiled to a SQL condition. When exact is false the
// condition selects a superset of the events (the free text and body
// fields, which no column holds): the caller must test each row with the
// filter itself.
type where struct {
	sql   string
	exact bool
}

// compileFilter turns a filter into a condition on the events table.
func compileFilter(f *query.Filter) (where, error) {
	if f == nil || f.Expr() == nil {
		return where{"1", true}, nil
	}
	return compileExpr(f.Expr(), f.Now())
}

func compileExpr(e query.Expr, now time.Time) (where, error) {
	switch e := e.(type) {
	case *query.And:
		return compileTerms(e.Terms, " AND ", now)
	case *query.Or:
		return compileTerms(e.Terms, " OR ", now)
	case *query.Not:
		w, err := compileExpr(e.X, now)
		if err != nil {
			return where{}, err
		}
		if !w.exact {
			// The negation of a superset is not a superset: select all
			// and let the filter decide.
			return where{"1", false}, nil
		}
		return where{"NOT (" + w.sql + ")", true}, nil
	case *query.Text:
		return compileText(e.Text), nil
	case *query.Cmp:
		return compileCmp(e, now)
	}
	return where{}, fmt.Errorf("BUG: filter node %T", e)
}

func compileTerms(terms []query.Expr, sep string, now time.Time) (where, error) {
	parts := make([]string, len(terms))
	exact := true
	for i, t := range terms {
		w, err := compileExpr(t, now)
		if err != nil {
			return where{}, err
		}
		parts[i] = "(" + w.sql + ")"
		exact = exact && w.exact
	}
	return where{strings.Join(parts, sep), exact}, nil
}

// compileText is free text: a substring of any of query.FreeTextFields.
// The bodies are only in raw, where their JSON text appears as it is, so
// a match in raw is a candidate the filter confirms.
func compileText(s string) where {
	q := quote(s)
	var parts []string
	for _, col := range []string{"uri", "ua", "user", "as_user", "namespace", "name", "message"} {
		parts = append(parts, "position("+col+", "+q+") > 0")
	}
	parts = append(parts, "arrayExists(v_ -> position(v_, "+q+") > 0, ann_vals)", "position(raw, "+q+") > 0")
	return where{strings.Join(parts, " OR "), false}
}

// stringCols maps the single-valued string fields to their SQL.
var stringCols = map[string]string{
	"user": "user", "user.uid": "user_uid", "as": "as_user", "as.uid": "as_uid",
	"verb": "verb", "resource": "resource", "subresource": "subresource", "ns": "namespace",
	"name": "name", "apigroup": "api_group", "apiversion": "api_version",
	"objectRef.uid": "object_uid", "objectRef.resourceVersion": "object_rv",
	"status": "status", "reason": "reason", "message": "message", "ua": "ua",
	"level": "level", "stage": "stage", "uri": "uri", "auditid": "audit_id",
	"cluster": "cluster", "impersonationConstraint": "imp_constraint",
	"decision": annotation("authorization.k8s.io/decision"),
}

// listCols maps the multi-valued fields without a key to their arrays.
var listCols = map[string]string{"group": "groups", "as.group": "as_groups"}

func annotation(key string) string {
	return "ann_vals[indexOf(ann_keys, " + quote(key) + ")]"
}

var levelRanks = "['None', 'Metadata', 'Request', 'RequestResponse']"

func compileCmp(c *query.Cmp, now time.Time) (where, error) {
	op, neg := c.Op, false
	switch c.Op {
	case query.OpNe:
		op, neg = query.OpEq, true
	case query.OpNotMatch:
		op, neg = query.OpMatch, true
	case query.OpNotIn:
		op, neg = query.OpIn, true
	}
	w, err := positive(c, op, now)
	if err != nil || !neg {
		return w, err
	}
	if !w.exact {
		return where{"1", false}, nil
	}
	return where{"NOT (" + w.sql + ")", true}, nil
}

// positive compiles c with its operator replaced by the positive op, as
// the query package's matcher does.
func positive(c *query.Cmp, op query.Op, now time.Time) (where, error) {
	name, v0 := c.Field.Name, c.Values[0]
	exact := func(sql string) (where, error) { return where{sql, true}, nil }
	switch name {
	case "code":
		return exact(codeSQL(op, c.Values))
	case "time":
		return timeSQL("time_us", "has_time", op, v0, now)
	case "received":
		return timeSQL("req_us", "has_req", op, v0, now)
	case "level":
		if op >= query.OpLt && op <= query.OpGe {
			rank := -1
			for i, l := range []string{"None", "Metadata", "Request", "RequestResponse"} {
				if l == v0.Text {
					rank = i
				}
			}
			if rank < 0 {
				return where{}, fmt.Errorf("invalid level %q", v0.Text)
			}
			r := "(indexOf(" + levelRanks + ", level) - 1)"
			return exact(r + " >= 0 AND " + r + " " + op.String() + " " + strconv.Itoa(rank))
		}
	case "ip":
		test, err := ipTest(op, c.Values, "s_", "k_")
		if err != nil {
			return where{}, err
		}
		return exact("arrayExists((s_, k_) -> " + test + ", source_ips, source_ip_keys)")
	case "peer":
		test, err := ipTest(op, c.Values, "source_ips[-1]", "source_ip_keys[-1]")
		return where{test, true}, err
	case "requestObject", "responseObject":
		// The body's JSON text is in raw as it is: a literal it equals
		// is in raw. Anything else is decided by the filter.
		if op == query.OpEq && !v0.Glob && v0.Text != "" {
			return where{"position(raw, " + quote(v0.Text) + ") > 0", false}, nil
		}
		return where{"1", false}, nil
	case "user.extra", "as.extra":
		prefix := ""
		if name == "as.extra" {
			prefix = "as_"
		}
		test, err := strTest(op, c.Values, "v_")
		if err != nil {
			return where{}, err
		}
		return exact("arrayExists((k_, v_) -> k_ = " + quote(c.Field.Key) + " AND " + test + ", " + prefix + "extra_keys, " + prefix + "extra_vals)")
	case "annotation":
		test, err := strTest(op, c.Values, annotation(c.Field.Key))
		return where{test, true}, err
	}
	if col, ok := listCols[name]; ok {
		test, err := strTest(op, c.Values, "v_")
		if err != nil {
			return where{}, err
		}
		return exact("arrayExists(v_ -> " + test + ", " + col + ")")
	}
	if col, ok := stringCols[name]; ok {
		test, err := strTest(op, c.Values, col)
		return where{test, true}, err
	}
	return where{}, fmt.Errorf("field %s has no ClickHouse column", name)
}

// strTest is the SQL of one string test (=, ~ or in) on the value x.
func strTest(op query.Op, vals []query.Value, x string) (string, error) {
	switch op {
	case query.OpMatch:
		if _, err := regexp.Compile(vals[0].Text); err != nil {
			return "", err
		}
		return "match(" + x + ", " + quote(re2Pattern(vals[0].Text)) + ")", nil
	case query.OpEq, query.OpIn:
		var lits, parts []string
		for _, v := range vals {
			if v.Glob {
				parts = append(parts, globSQL(v.Text, x))
			} else {
				lits = append(lits, quote(v.Text))
			}
		}
		switch len(lits) {
		case 0:
		case 1:
			parts = append(parts, x+" = "+lits[0])
		default:
			parts = append(parts, x+" IN ("+strings.Join(lits, ", ")+")")
		}
		return orOf(parts), nil
	}
	return "", fmt.Errorf("operator %s does not apply to strings", op)
}

// re2Pattern is a pattern of Go's regexp (the query package's, already
// compiled there) as match() must be given it to select the same strings.
// ClickHouse compiles it with RE2's dot_nl ('.' matches a newline, as Go's
// does only after (?s)), and 18.16 first looks for the pattern's literal
// text outside groups as a plain substring, case-sensitively and up to a
// NUL byte: (?i)admin missed Admin, a\x00zzz matched every a, and an
// escape such as \x00 after a flag group missed its string. Inside one
// group that clears s, the pattern is RE2's alone to match, and a (?s) or
// (?i) of its own applies to the end of it as before. A \Q left open
// (Go's quotes to the pattern's end) is closed, so that it does not quote
// the group's end.
func re2Pattern(p string) string {
	quoted := false
	for i := 0; i < len(p); i++ {
		switch {
		case quoted:
			if strings.HasPrefix(p[i:], `\E`) {
				quoted = false
				i++
			}
		case p[i] == '\\' && i+1 < len(p):
			quoted = p[i+1] == 'Q'
			i++
		}
	}
	if quoted {
		p += `\E`
	}
	return "(?-s:" + p + ")"
}

func orOf(parts []string) string {
	if len(parts) == 1 {
		return parts[0]
	}
	return "(" + strings.Join(parts, " OR ") + ")"
}

// globSQL is a glob (a '*' matches any run of bytes) as plain string
// functions where it has one of the common shapes, and otherwise as an
// anchored regular expression that matches newlines too.
func globSQL(p, x string) string {
	parts := strings.Split(p, "*")
	n := len(parts)
	switch {
	case strings.Trim(p, "*") == "":
		return "1"
	case n == 2 && parts[1] == "":
		return "startsWith(" + x + ", " + quote(parts[0]) + ")"
	case n == 2 && parts[0] == "":
		return "endsWith(" + x + ", " + quote(parts[1]) + ")"
	case n == 3 && parts[0] == "" && parts[2] == "":
		return "position(" + x + ", " + quote(parts[1]) + ") > 0"
	}
	re := make([]string, n)
	for i, s := range parts {
		re[i] = regexp.QuoteMeta(s)
	}
	return "match(" + x + ", " + quote("(?s)^"+strings.Join(re, ".*")+"$") + ")"
}

func codeSQL(op query.Op, vals []query.Value) string {
	// An event without a code never satisfies a comparison (code=0
	// included), as in the query package.
	if op == query.OpIn {
		ns := make([]string, len(vals))
		for i, v := range vals {
			n, _ := strconv.Atoi(v.Text)
			ns[i] = strconv.Itoa(n)
		}
		return "code != 0 AND code IN (" + strings.Join(ns, ", ") + ")"
	}
	n, _ := strconv.Atoi(vals[0].Text)
	sqlOp := op.String()
	if op == query.OpEq {
		sqlOp = "="
	}
	return "code != 0 AND code " + sqlOp + " " + strconv.Itoa(n)
}

// timeSQL compares a µs column with a time that may have finer precision:
// t lies between the whole microseconds us and us+1 when it has a rest.
func timeSQL(col, has string, op query.Op, v query.Value, now time.Time) (where, error) {
	t, err := query.ParseTime(v.Text, now)
	if err != nil {
		return where{}, fmt.Errorf("invalid time %q: %w", v.Text, err)
	}
	us, rest := t.UnixMicro(), t.Nanosecond()%1000 != 0
	var cond string
	switch op {
	case query.OpEq:
		if rest {
			return where{"0", true}, nil
		}
		cond = col + " = " + strconv.FormatInt(us, 10)
	case query.OpLt:
		if rest {
			cond = col + " <= " + strconv.FormatInt(us, 10)
		} else {
			cond = col + " < " + strconv.FormatInt(us, 10)
		}
	case query.OpLe:
		cond = col + " <= " + strconv.FormatInt(us, 10)
	case query.OpGt:
		cond = col + " > " + strconv.FormatInt(us, 10)
	case query.OpGe:
		if rest {
			cond = col + " > " + strconv.FormatInt(us, 10)
		} else {
			cond = col + " >= " + strconv.FormatInt(us, 10)
		}
	default:
		return where{}, fmt.Errorf("operator %s does not apply to times", op)
	}
	return where{has + " = 1 AND " + cond, true}, nil
}

// ipTest is the SQL of an ip or peer test on one address: s is its text,
// k its ipKey.
func ipTest(op query.Op, vals []query.Value, s, k string) (string, error) {
	if op == query.OpMatch {
		return strTest(op, vals, s)
	}
	var parts []string
	for _, v := range vals {
		switch {
		case v.Glob:
			parts = append(parts, globSQL(v.Text, s))
		case v.Text == "":
			parts = append(parts, s+" = ''")
		case strings.Contains(v.Text, "/"):
			p, err := parsePrefix(v.Text)
			if err != nil {
				return "", err
			}
			lo, hi := prefixRange(p)
			parts = append(parts, "("+k+" >= "+quote(lo)+" AND "+k+" <= "+quote(hi)+")")
		default:
			a, err := netip.ParseAddr(v.Text)
			if err != nil {
				return "", fmt.Errorf("invalid IP %q: %w", v.Text, err)
			}
			parts = append(parts, k+" = "+quote(addrKey(a.Unmap().WithZone(""))))
		}
	}
	return orOf(parts), nil
}

// parsePrefix reads a CIDR prefix as the query package does: masked, and
// an IPv4-mapped prefix as the IPv4 one.
func parsePrefix(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return p, fmt.Errorf("invalid CIDR %q: %w", s, err)
	}
	p = p.Masked()
	if a := p.Addr(); a.Is4In6() {
		if p.Bits() < 96 {
			return p, fmt.Errorf("invalid CIDR %q: an IPv4-mapped prefix needs at least 96 bits", s)
		}
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p, nil
}

// ipKey is the key of an event's source IP: "4" or "6" and the address in
// hex, so that the addresses of a prefix are a range of equal-length
// strings, and the two families never mix (as netip.Prefix.Contains
// keeps them apart). It is "" for what is not an address; the rules are
// the query package's: IPv4-mapped addresses unmapped, zones dropped,
// nothing longer than 64 bytes.
func ipKey(s string) string {
	if s == "" || len(s) > 64 {
		return ""
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return ""
	}
	return addrKey(a.Unmap().WithZone(""))
}

// putIPKey writes ipKey(s) as a RowBinary string, without building the
// string: a row's encoding allocates nothing per source IP.
func putIPKey(b []byte, s string) []byte {
	if s == "" || len(s) > 64 {
		return putString(b, "")
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return putString(b, "")
	}
	if a = a.Unmap(); a.Is4() {
		v := a.As4()
		return hex.AppendEncode(append(b, byte(1+2*len(v)), '4'), v[:])
	}
	v := a.As16()
	return hex.AppendEncode(append(b, byte(1+2*len(v)), '6'), v[:])
}

func addrKey(a netip.Addr) string {
	if a.Is4() {
		b := a.As4()
		return "4" + hex.EncodeToString(b[:])
	}
	b := a.As16()
	return "6" + hex.EncodeToString(b[:])
}

// prefixRange returns the first and last keys of a prefix's addresses.
func prefixRange(p netip.Prefix) (lo, hi string) {
	lo = addrKey(p.Addr())
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	last, _ := netip.AddrFromSlice(b)
	return lo, addrKey(last)
}
