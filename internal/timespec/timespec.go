// Package timespec reads the times and durations people type: every
// --since and --until of the CLI, the since and until parameters of the
// HTTP API, the time values of the filter language, and durations such as
// --retention. One parser, so that "7d" means seven days everywhere and
// "33abcd" is an error everywhere (it once read as 33 days).
//
// A time is one of:
//
//	2026-01-02T15:04:05Z        RFC 3339, any fractional precision, any zone
//	2026-01-02T15:04:05.123456  no zone: UTC
//	2026-01-02T15:04            minutes, UTC
//	2026-01-02                  a date: 00:00 UTC that day
//	2h, 30m, 7d, 1w, 1d12h      that long before now (-2h reads the same)
//
// A duration is whole numbers each followed by a unit: s, m, h, d (24h) or
// w (7 days); 1d12h is a day and a half.
package timespec

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

var layouts = [...]string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05.999999999",
	"2006-01-02T15:04",
	"2006-01-02",
}

// Syntax says what a time may be, for error messages and help texts.
const Syntax = "a duration before now (2h, 30m, 7d, 1w, 1d12h), an RFC 3339 time (2026-01-02T15:04:05Z) or a date (2026-01-02, 00:00 UTC)"

// MaxDuration bounds durations, far beyond any audit log's age and far from
// overflowing time.Duration.
const MaxDuration = 100 * 365 * 24 * time.Hour

// Parse reads a time (see the package comment), resolving a duration as
// that long before now.
func Parse(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, errors.New("empty: want " + Syntax)
	}
	if t, ok := parseAbsolute(s); ok {
		return t, nil
	}
	ago := strings.TrimPrefix(s, "-")
	if ago == "" || ago[0] < '0' || ago[0] > '9' {
		return time.Time{}, errors.New("want " + Syntax)
	}
	if looksLikeDate(ago) {
		return time.Time{}, errors.New("not a valid date or time: want " + Syntax)
	}
	d, err := ParseDuration(ago)
	if err != nil {
		return time.Time{}, err
	}
	return now.Add(-d), nil
}

// ParseAbsolute reads a time that is not relative to now: RFC 3339, a
// time without a zone (UTC) or a date.
func ParseAbsolute(s string) (time.Time, error) {
	if t, ok := parseAbsolute(s); ok {
		return t, nil
	}
	return time.Time{}, errors.New("want an RFC 3339 time (2026-01-02T15:04:05Z) or a date (2026-01-02)")
}

func parseAbsolute(s string) (time.Time, bool) {
	for _, l := range layouts {
		if t, err := time.Parse(l, s); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

// looksLikeDate tells a mistyped date (2026-13-01, 2026-01-02 10:00) from a
// mistyped duration, so that the error speaks of the right thing.
func looksLikeDate(s string) bool {
	return len(s) >= 8 && s[4] == '-' && strings.Trim(s[:4], "0123456789") == ""
}

// ParseDuration reads whole numbers each followed by a unit s, m, h, d
// (24h) or w (7 days): 90s, 2h, 7d, 1d12h. It refuses fractions, signs,
// other units and anything after the last unit, and durations beyond
// MaxDuration.
func ParseDuration(s string) (time.Duration, error) {
	if s == "" {
		return 0, errors.New("empty duration: want whole numbers each followed by a unit s, m, h, d or w, such as 2h, 7d or 1d12h")
	}
	var total time.Duration
	for rest := s; rest != ""; {
		i := 0
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			i++
		}
		if i > 0 && i < len(rest) && rest[i] == '.' {
			return 0, errors.New("whole numbers only (90m, not 1.5h)")
		}
		if i == 0 || i == len(rest) {
			return 0, errors.New("want whole numbers each followed by a unit s, m, h, d or w, such as 2h, 7d or 1d12h")
		}
		if i > 9 {
			return 0, errors.New("too large: at most 100 years")
		}
		n, _ := strconv.Atoi(rest[:i])
		var unit time.Duration
		switch rest[i] {
		case 's':
			unit = time.Second
		case 'm':
			unit = time.Minute
		case 'h':
			unit = time.Hour
		case 'd':
			unit = 24 * time.Hour
		case 'w':
			unit = 7 * 24 * time.Hour
		default:
			return 0, fmt.Errorf("unknown duration unit %q: use s, m, h, d or w", rest[i:i+1])
		}
		total += time.Duration(n) * unit
		if total > MaxDuration {
			return 0, errors.New("too large: at most 100 years")
		}
		rest = rest[i+1:]
	}
	return total, nil
}

// Range reads a --since and an --until value (empty: open) into the
// bounds of a store selection: unix microseconds, lo inclusive and hi
// exclusive, 0 for an open side. Both bounds are inclusive as the user
// gives them: --until T keeps an event at exactly T, so hi is T plus one
// microsecond (the store's resolution). sinceName and untilName name the
// flags or parameters in errors ("--since", or "since" for the API).
func Range(sinceName, since, untilName, until string, now time.Time) (lo, hi int64, err error) {
	if since != "" {
		t, err := Parse(since, now)
		if err != nil {
			return 0, 0, &Error{Name: sinceName, Value: since, Err: err}
		}
		lo = max(t.UnixMicro(), 1) // 0 would mean open
	}
	if until != "" {
		t, err := Parse(until, now)
		if err != nil {
			return 0, 0, &Error{Name: untilName, Value: until, Err: err}
		}
		hi = max(t.UnixMicro()+1, 1)
	}
	if lo != 0 && hi != 0 && hi <= lo {
		return 0, 0, &Error{Name: untilName, Value: until, Err: fmt.Errorf("is before %s %s", sinceName, since)}
	}
	return lo, hi, nil
}

// Error is a bad time given for a named flag or parameter.
type Error struct {
	// Name is the flag or parameter, as the user wrote it (--since, since).
	Name string
	// Value is what was given.
	Value string
	// Err says what is wrong.
	Err error
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s %q: %v", e.Name, e.Value, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }
