package timespec

import (
	"errors"
	"strings"
	"testing"
	"time"
)

var now = time.Date(2026, 12, 4, 10, 30, 0, 0, time.UTC)

func TestParse(t *testing.T) {
	f := func(in string, want time.Time) {
		t.Helper()
		got, err := Parse(in, now)
		if err != nil {
			t.Errorf("Parse(%q): %v", in, err)
			return
		}
		if !got.Equal(want) {
			t.Errorf("Parse(%q) = %v, want %v", in, got, want)
		}
	}
	f("2h", now.Add(-2*time.Hour))
	f("-2h", now.Add(-2*time.Hour))
	f("90s", now.Add(-90*time.Second))
	f("30m", now.Add(-30*time.Minute))
	f("7d", now.Add(-7*24*time.Hour))
	f("1w", now.Add(-7*24*time.Hour))
	f("1d12h", now.Add(-36*time.Hour))
	f("1w2d3h4m5s", now.Add(-(9*24*time.Hour + 3*time.Hour + 4*time.Minute + 5*time.Second)))
	f("0s", now)
	f("2026-01-02", time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC))
	f("2026-01-02T15:04", time.Date(2026, 1, 2, 15, 4, 0, 0, time.UTC))
	f("2026-01-02T15:04:05", time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC))
	f("2026-01-02T15:04:05.123456", time.Date(2026, 1, 2, 15, 4, 5, 123456000, time.UTC))
	f("2026-01-02T15:04:05Z", time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC))
	f("2026-01-02T15:04:05+02:00", time.Date(2026, 1, 2, 13, 4, 5, 0, time.UTC))
}

func TestParseJunk(t *testing.T) {
	f := func(in, want string) {
		t.Helper()
		got, err := Parse(in, now)
		if err == nil {
			t.Errorf("Parse(%q) = %v, want an error", in, got)
			return
		}
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q): %q, want it to say %q", in, err, want)
		}
	}
	f("33abcd", `unknown duration unit "a"`) // was read as 33 days
	f("33d4", "whole numbers each followed by a unit")
	f("2y", `unknown duration unit "y"`)
	f("2H", `unknown duration unit "H"`)
	f("1.5h", "whole numbers only")
	f("1e3d", `unknown duration unit "e"`)
	f("500ms", "whole numbers each followed by a unit") // m, then "s" without a number
	f("2", "whole numbers each followed by a unit")
	f("h", "want a duration before now")
	f("d7", "want a duration before now")
	f("", "empty")
	f("-", "want a duration before now")
	f("--2h", "want a duration before now")
	f("+2h", "want a duration before now")
	f(" 2h", "want a duration before now")
	f("2h ", "whole numbers each followed by a unit")
	f("yesterday", "want a duration before now")
	f("9999999999h", "too large")
	f("999999999w", "too large")
	f("2026-13-01", "not a valid date or time")
	f("2026-01-02 15:04", "not a valid date or time")
	f("2026-01-02T25:00", "not a valid date or time")
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"1s": time.Second, "2m": 2 * time.Minute, "3h": 3 * time.Hour, "1d": 24 * time.Hour,
		"2w": 14 * 24 * time.Hour, "1d12h": 36 * time.Hour, "100w": 700 * 24 * time.Hour,
	} {
		if got, err := ParseDuration(in); err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "33abcd", "-1h", "1.5d", "1h30", "d", "1x", "10000000000s"} {
		if got, err := ParseDuration(in); err == nil {
			t.Errorf("ParseDuration(%q) = %v, want an error", in, got)
		}
	}
}

func TestRange(t *testing.T) {
	lo, hi, err := Range("--since", "2026-01-02", "--until", "2026-01-02T00:00:10Z", now)
	if err != nil {
		t.Fatal(err)
	}
	day := time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)
	if lo != day.UnixMicro() {
		t.Errorf("lo = %d, want %d (since is inclusive)", lo, day.UnixMicro())
	}
	// The store's upper bound is exclusive: an event at exactly --until
	// must be kept, so hi is one microsecond after it.
	if want := day.Add(10*time.Second).UnixMicro() + 1; hi != want {
		t.Errorf("hi = %d, want %d (until is inclusive)", hi, want)
	}
	if lo, hi, err := Range("--since", "", "--until", "", now); lo != 0 || hi != 0 || err != nil {
		t.Errorf("empty values = %d, %d, %v; want 0, 0 (open)", lo, hi, err)
	}
	// The same instant as since and until keeps that instant.
	if lo, hi, err := Range("--since", "2026-01-02", "--until", "2026-01-02", now); err != nil || hi-lo != 1 {
		t.Errorf("since = until: %d, %d, %v; want a one-microsecond window", lo, hi, err)
	}

	f := func(since, until, want string) {
		t.Helper()
		_, _, err := Range("--since", since, "--until", until, now)
		var te *Error
		if !errors.As(err, &te) {
			t.Fatalf("Range(%q, %q) = %v, want an *Error", since, until, err)
		}
		if err.Error() != want && !strings.HasPrefix(err.Error(), want) {
			t.Errorf("Range(%q, %q): %q, want it to start %q", since, until, err, want)
		}
	}
	f("33abcd", "", `--since "33abcd": unknown duration unit "a": use s, m, h, d or w`)
	f("", "soon", `--until "soon": want a duration before now`)
	f("1h", "2h", `--until "2h": is before --since 1h`)
}
