package chtest

import (
	"bytes"
	"errors"
	"fmt"
	"html"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// Options say how to start a Node: a clickhouse-server with more than
// Server's plain HTTP port (a native port for Distributed tables, HTTPS,
// users with passwords, a cluster in remote_servers).
type Options struct {
	// Host is the loopback address the server listens on: 127.0.0.1 when
	// empty. Two nodes on 127.0.0.1 and 127.0.0.2 can share port numbers,
	// as the shards of a real cluster share theirs.
	Host string
	// HTTPPort, TCPPort and HTTPSPort are the ports; 0 picks a free one
	// for HTTP and TCP, and leaves HTTPS off.
	HTTPPort, TCPPort, HTTPSPort int
	// CertFile and KeyFile are the HTTPS server's certificate and key
	// (PEM), required with HTTPSPort.
	CertFile, KeyFile string
	// Users are users besides "default" (which has no password), with
	// their passwords.
	Users map[string]string
	// RemoteServers is the XML inside <remote_servers>: the clusters that
	// Distributed tables and system.clusters know.
	RemoteServers string
	// ZooKeeper is the address (host:port) of the ZooKeeper that
	// replicated tables use; none when empty.
	ZooKeeper string
	// Macros are the <macros> substitutions ({shard}, {replica}) that
	// replicated tables' paths name.
	Macros map[string]string
	// InterserverPort is the port replicas fetch parts from each other
	// on (interserver_http_port, at Host); off when 0.
	InterserverPort int
}

// Node is a clickhouse-server started by StartNode.
type Node struct {
	// Host, HTTPPort, TCPPort and HTTPSPort are where it listens.
	Host                         string
	HTTPPort, TCPPort, HTTPSPort int
	dir                          string
	bin                          string
	cmd                          *exec.Cmd
	exited                       chan struct{}
}

// URL is the node's plain HTTP base URL.
func (n *Node) URL() string {
	return "http://" + net.JoinHostPort(n.Host, strconv.Itoa(n.HTTPPort))
}

// PID is the server's process id, for a benchmark that reads its CPU
// time from /proc.
func (n *Node) PID() int { return n.cmd.Process.Pid }

// Log returns the node's error log, for a failing test's message.
func (n *Node) Log() string {
	b, _ := os.ReadFile(filepath.Join(n.dir, "log", "err.log"))
	return string(b)
}

// StartNode starts a server with o and waits until it answers. The caller
// must Stop it (a package keeps its nodes for all its tests and stops
// them after m.Run). A missing binary is an error mentioning it, for the
// caller to pass to testenv.Unavailable.
func StartNode(o Options) (*Node, error) {
	bin, err := exec.LookPath(Binary)
	if err != nil {
		bin, err = exec.LookPath(filepath.Join("/usr/sbin", Binary))
	}
	if err != nil {
		return nil, fmt.Errorf("%s is not on PATH; the ClickHouse store tests need Debian's ClickHouse (apt-get install clickhouse-server), as .ci/run installs it", Binary)
	}
	n := &Node{Host: o.Host, HTTPPort: o.HTTPPort, TCPPort: o.TCPPort, HTTPSPort: o.HTTPSPort}
	if n.Host == "" {
		n.Host = "127.0.0.1"
	}
	for _, p := range []*int{&n.HTTPPort, &n.TCPPort} {
		if *p == 0 {
			if *p, err = freePort(); err != nil {
				return nil, err
			}
		}
	}
	if n.dir, err = os.MkdirTemp("", "kubetrail-clickhouse-node-"); err != nil {
		return nil, err
	}
	if err := n.writeConfig(o); err != nil {
		return nil, errors.Join(err, os.RemoveAll(n.dir))
	}
	n.bin = bin
	if err := n.spawn(); err != nil {
		return nil, errors.Join(err, n.Stop())
	}
	return n, nil
}

// spawn starts the server on n's config and waits until it answers.
func (n *Node) spawn() error {
	cmd := exec.Command(n.bin, "--config-file="+filepath.Join(n.dir, "config.xml"))
	cmd.Dir = n.dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", n.bin, err)
	}
	n.cmd, n.exited = cmd, make(chan struct{})
	go func() { cmd.Wait(); close(n.exited) }()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-n.exited:
			n.cmd = nil
			return fmt.Errorf("%s exited at start: %s%s", n.bin, out.String(), n.Log())
		default:
		}
		if resp, err := http.Get(n.URL() + "/ping"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s did not answer on %s within 30s: %s", n.bin, n.URL(), n.Log())
}

// Kill stops the node with SIGKILL, as a crash would, keeping its data
// and ports for Restart.
func (n *Node) Kill() {
	if n.cmd == nil {
		return
	}
	n.cmd.Process.Kill()
	<-n.exited
	n.cmd = nil
}

// Restart starts a killed node again on the same ports and data.
func (n *Node) Restart() error {
	if n.cmd != nil {
		return fmt.Errorf("chtest: restart of %s, which runs", n.URL())
	}
	return n.spawn()
}

