package server

import (
	"bufio"
	"context"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/kubetrail/kubetrail/internal/ingest"
	"github.com/kubetrail/kubetrail/internal/query"
	"github.com/kubetrail/kubetrail/internal/store/local"
)

// Who may do what (docs/security.md, docs/adr/0013). A request is
// authenticated by a client certificate signed by --client-ca or a bearer
// token of --token-file; the credential's grant (a role and a scope) then
// decides each route, and a viewer's scope is joined to every selection
// the read API makes.

// Role is what a credential may do.
type Role string

// The roles. A credential given none (a token-file line without role=, a
// certificate with no --client-role and no O=kubetrail:ROLE) keeps what
// every credential could do before roles existed, ingest and read, unless
// Access.RequireRoles; it never gets admin.
const (
	// RoleIngest may write events: the webhook and syslog.
	RoleIngest Role = "ingest"
	// RoleViewer may read: events, stats, investigations and alerts.
	RoleViewer Role = "viewer"
	// RoleAdmin may do everything, including the routes that change the
	// server (alert configuration, retention) once there are any.
	RoleAdmin Role = "admin"
)

func parseRole(s string) (Role, error) {
	switch r := Role(s); r {
	case RoleIngest, RoleViewer, RoleAdmin:
		return r, nil
	}
	return "", fmt.Errorf("role %q: want ingest, viewer or admin", s)
}

// Scope limits a grant to some clusters and namespaces; an empty list
// allows all. A namespace scope leaves out cluster-scoped events (they
// have no namespace), as a Kubernetes Role does.
type Scope struct {
	Clusters   []string `json:"clusters,omitempty"`
	Namespaces []string `json:"namespaces,omitempty"`
}

// empty reports whether the scope allows everything.
func (sc Scope) empty() bool { return len(sc.Clusters) == 0 && len(sc.Namespaces) == 0 }

// expr is the scope as a filter: cluster in (...) and ns in (...); nil
// for the empty scope.
func (sc Scope) expr() query.Expr {
	in := func(field string, vals []string) query.Expr {
		op := query.OpIn
		if len(vals) == 1 {
			op = query.OpEq
		}
		c := &query.Cmp{Field: query.Field{Name: field}, Op: op}
		for _, v := range vals {
			c.Values = append(c.Values, query.Value{Text: v}) // literal: never a glob
		}
		return c
	}
	var terms []query.Expr
	if len(sc.Clusters) > 0 {
		terms = append(terms, in("cluster", sc.Clusters))
	}
	if len(sc.Namespaces) > 0 {
		terms = append(terms, in("ns", sc.Namespaces))
	}
	switch len(terms) {
	case 0:
		return nil
	case 1:
		return terms[0]
	}
	return &query.And{Terms: terms}
}

// restrict joins the scope to a selection's filter, so that the store
// selects, counts and groups only what the scope allows; now must be the
// time the filter was compiled at.
func (sc Scope) restrict(sel *local.Selection, now time.Time) error {
	e := sc.expr()
	if e == nil {
		return nil
	}
	if sel.Filter != nil && sel.Filter.Expr() != nil {
		e = &query.And{Terms: []query.Expr{sel.Filter.Expr(), e}}
	}
	f, err := query.CompileExpr(e, now)
	if err != nil {
		return fmt.Errorf("BUG: scoped filter %q: %w", query.Canonical(e), err)
	}
	sel.Filter = f
	return nil
}

// Grant is a role with its scope. The zero Grant is no role.
type Grant struct {
	Role  Role
	Scope Scope
}

// Token is one bearer token of --token-file.
type Token struct {
	// Value is the secret the client sends; it must never be logged.
	Value string
	// Name identifies the token in the access log and in messages.
	Name string
	Grant
}

// CertRole gives client certificates whose subject CN is CN a grant
// (serve --client-role CN=ROLE[,clusters=...][,namespaces=...]).
type CertRole struct {
	CN string
	Grant
}

// Access says which role each credential has.
type Access struct {
	// Tokens are the bearer tokens with their names and grants (a token
	// of Config.Tokens is one more, with no name and no role).
	Tokens []Token
	// ClientRoles grant certificates by subject CN; a certificate they do
	// not name takes its role from its Organization, O=kubetrail:ROLE
	// (one such O at most).
	ClientRoles []CertRole
	// RequireRoles refuses everything to a credential given no role;
	// without it such a credential may ingest and read everything, as
	// before roles existed (docs/adr/0013).
	RequireRoles bool
}

