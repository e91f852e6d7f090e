package syslog

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/google/go-cmp/cmp"
)

// readAll reads every frame of in, through a reader that gives whole
// chunks and through one that gives a byte at a time (so that every
// frame and every "}COUNT <" straddles reads), and checks both agree.
func readAll(t *testing.T, in string, max int) (msgs, reasons []string, err error) {
	t.Helper()
	read := func(r io.Reader) (msgs, reasons []string, err error) {
		fr := NewFrameReader(r, 64, max)
		for {
			f, e := fr.Next()
			if f.Reason != "" {
				reasons = append(reasons, f.Reason)
			}
			if f.Msg != nil {
				msgs = append(msgs, string(f.Msg))
			}
			if e != nil {
				if !errors.Is(e, io.EOF) {
					err = e
				}
				return
			}
		}
	}
	msgs, reasons, err = read(strings.NewReader(in))
	m1, r1, e1 := read(iotest.OneByteReader(strings.NewReader(in)))
	if d := cmp.Diff(msgs, m1); d != "" || !errors.Is(e1, err) || len(r1) != len(reasons) {
		t.Errorf("byte-at-a-time reads differ for %q (-whole +bytes):\n%s\nreasons %q vs %q, err %v vs %v", in, d, reasons, r1, err, e1)
	}
	return msgs, reasons, err
}

const (
	g1 = `<14>1 2026-01-01T00:00:00Z h a - - - {"auditID":"1"}`
	g2 = `<14>Jan  1 00:00:00 h kube-audit: {"auditID":"2"}`
)

func counted(m string) string { return fmt.Sprintf("%d %s", len(m), m) }

func TestFraming(t *testing.T) {
	f := func(name, in string, want []string, wantReasons ...string) {
		t.Helper()
		msgs, reasons, err := readAll(t, in, 1000)
		if err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if d := cmp.Diff(want, msgs); d != "" {
			t.Errorf("%s: messages (-want +got):\n%s", name, d)
		}
		if len(reasons) != len(wantReasons) {
			t.Errorf("%s: reasons %q, want %d containing %q", name, reasons, len(wantReasons), wantReasons)
			return
		}
		for i, r := range wantReasons {
			if !strings.Contains(reasons[i], r) {
				t.Errorf("%s: reason %q, want it to say %q", name, reasons[i], r)
			}
		}
	}
	f("octet counting", counted(g1)+counted(g2), []string{g1, g2})
	f("newline framing", g1+"\n"+g2+"\n", []string{g1, g2})
	f("mixed per frame", counted(g1)+g2+"\n"+counted(g1), []string{g1, g2, g1})
	f("CRLF, NUL and a last line without newline", g1+"\r\n\x00"+g2, []string{g1, g2})
	f("a message holding a newline, octet-counted", counted("<1>a\nb")+counted(g1), []string{"<1>a\nb", g1})

	// A frame longer than its count: the count ends it early; the rest is
	// skipped up to the next frame, which is kept.
	f("frame longer than its count", counted(g1)+"20 "+g1+counted(g2), []string{g1, g1[:20], g2},
		fmt.Sprintf(`not a syslog frame: starts with "0...", neither an octet count nor a <PRI>: %d bytes skipped`, len(g1)-20))
	// The count missing: newline framing takes over and ends at '}'
	// followed by the next frame's count.
	f("missing count", counted(g1)+g1+counted(g2)+g2+"\n", []string{g1, g1, g2, g2})
	f("garbage count", counted(g1)+"12x "+g1+counted(g2), []string{g1, g1, g2},
		`octet count "12x <14>1" is not a number followed by a space: 4 bytes skipped`)
	f("count with too many digits", counted(g1)+"123456789012 "+g2+"\n"+counted(g1), []string{g1, g2, g1},
		`octet count "12345678901" is not a number followed by a space: 13 bytes skipped`)
	f("count of zero", "0 "+g2+"\n", []string{g2}, "not a syslog frame")
	f("binary garbage", counted(g1)+"\xff\xfe\x00\x01\x02<<9x>"+counted(g2)+"\x80"+g1+"\n", []string{g1, g2, g1},
		`not a syslog frame: starts with "\xff...", neither an octet count nor a <PRI>: 10 bytes skipped`, `starts with "\x80...", neither an octet count nor a <PRI>: 1 bytes skipped`)
	f("garbage at the end", counted(g1)+"\xff\xff", []string{g1}, "2 bytes skipped")

	big := "<1>" + strings.Repeat("x", 2000)
	f("octet-counted frame over the limit", counted(g1)+counted(big)+counted(g2), []string{g1, g2},
		"a frame of 2003 bytes is over the 1000-byte message limit")
	f("newline frame over the limit", g1+"\n"+big+"\n"+g2+"\n", []string{g1, g2},
		"a newline-framed message of 2003 bytes is over the 1000-byte message limit")
}

func TestFramingCutShort(t *testing.T) {
	msgs, _, err := readAll(t, counted(g2)+counted(g1)[:10], 1000)
	if !errors.Is(err, io.ErrUnexpectedEOF) || len(msgs) != 1 {
		t.Errorf("cut inside a frame: messages %q, err %v; want the first and io.ErrUnexpectedEOF", msgs, err)
	}
	msgs, reasons, err := readAll(t, counted(g2)+"1234", 1000)
	if err != nil || len(msgs) != 1 || len(reasons) != 1 || reasons[0] != "the stream ended inside an octet count: 4 bytes skipped" {
		t.Errorf("cut inside a count: messages %q, reasons %q, err %v", msgs, reasons, err)
	}
}

// TestFrameReady: Ready must say whether a whole frame is buffered, so
// that a connection stores what it has instead of waiting for a frame
// still on its way.
func TestFrameReady(t *testing.T) {
	r, w := io.Pipe()
	fr := NewFrameReader(r, 1<<10, 1000)
	go w.Write([]byte(counted(g1) + counted(g2) + counted(g1)[:7]))
	for i, want := range []bool{true, false} {
		if _, err := fr.Next(); err != nil {
			t.Fatal(err)
		}
		if got := fr.Ready(); got != want {
			t.Fatalf("after frame %d: Ready() = %v, want %v", i+1, got, want)
		}
	}
	go w.Write([]byte(counted(g1)[7:] + g2[:10]))
	if f, err := fr.Next(); err != nil || string(f.Msg) != g1 {
		t.Fatalf("third frame: %q %v", f.Msg, err)
	}
	if fr.Ready() {
		t.Fatal("Ready with half a newline-framed message buffered")
	}
}

// TestHugeFrameBoundedMemory: a 100 MB frame is skipped while holding
// no more than the buffer, and the next frame is read.
func TestHugeFrameBoundedMemory(t *testing.T) {
	const size = 100 << 20
	huge := io.MultiReader(strings.NewReader(fmt.Sprintf("%d <1>", size+3)), io.LimitReader(zeros{}, size), strings.NewReader(counted(g1)))
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	fr := NewFrameReader(huge, 64<<10, 4<<20)
	f, err := fr.Next()
	runtime.ReadMemStats(&after)
	if err != nil || f.Msg != nil || f.Skipped != size+3 || !strings.Contains(f.Reason, "over the 4194304-byte message limit") {
		t.Fatalf("huge frame: %+v %v", f, err)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
		t.Errorf("skipping a 100 MB frame allocated %d bytes", grew)
	}
	if f, err := fr.Next(); err != nil || string(f.Msg) != g1 {
		t.Fatalf("frame after the huge one: %q %v", f.Msg, err)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func FuzzFrames(f *testing.F) {
	for _, s := range []string{counted(g1) + g2 + "\n", "12x " + g1, "\xff<1>" + counted(g2), "0 <1>", "}1 <1>"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		fr := NewFrameReader(bytes.NewReader(in), 16, 64)
		var total int64
		for i := 0; ; i++ {
			fr.Ready()
			fm, err := fr.Next()
			if len(fm.Msg) > 64 {
				t.Fatalf("a message of %d bytes passed the 64-byte limit", len(fm.Msg))
			}
			total += int64(len(fm.Msg)) + fm.Skipped
			if total > int64(len(in)) {
				t.Fatalf("read %d bytes of %d", total, len(in))
			}
			if err != nil || i > len(in) {
				return
			}
			Parse(fm.Msg)
		}
	})
}