// Stop kills the node (its data is thrown away next) and removes its
// folder. A nil node is stopped already.
func (n *Node) Stop() error {
	if n == nil || n.dir == "" {
		return nil
	}
	n.Kill()
	dir := n.dir
	n.dir = ""
	return os.RemoveAll(dir)
}

// StartNodes starts one node per options, stopping those it started when
// one fails.
func StartNodes(opts ...Options) ([]*Node, error) {
	var nodes []*Node
	for _, o := range opts {
		n, err := StartNode(o)
		if err != nil {
			return nil, errors.Join(err, StopNodes(nodes))
		}
		nodes = append(nodes, n)
	}
	return nodes, nil
}

// StopNodes stops every node.
func StopNodes(nodes []*Node) error {
	var errs []error
	for _, n := range nodes {
		errs = append(errs, n.Stop())
	}
	return errors.Join(errs...)
}

// SharedPort returns a port free on every one of hosts, for shards that
// listen on one port number on different loopback addresses.
func SharedPort(hosts ...string) (int, error) {
	for range 50 {
		p, err := freePort()
		if err != nil {
			return 0, err
		}
		ok := true
		for _, h := range hosts {
			l, err := net.Listen("tcp", net.JoinHostPort(h, strconv.Itoa(p)))
			if err != nil {
				ok = false
				break
			}
			l.Close()
		}
		if ok {
			return p, nil
		}
	}
	return 0, fmt.Errorf("no port free on all of %v after 50 tries", hosts)
}

func (n *Node) writeConfig(o Options) error {
	dir := n.dir
	for _, d := range []string{"data", "tmp", "user_files", "format_schemas", "log"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return err
		}
	}
	p := func(d string) string { return html.EscapeString(filepath.Join(dir, d)) + "/" }
	var extra bytes.Buffer
	if n.HTTPSPort != 0 {
		fmt.Fprintf(&extra, `    <https_port>%d</https_port>
    <openSSL><server><certificateFile>%s</certificateFile><privateKeyFile>%s</privateKeyFile><verificationMode>none</verificationMode><disableProtocols>sslv2,sslv3</disableProtocols></server></openSSL>
`, n.HTTPSPort, html.EscapeString(o.CertFile), html.EscapeString(o.KeyFile))
	}
	if o.RemoteServers != "" {
		fmt.Fprintf(&extra, "    <remote_servers>%s</remote_servers>\n", o.RemoteServers)
	}
	if o.ZooKeeper != "" {
		host, port, err := net.SplitHostPort(o.ZooKeeper)
		if err != nil {
			return fmt.Errorf("chtest: ZooKeeper %q: %w", o.ZooKeeper, err)
		}
		// A short session: a killed replica's session must end before
		// its restart can mark it active again, and 18.16's default is 30 s.
		fmt.Fprintf(&extra, "    <zookeeper><node><host>%s</host><port>%s</port></node><session_timeout_ms>3000</session_timeout_ms></zookeeper>\n", host, port)
	}
	if len(o.Macros) > 0 {
		extra.WriteString("    <macros>")
		for k, v := range o.Macros {
			fmt.Fprintf(&extra, "<%s>%s</%s>", k, html.EscapeString(v), k)
		}
		extra.WriteString("</macros>\n")
	}
	if o.InterserverPort != 0 {
		fmt.Fprintf(&extra, "    <interserver_http_port>%d</interserver_http_port><interserver_http_host>%s</interserver_http_host>\n", o.InterserverPort, n.Host)
	}
	config := `<?xml version="1.0"?>
<yandex>
    <logger><level>warning</level><log>` + p("log") + `server.log</log><errorlog>` + p("log") + `err.log</errorlog><console>0</console></logger>
    <http_port>` + strconv.Itoa(n.HTTPPort) + `</http_port>
    <tcp_port>` + strconv.Itoa(n.TCPPort) + `</tcp_port>
    <listen_host>` + n.Host + `</listen_host>
    <path>` + p("data") + `</path>
    <tmp_path>` + p("tmp") + `</tmp_path>
    <user_files_path>` + p("user_files") + `</user_files_path>
    <format_schema_path>` + p("format_schemas") + `</format_schema_path>
    <users_config>users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <mark_cache_size>67108864</mark_cache_size>
    <uncompressed_cache_size>67108864</uncompressed_cache_size>
` + extra.String() + `</yandex>
`
	var users bytes.Buffer
	for name, pw := range o.Users {
		fmt.Fprintf(&users, "<%s><password>%s</password><networks><ip>127.0.0.0/8</ip></networks><profile>default</profile><quota>default</quota></%s>", name, html.EscapeString(pw), name)
	}
	usersXML := `<?xml version="1.0"?>
<yandex>
    <profiles><default></default></profiles>
    <users><default><password></password><networks><ip>127.0.0.0/8</ip></networks><profile>default</profile><quota>default</quota></default>` + users.String() + `</users>
    <quotas><default></default></quotas>
</yandex>
`
	return errors.Join(
		os.WriteFile(filepath.Join(dir, "config.xml"), []byte(config), 0o600),
		os.WriteFile(filepath.Join(dir, "users.xml"), []byte(usersXML), 0o600))
}