// CertOrgPrefix starts the Organization of a client certificate that
// names its role: O=kubetrail:viewer.
const CertOrgPrefix = "kubetrail:"

// perm is what a route needs.
type perm uint8

const (
	permIngest perm = iota + 1 // write events (ingest, admin)
	permRead                   // read events and alerts (viewer, admin)
	permAdmin                  // change the server (admin); no route needs it yet
	permHealth                 // probes and metrics: open unless --auth-health, then any role
	permPublic                 // the web UI's pages and assets: they hold no data (it comes from the API), open to anyone
)

func (p perm) String() string {
	return [...]string{permIngest: "ingest", permRead: "read", permAdmin: "admin", permHealth: "health", permPublic: "public"}[p]
}

// route is one registered pattern and what it needs.
type route struct {
	pattern string
	perm    perm
}

// handle registers a route behind authentication and its permission.
// Every route must be registered through it (TestEveryRouteIsGuarded), so
// that none can skip the role check or the access log.
func (s *Server) handle(mux *http.ServeMux, pattern string, p perm, h http.Handler) {
	s.routes = append(s.routes, route{pattern, p})
	mux.Handle(pattern, s.guard(p, h))
}

// principal is who sent a request, as its credential says.
type principal struct {
	// name is the token's name or the certificate's CN.
	name string
	// cred is how it was identified: token, certificate, none (no
	// credential, or an unknown token), or open (the server asks for no
	// authentication).
	cred  string
	grant Grant
	// refusal, when set, says why an identified credential may do
	// nothing (a certificate naming no or several valid roles).
	refusal string
}

// roleName is the role as the access log records it.
func (p *principal) roleName() string {
	if p.refusal != "" || p.grant.Role == "" {
		return "unassigned"
	}
	return string(p.grant.Role)
}

// may reports whether p's role allows a route needing pm.
func (p *principal) may(pm perm, requireRoles bool) bool {
	if p.refusal != "" {
		return false
	}
	switch p.grant.Role {
	case RoleAdmin:
		return true
	case RoleViewer:
		return pm == permRead || pm == permHealth
	case RoleIngest:
		return pm == permIngest || pm == permHealth
	case "":
		return !requireRoles && pm != permAdmin
	}
	return false
}

// authOn reports whether the server asks for credentials at all.
func (s *Server) authOn() bool {
	return len(s.tokens) > 0 || s.cfg.ClientCA != ""
}

// identify finds the request's principal; false when authentication is on
// and the request carries no valid credential. A verified client
// certificate comes before a bearer token.
func (s *Server) identify(r *http.Request) (principal, bool) {
	if !s.authOn() {
		return principal{cred: "open", grant: Grant{Role: RoleAdmin}}, true
	}
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.VerifiedChains[0]) > 0 {
		return s.certPrincipal(r.TLS.VerifiedChains[0][0]), true
	}
	if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		found := -1
		for i := range s.tokens { // every one, in constant time each
			if subtle.ConstantTimeCompare([]byte(tok), []byte(s.tokens[i].Value)) == 1 {
				found = i
			}
		}
		if found >= 0 {
			t := &s.tokens[found]
			return principal{name: t.Name, cred: "token", grant: t.Grant}, true
		}
	}
	return principal{cred: "none"}, false
}

// certPrincipal maps a verified client certificate to its grant:
// --client-role by CN first, else O=kubetrail:ROLE, else no role.
func (s *Server) certPrincipal(c *x509.Certificate) principal {
	p := principal{name: c.Subject.CommonName, cred: "certificate"}
	for _, cr := range s.cfg.Access.ClientRoles {
		if cr.CN == p.name {
			p.grant = cr.Grant
			return p
		}
	}
	var roles []string
	for _, o := range c.Subject.Organization {
		if r, ok := strings.CutPrefix(o, CertOrgPrefix); ok {
			roles = append(roles, r)
		}
	}
	switch len(roles) {
	case 0:
	case 1:
		r, err := parseRole(roles[0])
		if err != nil {
			p.refusal = "certificate O=" + CertOrgPrefix + roles[0] + ": " + err.Error()
		}
		p.grant.Role = r
	default:
		p.refusal = fmt.Sprintf("certificate names %d roles (O=%s...): want one", len(roles), CertOrgPrefix)
	}
	return p
}

