package syslog

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestAppend(t *testing.T) {
	f := func(m Message, want string) {
		t.Helper()
		if got := string(Append(nil, &m)); got != want {
			t.Errorf("got  %s\nwant %s", got, want)
		}
	}
	ts := time.Date(2026, 5, 1, 12, 0, 0, 123456789, time.FixedZone("X", 3600))
	f(Message{Facility: 10, Severity: Crit, Time: ts, Hostname: "node-1", AppName: "kubetrail", ProcID: "42", MsgID: "alert",
		Data: []Element{{ID: "alert@32473", Params: []Param{{"rule", `bind "cluster-admin" [x]`}, {"user", `C:\u`}}}},
		Msg:  "line one\nline two"},
		`<82>1 2026-05-01T11:00:00.123456Z node-1 kubetrail 42 alert [alert@32473 rule="bind \"cluster-admin\" [x\]" user="C:\\u"] line one`+"\nline two")
	// Nil values, a header field with spaces and control characters, a
	// too-long MSGID, an SD-NAME with '=', invalid UTF-8.
	f(Message{Facility: 4, Severity: Info, Hostname: "a b\x01", MsgID: strings.Repeat("m", 40),
		Data: []Element{{ID: "x=y", Params: []Param{{"p]", "\xff"}}}}},
		`<38>1 - a_b_ - - `+strings.Repeat("m", 32)+` [x_y p_="`+"\uFFFD"+`"]`)
	f(Message{Facility: 99, Severity: -1}, `<184>1 - - - - - -`)
}

func TestAppendFrame(t *testing.T) {
	msg := "<14>1 - - - - - - héllo\nworld"
	if got := string(AppendFrame([]byte("x"), []byte(msg))); got != "x"+strconv.Itoa(len(msg))+" "+msg {
		t.Errorf("frame %q: the length must count bytes", got)
	}
}

func TestParseFacility(t *testing.T) {
	for in, want := range map[string]int{"authpriv": 10, "LOCAL3": 19, "13": 13} {
		if n, ok := ParseFacility(in); !ok || n != want {
			t.Errorf("ParseFacility(%q) = %d, %v", in, n, ok)
		}
	}
	for _, in := range []string{"24", "nope", "-1"} {
		if _, ok := ParseFacility(in); ok {
			t.Errorf("ParseFacility(%q) accepted", in)
		}
	}
}

// readFrames reads octet-counted frames from a connection.
func readFrames(r *bufio.Reader, n int) ([]string, error) {
	var out []string
	for len(out) < n {
		ls, err := r.ReadString(' ')
		if err != nil {
			return out, err
		}
		l, err := strconv.Atoi(strings.TrimSuffix(ls, " "))
		if err != nil {
			return out, err
		}
		b := make([]byte, l)
		if _, err := io.ReadFull(r, b); err != nil {
			return out, err
		}
		out = append(out, string(b))
	}
	return out, nil
}

// serve accepts connections on ln and sends every frame read to frames;
// each connection is closed after closeAfter frames when it is set.
func serve(ln net.Listener, frames chan<- string, closeAfter int) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			r := bufio.NewReader(c)
			for i := 0; closeAfter == 0 || i < closeAfter; i++ {
				f, err := readFrames(r, 1)
				if err != nil {
					return
				}
				frames <- f[0]
			}
		}()
	}
}

func recv(t *testing.T, frames <-chan string, n int) []string {
	t.Helper()
	var out []string
	for len(out) < n {
		select {
		case f := <-frames:
			out = append(out, f)
		case <-time.After(5 * time.Second):
			t.Fatalf("got %d frames, want %d", len(out), n)
		}
	}
	return out
}

// TestClientReconnects: a server that closes the connection after each
// message still gets every message sent later. Planted bug: without the
// alive check, the write after the server closed goes into a dead socket
// and Send returns nil: the message is lost.
func TestClientReconnects(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	frames := make(chan string, 100)
	go serve(ln, frames, 1)
	c := &Client{Addr: ln.Addr().String()}
	defer c.Close()
	for i := range 3 {
		// Send until the message is accepted, as a dispatcher does.
		for try := 0; ; try++ {
			if err := c.Send(context.Background(), []byte("m"+strconv.Itoa(i))); err == nil {
				break
			} else if try > 3 {
				t.Fatal(err)
			}
		}
		if got := recv(t, frames, 1); got[0] != "m"+strconv.Itoa(i) {
			t.Fatalf("frame %q", got[0])
		}
		time.Sleep(20 * time.Millisecond) // the server closes its side
	}
}

func TestClientTLS(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "syslog"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	frames := make(chan string, 10)
	go serve(ln, frames, 0)
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	c := &Client{Addr: ln.Addr().String(), TLS: &tls.Config{RootCAs: pool}}
	defer c.Close()
	if err := c.Send(context.Background(), []byte("one\ntwo"), []byte("three")); err != nil {
		t.Fatal(err)
	}
	if err := c.Send(context.Background(), []byte("four")); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(recv(t, frames, 3), "|"); got != "one\ntwo|three|four" {
		t.Errorf("frames %q", got)
	}
	// A server the client does not trust is refused.
	bad := &Client{Addr: ln.Addr().String(), TLS: &tls.Config{}}
	if err := bad.Send(context.Background(), []byte("x")); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("untrusted server: %v", err)
	}
}

func FuzzAppend(f *testing.F) {
	f.Add("host", "app", "rule", `va"l]ue\`, "msg\nline")
	f.Fuzz(func(t *testing.T, host, app, name, value, msg string) {
		b := Append(nil, &Message{Facility: 10, Severity: 3, Hostname: host, AppName: app,
			Data: []Element{{ID: "alert@32473", Params: []Param{{name, value}}}}, Msg: msg})
		// The header's fields are single tokens of printable ASCII.
		fields := strings.SplitN(string(b), " ", 7)
		for _, h := range fields[:6] {
			for _, c := range []byte(h) {
				if c < 33 || c > 126 {
					t.Fatalf("header field %q holds %q", h, c)
				}
			}
		}
		// The structured data parses back to the value.
		sd := fields[6]
		i := strings.Index(sd, `="`)
		if i < 0 {
			t.Fatalf("no param in %q", sd)
		}
		var got strings.Builder
		j := i + 2
		for ; j < len(sd) && sd[j] != '"'; j++ {
			if sd[j] == ']' {
				t.Fatalf("unescaped ] in %q", sd)
			}
			if sd[j] == '\\' {
				j++
			}
			got.WriteByte(sd[j])
		}
		if want := strings.ToValidUTF8(value, "\uFFFD"); got.String() != want {
			t.Fatalf("param value %q read back as %q", want, got.String())
		}
	})
}
