package cli

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestWriteLines checks that writeLines writes every event and a newline
// after each, in order, through a pipe that takes less than a writev
// gives it (the pipe is non-blocking: writes are cut short and wait).
// (Resuming a cut write at the wrong byte, or dropping the events past one
// writev's iovMax buffers, fails it.)
func TestWriteLines(t *testing.T) {
	var raws [][]byte
	var want bytes.Buffer
	for i := range 3000 {
		raw := bytes.Repeat([]byte{byte('a' + i%26)}, (i*7919)%3000)
		if i%500 == 0 {
			raw = bytes.Repeat([]byte("0123456789"), 20000) // more than a pipe holds
		}
		raws = append(raws, raw)
		want.Write(raw)
		want.WriteByte('\n')
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got := make(chan []byte)
	go func() {
		var b bytes.Buffer
		buf := make([]byte, 5000)
		for {
			time.Sleep(10 * time.Microsecond) // slower than the writer
			n, err := r.Read(buf)
			b.Write(buf[:n])
			if err == io.EOF {
				got <- b.Bytes()
				return
			}
		}
	}()
	if err := writeLines(w, raws, func() error { return nil }); err != nil {
		t.Fatal(err)
	}
	w.Close()
	if g := <-got; !bytes.Equal(g, want.Bytes()) {
		t.Fatalf("read %d bytes back, want the %d written", len(g), want.Len())
	}
}

// TestExportToFile checks that export writing to a file (with writev,
// from the store's buffers) writes what it writes through a buffer, and
// that this is the imported log byte for byte. (Writing a batch's events
// out of order, or leaving one out, fails it.)
func TestExportToFile(t *testing.T) {
	raw := recordedIncident(t)
	logFile := filepath.Join(t.TempDir(), "audit.log")
	if err := os.WriteFile(logFile, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	if code, _, errOut := run("import", "--data", data, "--progress", "never", logFile); code != 0 {
		t.Fatalf("import: %s", errOut)
	}
	for _, args := range [][]string{{"export"}, {"export", "--since", "2026-11-23T10:00:30Z"}} {
		args = append(args, "--data", data)
		code, buffered, errOut := run(args...)
		if code != 0 || buffered == "" {
			t.Fatalf("%v: exit %d, %s", args, code, errOut)
		}
		if len(args) == 3 && buffered != string(raw) {
			t.Fatalf("export gave %d bytes, not the %d imported", len(buffered), len(raw))
		}
		out := filepath.Join(t.TempDir(), "out.jsonl")
		f, err := os.Create(out)
		if err != nil {
			t.Fatal(err)
		}
		var errb bytes.Buffer
		code = Main(args, strings.NewReader(""), f, &errb)
		f.Close()
		got, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if code != 0 || string(got) != buffered {
			t.Fatalf("%v to a file: exit %d, %s, %d bytes; through a buffer %d", args, code, errb.String(), len(got), len(buffered))
		}
	}
}