// denial explains a 403.
func (p *principal) denial(pm perm) string {
	who := p.cred
	if p.name != "" {
		who += " " + p.name
	}
	switch {
	case p.refusal != "":
		return p.refusal
	case p.grant.Role == "":
		return who + " has no role (serve --require-roles): give it role=ingest, viewer or admin"
	}
	return fmt.Sprintf("%s has role %s, which may not %s here", who, p.grant.Role, pm)
}

// clusterAllowed reports whether the grant's scope lets it touch cluster.
func (g Grant) clusterAllowed(cluster string) bool {
	return len(g.Scope.Clusters) == 0 || slices.Contains(g.Scope.Clusters, cluster)
}

// webhookCluster is the cluster a webhook request writes, as the
// receiver reads it.
func (s *Server) webhookCluster(r *http.Request) string {
	if c := r.URL.Query().Get("cluster"); c != "" {
		return c
	}
	if s.cfg.Webhook.DefaultCluster != "" {
		return s.cfg.Webhook.DefaultCluster
	}
	return "default"
}

type accessKey struct{}

// requestAccess is what guard knows of a request, for its handler
// (the scope) and the access log (the number of results).
type requestAccess struct {
	p       principal
	results int64
}

// scopeOf returns the scope of the request's principal; handlers must
// join it to every selection they make.
func scopeOf(r *http.Request) Scope {
	if ra, ok := r.Context().Value(accessKey{}).(*requestAccess); ok {
		return ra.p.grant.Scope
	}
	return Scope{}
}

// addResults counts n more results of the request, for the access log:
// events or alerts sent, events counted by stats, records of an
// investigation.
func addResults(r *http.Request, n int64) {
	if ra, ok := r.Context().Value(accessKey{}).(*requestAccess); ok {
		ra.results += n
	}
}

// guard authenticates a request, checks its role against pm (and an
// ingest scope against the cluster written), hands the scope on to the
// handler, and writes the access log line.
func (s *Server) guard(pm perm, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if pm == permPublic || (pm == permHealth && !s.cfg.AuthHealth) {
			next.ServeHTTP(w, r)
			return
		}
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		ra := &requestAccess{}
		var ok bool
		ra.p, ok = s.identify(r)
		reason := ""
		switch {
		case !ok:
			reason = "no valid bearer token or client certificate"
			rec.Header().Set("WWW-Authenticate", `Bearer realm="kubetrail"`)
			writeError(rec, http.StatusUnauthorized, errors.New("unauthorized: send a valid bearer token or client certificate"))
		case !ra.p.may(pm, s.cfg.Access.RequireRoles):
			reason = ra.p.denial(pm)
			writeError(rec, http.StatusForbidden, errors.New("forbidden: "+reason))
		case pm == permIngest && !ra.p.grant.clusterAllowed(s.webhookCluster(r)):
			reason = fmt.Sprintf("%s %s may write clusters %s only, not %q", ra.p.cred, ra.p.name, strings.Join(ra.p.grant.Scope.Clusters, ", "), s.webhookCluster(r))
			writeError(rec, http.StatusForbidden, errors.New("forbidden: "+reason+" (the webhook URL's ?cluster=)"))
		case (pm == permRead || pm == permAdmin) && s.cfg.AccessLog.Err() != nil:
			// A read that cannot be recorded is not answered; the line
			// written below for this refusal clears the error once the
			// log can be written again.
			reason = "the access log cannot be written: " + s.cfg.AccessLog.Err().Error()
			writeError(rec, http.StatusServiceUnavailable, errors.New(reason+"; reads are refused until it can"))
		default:
			next.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), accessKey{}, ra)))
		}
		code := rec.code()
		if pm == permRead || pm == permAdmin || code == http.StatusUnauthorized || code == http.StatusForbidden {
			s.logAccess(r, ra, code, reason, start)
		}
	})
}

// statusRecorder remembers the status a handler answered with; it passes
// Flush on, which the follow streams need.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (w *statusRecorder) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusRecorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusRecorder) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusRecorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusRecorder) code() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}

// syslogAuthorizer checks tls:// syslog senders by their certificate:
// only ingest and admin (and, without --require-roles, a certificate with
// no role) may send, and an ingest scope bounds the clusters written.
// Nil without --client-ca: then no sender has a certificate to check.
func (s *Server) syslogAuthorizer() func(tls.ConnectionState) (func(string) bool, error) {
	if s.cfg.ClientCA == "" {
		return nil
	}
	return func(cs tls.ConnectionState) (func(string) bool, error) {
		if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
			return nil, errors.New("no verified client certificate")
		}
		p := s.certPrincipal(cs.VerifiedChains[0][0])
		if !p.may(permIngest, s.cfg.Access.RequireRoles) {
			reason := p.denial(permIngest)
			s.cfg.AccessLog.write(accessEntry{Time: time.Now().UTC().Format(time.RFC3339Nano), Who: p.name, Credential: p.cred, Role: p.roleName(),
				Endpoint: "syslog", Status: http.StatusForbidden, Error: reason})
			return nil, errors.New(reason)
		}
		if len(p.grant.Scope.Clusters) == 0 {
			return nil, nil
		}
		return p.grant.clusterAllowed, nil
	}
}

// checkAccess refuses an Access that cannot be meant: a token or a CN
// given twice, a scope on a role it cannot bound.
func checkAccess(cfg Config) error {
	seen := map[string]bool{}
	for _, t := range cfg.Tokens {
		seen[t] = true
	}
	for _, t := range cfg.Access.Tokens {
		if t.Value == "" {
			return fmt.Errorf("token %s: empty", t.Name)
		}
		if seen[t.Value] {
			return fmt.Errorf("token %s: the same token is given twice", t.Name)
		}
		seen[t.Value] = true
		if err := t.Grant.check(); err != nil {
			return fmt.Errorf("token %s: %w", t.Name, err)
		}
	}
	cns := map[string]bool{}
	for _, cr := range cfg.Access.ClientRoles {
		if cns[cr.CN] {
			return fmt.Errorf("--client-role %s: CN given twice", cr.CN)
		}
		cns[cr.CN] = true
		if cr.Role == "" {
			return fmt.Errorf("--client-role %s: no role", cr.CN)
		}
		if err := cr.Grant.check(); err != nil {
			return fmt.Errorf("--client-role %s: %w", cr.CN, err)
		}
	}
	return nil
}

// check refuses scopes a role cannot have: admin is never scoped (it may
// change the server itself), ingest is scoped by cluster only (a batch
// holds every namespace), and no role means no scope.
func (g Grant) check() error {
	switch {
	case g.Scope.empty():
		return nil
	case g.Role == "":
		return errors.New("clusters= and namespaces= need a role")
	case g.Role == RoleAdmin:
		return errors.New("admin cannot be scoped: give a scoped viewer or ingest role instead")
	case g.Role == RoleIngest && len(g.Scope.Namespaces) > 0:
		return errors.New("ingest can be scoped by clusters only: a batch holds events of every namespace")
	}
	return nil
}

