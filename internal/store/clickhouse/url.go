package clickhouse

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/kubetrail/kubetrail/internal/secretfile"
)

// Config says where the store is.
type Config struct {
	// Endpoint is the HTTP interface's base URL, http://HOST:PORT or
	// https://HOST:PORT.
	Endpoint string
	// Database holds kubetrail's tables.
	Database string
	// User and Password authenticate; an empty User is ClickHouse's
	// "default" user without a password.
	User, Password string
	// TLS is the client's TLS configuration for an https Endpoint (the
	// CA it trusts); nil uses the system's roots.
	TLS *tls.Config
	// Cluster, when set, is the name of a cluster in the servers'
	// remote_servers: Setup creates a local table on every shard and a
	// Distributed table over them (cluster.go), and inserts wait until
	// every shard holds its rows.
	Cluster string
}

// Default ports of ClickHouse's HTTP and HTTPS interfaces.
const (
	DefaultPort    = "8123"
	DefaultTLSPort = "8443"
)

// URLForms is what a store URL may be, for help texts and errors.
const URLForms = "clickhouse://[USER[:PASSWORD]@]HOST[:PORT]/DB[?cluster=NAME&password_file=PATH] (clickhouses:// for HTTPS, with &ca=PATH)"

// identRE is what a database or cluster name may be: it is written into
// statements unquoted, so nothing else is accepted.
var identRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,63}$`) })

// options are the URL's query options ParseURL knows.
var options = []string{"cluster", "password_file", "ca"}

// ParseURL reads a store URL (URLForms). clickhouse:// speaks HTTP,
// port 8123 by default (the HTTP interface, not the native 9000);
// clickhouses:// speaks HTTPS, port 8443 by default. Options:
//
//	cluster=NAME        a cluster of the servers' remote_servers (Setup
//	                    makes a Distributed table over it)
//	password_file=FILE  the password, read from FILE (one trailing newline
//	                    dropped), so that it appears in no command line;
//	                    FILE must be private to its owner (secretfile)
//	ca=FILE             PEM certificates of the CAs an https server's
//	                    certificate may chain to, instead of the system's
//
// It reads the files the options name. Its errors show the URL with any
// password replaced by xxxxx (Redact).
func ParseURL(s string) (Config, error) {
	shown := Redact(s)
	u, err := url.Parse(s)
	if err != nil {
		return Config{}, fmt.Errorf("store URL %q: does not parse as a URL; want %s", shown, URLForms)
	}
	var c Config
	port := DefaultPort
	switch u.Scheme {
	case "clickhouse":
		c.Endpoint = "http://"
	case "clickhouses":
		c.Endpoint, port = "https://", DefaultTLSPort
	default:
		return Config{}, fmt.Errorf("store URL %q: want %s", shown, URLForms)
	}
	if u.Host == "" || u.Hostname() == "" {
		return Config{}, fmt.Errorf("store URL %q: no host; want %s", shown, URLForms)
	}
	if u.Fragment != "" {
		return Config{}, fmt.Errorf("store URL %q: a #fragment means nothing here", shown)
	}
	c.Database = strings.TrimPrefix(u.Path, "/")
	if !identRE().MatchString(c.Database) {
		return Config{}, fmt.Errorf("store URL %q: database %q: want a name of letters, digits and _ (clickhouse://HOST:8123/kubetrail)", shown, c.Database)
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), port)
	}
	c.Endpoint += host
	if u.User != nil {
		c.User = u.User.Username()
		c.Password, _ = u.User.Password()
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return Config{}, fmt.Errorf("store URL %q: options: %w", shown, err)
	}
	if err := c.applyOptions(q); err != nil {
		return Config{}, fmt.Errorf("store URL %q: %w", shown, err)
	}
	return c, nil
}

// applyOptions reads the URL's options into c, and the files they name.
func (c *Config) applyOptions(q url.Values) error {
	for k, vs := range q {
		if !slices.Contains(options, k) {
			return fmt.Errorf("unknown option %q; the options are %s", k, strings.Join(options, ", "))
		}
		if len(vs) != 1 || vs[0] == "" {
			return fmt.Errorf("option %s: want one value", k)
		}
	}
	if name := q.Get("cluster"); name != "" {
		if !identRE().MatchString(name) {
			return fmt.Errorf("cluster %q: want a name of letters, digits and _, as in the servers' remote_servers", name)
		}
		c.Cluster = name
	}
	if f := q.Get("password_file"); f != "" {
		if c.Password != "" {
			return fmt.Errorf("a password in the URL and password_file: give one")
		}
		b, err := readSecret(f)
		if err != nil {
			return err
		}
		pw := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
		if pw == "" {
			return fmt.Errorf("password_file %s is empty", f)
		}
		c.Password = pw
	}
	if f := q.Get("ca"); f != "" {
		if !strings.HasPrefix(c.Endpoint, "https://") {
			return fmt.Errorf("ca=%s with clickhouse://, which does not use TLS: use clickhouses://", f)
		}
		pem, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("ca %s: no PEM certificate in it", f)
		}
		c.TLS = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
	}
	return nil
}

// Redact returns a store URL fit to print: any password replaced by
// xxxxx, also in a string that does not parse as a URL or parses as one
// without an authority (bob:pw@host, read as scheme "bob").
func Redact(s string) string {
	if u, err := url.Parse(s); err == nil && u.Opaque == "" {
		return u.Redacted()
	}
	scheme, rest := "", s
	if i := strings.Index(s, "://"); i >= 0 {
		scheme, rest = s[:i+3], s[i+3:]
	}
	authority := rest
	if j := strings.IndexAny(rest, "/?#"); j >= 0 {
		authority = rest[:j]
	}
	k := strings.LastIndexByte(authority, '@')
	if k < 0 {
		return s
	}
	user, _, _ := strings.Cut(authority[:k], ":")
	return scheme + user + ":xxxxx@" + rest[k+1:]
}

// readSecret reads a password file, refused when anyone but its owner may
// read or change it (secretfile.CheckMode, on the file opened, so the
// mode checked is that of the file read).
func readSecret(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("password_file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("password_file: %w", err)
	}
	if err := secretfile.CheckMode("password_file", path, fi); err != nil {
		return nil, err
	}
	b, err := io.ReadAll(io.LimitReader(f, 64<<10))
	if err != nil {
		return nil, fmt.Errorf("password_file %s: %w", path, err)
	}
	return b, nil
}
