// Package chtest starts a real clickhouse-server for tests: one per test
// package, on a loopback port, in a temporary folder, with a config the
// test writes (no system service, nothing under /etc or /var is used).
//
// A package's TestMain calls Run; each test that needs the server calls
// (*Server).URL, which starts it on first use. Without the binary the test
// is skipped with a message when run by hand, and fails under CI (see
// internal/testenv), so that a broken CI machine cannot pass by skipping.
package chtest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/testenv"
)

// Binary is the server Debian's clickhouse-server package installs.
const Binary = "clickhouse-server"

// Server is one clickhouse-server started lazily for a test package. Its
// methods are safe for concurrent use by parallel tests.
type Server struct {
	once   sync.Once
	url    string
	reason string // why there is no server, when there is none
	cmd    *exec.Cmd
	dir    string
	port   int
	bin    string
	exited chan struct{}
}

// Run runs the package's tests and stops the server afterwards if a test
// started it. TestMain must pass its result to os.Exit.
func Run(m *testing.M, s *Server) int {
	code := m.Run()
	if err := s.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "chtest: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// URL returns the server's base URL (http://127.0.0.1:PORT), starting it
// on first use. A missing binary or a server that does not come up is
// testenv.Unavailable.
func (s *Server) URL(t testing.TB) string {
	t.Helper()
	s.once.Do(func() {
		if err := s.start(); err != nil {
			s.reason = err.Error()
		}
	})
	if s.url == "" {
		testenv.Unavailable(t, "%s", s.reason)
	}
	return s.url
}

// Log returns the server's error log, for a failing test's message.
func (s *Server) Log() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "log", "err.log"))
	return string(b)
}

func (s *Server) start() error {
	bin, err := exec.LookPath(Binary)
	if err != nil {
		// Debian installs it in /usr/sbin, which a user's PATH may lack.
		bin, err = exec.LookPath(filepath.Join("/usr/sbin", Binary))
	}
	if err != nil {
		return fmt.Errorf("%s is not on PATH; the ClickHouse store tests need Debian's ClickHouse (apt-get install clickhouse-server), as .ci/run installs it", Binary)
	}
	dir, err := os.MkdirTemp("", "kubetrail-clickhouse-")
	if err != nil {
		return err
	}
	s.dir, s.bin = dir, bin
	if s.port, err = freePort(); err != nil {
		return err
	}
	if err := writeConfig(dir, s.port); err != nil {
		return err
	}
	return s.spawn()
}

// spawn starts the server in s.dir on s.port and waits until it answers.
func (s *Server) spawn() error {
	bin := s.bin
	cmd := exec.Command(bin, "--config-file="+filepath.Join(s.dir, "config.xml"))
	cmd.Dir = s.dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// Its own process group, so that a signal to the test binary's group
	// (^C) does not reach it before Run stops it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", bin, err)
	}
	s.cmd, s.exited = cmd, make(chan struct{})
	go func() { cmd.Wait(); close(s.exited) }()
	url := "http://127.0.0.1:" + strconv.Itoa(s.port)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-s.exited:
			return fmt.Errorf("%s exited at start: %s%s", bin, out.String(), s.Log())
		default:
		}
		if resp, err := http.Get(url + "/ping"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				s.url = url
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s did not answer on %s within 30s: %s", bin, url, s.Log())
}

// Kill stops the server with SIGKILL, as a crash would, keeping its data
// and port for Restart. Tests that stop a server must use a Server of
// their own, not the package's shared one.
func (s *Server) Kill(t testing.TB) {
	t.Helper()
	if s.cmd == nil {
		t.Fatal("chtest: Kill before the server started")
	}
	s.cmd.Process.Kill()
	<-s.exited
}

// Restart starts a killed server again on the same port and data.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	if err := s.spawn(); err != nil {
		t.Fatalf("chtest: restart: %v", err)
	}
}

// Stop ends the server, if it started, and removes its folder. Run calls
// it for the package's server; a test that started one of its own calls it
// when done.
func (s *Server) Stop() error {
	if s.cmd == nil {
		return nil
	}
	// Killed, not asked to stop: its data is thrown away next, and a
	// graceful shutdown takes 18.16 about ten seconds.
	s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
	return os.RemoveAll(s.dir)
}

// freePort asks the kernel for a loopback port nobody listens on.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// writeConfig writes a config that listens on HTTP only (no native TCP or
// interserver port: the tests use neither) and keeps everything in dir.
// The element is <yandex>, which 18.16 requires and current releases still
// read.
func writeConfig(dir string, port int) error {
	for _, d := range []string{"data", "tmp", "user_files", "format_schemas", "log"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return err
		}
	}
	p := func(d string) string { return filepath.Join(dir, d) + "/" }
	config := `<?xml version="1.0"?>
<yandex>
    <logger><level>warning</level><log>` + p("log") + `server.log</log><errorlog>` + p("log") + `err.log</errorlog><console>0</console></logger>
    <http_port>` + strconv.Itoa(port) + `</http_port>
    <listen_host>127.0.0.1</listen_host>
    <path>` + p("data") + `</path>
    <tmp_path>` + p("tmp") + `</tmp_path>
    <user_files_path>` + p("user_files") + `</user_files_path>
    <format_schema_path>` + p("format_schemas") + `</format_schema_path>
    <users_config>users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <mark_cache_size>67108864</mark_cache_size>
    <uncompressed_cache_size>67108864</uncompressed_cache_size>
</yandex>
`
	users := `<?xml version="1.0"?>
<yandex>
    <profiles><default></default></profiles>
    <users><default><password></password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></default></users>
    <quotas><default></default></quotas>
</yandex>
`
	return errors.Join(
		os.WriteFile(filepath.Join(dir, "config.xml"), []byte(config), 0o600),
		os.WriteFile(filepath.Join(dir, "users.xml"), []byte(users), 0o600))
}