// namespacePattern is a Kubernetes namespace name (a DNS-1123 label).
var namespacePattern = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`) })

// setAttr reads one key=value attribute of a token line or --client-role
// into g; false when the field is no attribute (no '=').
func setAttr(g *Grant, field string) (bool, error) {
	key, val, ok := strings.Cut(field, "=")
	if !ok {
		return false, nil
	}
	key, val = strings.TrimSpace(key), strings.TrimSpace(val)
	list := func() ([]string, error) {
		if val == "" {
			return nil, fmt.Errorf("%s=: empty; want names separated by |", key)
		}
		return strings.Split(val, "|"), nil
	}
	switch key {
	case "role":
		if g.Role != "" {
			return true, errors.New("role= given twice")
		}
		r, err := parseRole(val)
		g.Role = r
		return true, err
	case "clusters":
		if g.Scope.Clusters != nil {
			return true, errors.New("clusters= given twice")
		}
		vals, err := list()
		for _, v := range vals {
			if !ingest.ClusterNamePattern().MatchString(v) {
				return true, fmt.Errorf("clusters=: %q is not a cluster name (letters, digits, '.', '_', '-'; at most 63)", v)
			}
		}
		g.Scope.Clusters = vals
		return true, err
	case "namespaces":
		if g.Scope.Namespaces != nil {
			return true, errors.New("namespaces= given twice")
		}
		vals, err := list()
		for _, v := range vals {
			if !namespacePattern().MatchString(v) {
				return true, fmt.Errorf("namespaces=: %q is not a namespace name (lowercase letters, digits, '-'; at most 63)", v)
			}
		}
		g.Scope.Namespaces = vals
		return true, err
	}
	return true, fmt.Errorf("%q: unknown attribute %q: want role=, clusters= or namespaces=", field, key)
}

// ParseTokenFile reads a --token-file: one token a line, blank lines and
// '#' comments skipped, as comma-separated fields:
//
//	TOKEN
//	TOKEN,NAME[,ATTR...]
//	TOKEN,USER,UID[,"GROUP1,GROUP2"]     the API server's --token-auth-file
//
// where an ATTR is role=ingest|viewer|admin, clusters=A|B or
// namespaces=X|Y. NAME (the API server's user) names the token in the
// access log; without it the token is "line N". The API server's UID and
// groups are accepted and ignored. warn is told about each token without
// a role (with requireRoles, such a line is an error). Errors name the
// file (name) and line, never the token.
func ParseTokenFile(r io.Reader, name string, requireRoles bool, warn func(string)) ([]Token, error) {
	var toks []Token
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		t, err := parseTokenLine(text, line)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, line, err)
		}
		if t.Role == "" {
			if requireRoles {
				return nil, fmt.Errorf("%s:%d: token %s has no role: with --require-roles every token needs role=ingest, viewer or admin", name, line, t.Name)
			}
			warn(fmt.Sprintf("%s:%d: token %s has no role: it may ingest and read everything, as before roles; give it role=ingest, viewer or admin (docs/security.md)", name, line, t.Name))
		}
		toks = append(toks, t)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(toks) == 0 {
		return nil, fmt.Errorf("%s: no token in it", name)
	}
	if err := checkAccess(Config{Access: Access{Tokens: toks}}); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return toks, nil
}

func parseTokenLine(text string, line int) (Token, error) {
	cr := csv.NewReader(strings.NewReader(text))
	cr.FieldsPerRecord, cr.TrimLeadingSpace = -1, true
	fields, err := cr.Read()
	if err != nil {
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			err = pe.Err // its line and column are of this one line
		}
		return Token{}, fmt.Errorf("not TOKEN[,NAME[,role=...]]: %w", err)
	}
	t := Token{Value: strings.TrimSpace(fields[0]), Name: fmt.Sprintf("line %d", line)}
	if t.Value == "" {
		return t, errors.New("empty token")
	}
	for i, f := range fields[1:] {
		attr, err := setAttr(&t.Grant, f)
		if err != nil {
			return t, err
		}
		switch {
		case attr:
		case i == 0:
			if n := strings.TrimSpace(f); n != "" {
				t.Name = n
			}
		case i > 2:
			return t, fmt.Errorf("field %d %q: want role=, clusters= or namespaces=", i+2, f)
		} // fields 3 and 4 without '=' are the API server's uid and groups
	}
	return t, t.Grant.check()
}

// ParseClientRole reads a --client-role value, CN=ROLE[,clusters=A|B]
// [,namespaces=X|Y]: client certificates whose subject CN is CN get ROLE
// with that scope.
func ParseClientRole(v string) (CertRole, error) {
	cn, rest, ok := strings.Cut(v, "=")
	cn = strings.TrimSpace(cn)
	if !ok || cn == "" {
		return CertRole{}, fmt.Errorf("--client-role %q: want CN=ROLE[,clusters=A|B][,namespaces=X|Y]", v)
	}
	fields := strings.Split(rest, ",")
	cr := CertRole{CN: cn}
	r, err := parseRole(strings.TrimSpace(fields[0]))
	if err != nil {
		return cr, fmt.Errorf("--client-role %q: %w", v, err)
	}
	cr.Role = r
	for _, f := range fields[1:] {
		attr, err := setAttr(&cr.Grant, f)
		if err == nil && !attr {
			err = fmt.Errorf("%q: want clusters= or namespaces=", f)
		}
		if err != nil {
			return cr, fmt.Errorf("--client-role %q: %w", v, err)
		}
	}
	if err := cr.Grant.check(); err != nil {
		return cr, fmt.Errorf("--client-role %q: %w", v, err)
	}
	return cr, nil
}
