package chtest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ZooKeeperJar is the server Debian's zookeeper package installs; its
// manifest's Class-Path names the jars it needs.
const ZooKeeperJar = "/usr/share/java/zookeeper.jar"

// ZooKeeper is a standalone ZooKeeper server started by StartZooKeeper, for
// replicated tables.
type ZooKeeper struct {
	// Addr is where it listens (127.0.0.1:PORT).
	Addr   string
	dir    string
	cmd    *exec.Cmd
	out    bytes.Buffer
	exited chan struct{}
}

// StartZooKeeper starts a standalone ZooKeeper on a free loopback port with
// its data in a temporary folder, and waits until it serves requests. The
// caller must Stop it. A missing zookeeper or java is an error saying how
// to install it, for the caller to pass to testenv.Unavailable.
func StartZooKeeper() (*ZooKeeper, error) {
	java, err := exec.LookPath("java")
	if _, serr := os.Stat(ZooKeeperJar); err != nil || serr != nil {
		return nil, fmt.Errorf("no %s or no java on PATH; the replicated ClickHouse tests need Debian's ZooKeeper (apt-get install zookeeper), as .ci/run installs it", ZooKeeperJar)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	z := &ZooKeeper{Addr: "127.0.0.1:" + strconv.Itoa(port)}
	if z.dir, err = os.MkdirTemp("", "kubetrail-zookeeper-"); err != nil {
		return nil, err
	}
	// tickTime 500 allows sessions down to 1 s, so that a killed
	// ClickHouse replica's session ends within the test.
	cfg := "tickTime=500\ndataDir=" + filepath.Join(z.dir, "data") + "\nclientPort=" + strconv.Itoa(port) +
		"\nclientPortAddress=127.0.0.1\nadmin.enableServer=false\n4lw.commands.whitelist=srvr\n"
	if err := os.WriteFile(filepath.Join(z.dir, "zoo.cfg"), []byte(cfg), 0o600); err != nil {
		return nil, errors.Join(err, os.RemoveAll(z.dir))
	}
	cmd := exec.Command(java, "-Xmx128m", "-cp", ZooKeeperJar, "org.apache.zookeeper.server.ZooKeeperServerMain", filepath.Join(z.dir, "zoo.cfg"))
	cmd.Dir = z.dir
	cmd.Stdout, cmd.Stderr = &z.out, &z.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, errors.Join(fmt.Errorf("start ZooKeeper: %w", err), os.RemoveAll(z.dir))
	}
	z.cmd, z.exited = cmd, make(chan struct{})
	go func() { cmd.Wait(); close(z.exited) }()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-z.exited:
			return nil, errors.Join(fmt.Errorf("ZooKeeper exited at start: %s", z.out.String()), z.Stop())
		default:
		}
		if z.serving() {
			return z, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil, errors.Join(fmt.Errorf("ZooKeeper did not serve requests on %s within 30s: %s", z.Addr, z.out.String()), z.Stop())
}

// serving reports whether the server serves client sessions: the
// four-letter word srvr answers with its mode then. ruok's imok came
// while the server still closed session handshakes, and ClickHouse's
// first query of system.zookeeper failed ("Bytes read: 0 ... while
// receiving handshake") in a CI run.
func (z *ZooKeeper) serving() bool {
	return strings.Contains(z.fourLetters("srvr"), "Mode: ")
}

// fourLetters sends a four-letter word and returns the answer.
func (z *ZooKeeper) fourLetters(word string) string {
	c, err := net.DialTimeout("tcp", z.Addr, time.Second)
	if err != nil {
		return ""
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte(word)); err != nil {
		return ""
	}
	b, _ := io.ReadAll(c)
	return string(b)
}

// Stop kills the server and removes its folder. A nil ZooKeeper is
// stopped already.
func (z *ZooKeeper) Stop() error {
	if z == nil || z.dir == "" {
		return nil
	}
	if z.cmd != nil {
		z.cmd.Process.Kill()
		<-z.exited
		z.cmd = nil
	}
	dir := z.dir
	z.dir = ""
	return os.RemoveAll(dir)
}
