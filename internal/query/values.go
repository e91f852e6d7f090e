package query

import (
	"errors"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kubetrail/kubetrail/internal/timespec"
)

// Time values are read by internal/timespec, as every --since and --until
// is, except that a time before now takes a '-' here (time>=-2h), so that a
// bare number is never mistaken for one:
//
//	2026-01-02T15:04:05Z          RFC 3339, any fractional precision, any zone
//	2026-01-02T15:04:05.123456    no zone: UTC
//	2026-01-02T15:04              minutes, UTC
//	2026-01-02                    midnight UTC
//	-2h, -30m, -7d, -1w, -1d12h   that long before now (s, m, h, d=24h, w=7d)
const timeSyntax = "expected an RFC 3339 time (2026-01-02T15:04:05Z), a date (2026-01-02) or a duration before now (-2h, -30m, -7d)"

// ParseTime reads a time value of the filter language as a comparison
// with time or received does, resolving relative times against now. A
// store that compiles filters to its own language uses it so that times
// mean the same there.
func ParseTime(s string, now time.Time) (time.Time, error) { return parseTime(s, now) }

// parseTime reads a time value, resolving relative times against now.
func parseTime(s string, now time.Time) (time.Time, error) {
	if rest, ok := strings.CutPrefix(s, "-"); ok {
		if rest == "" {
			return time.Time{}, errors.New("expected a duration after '-', such as -2h, -30m or -7d")
		}
		d, err := timespec.ParseDuration(rest)
		if err != nil {
			return time.Time{}, err
		}
		return now.Add(-d), nil
	}
	if t, err := timespec.ParseAbsolute(s); err == nil {
		return t, nil
	}
	return time.Time{}, errors.New(timeSyntax)
}

// parseIPValue reads an IP address or a CIDR prefix. IPv4-mapped IPv6
// addresses become IPv4, and zones are dropped, so that 10.0.0.1,
// ::ffff:10.0.0.1 and 10.0.0.0/8 all compare as one would expect.
func parseIPValue(s string) (addr netip.Addr, prefix netip.Prefix, isPrefix bool, err error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return addr, prefix, false, errors.New("expected an IP address or CIDR (10.0.0.0/8): " + err.Error())
		}
		p = p.Masked()
		if a := p.Addr(); a.Is4In6() {
			if p.Bits() < 96 {
				return addr, prefix, false, errors.New("an IPv4-mapped prefix needs at least 96 bits")
			}
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		return addr, p, true, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return addr, prefix, false, errors.New("expected an IP address or CIDR (10.0.0.0/8): " + err.Error())
	}
	return a.Unmap().WithZone(""), prefix, false, nil
}

// eventAddr parses an IP address from an event. It returns false without
// calling netip.ParseAddr, which allocates its error, for strings that
// cannot be an address (notably the empty string).
func eventAddr(s string) (netip.Addr, bool) {
	if s == "" || len(s) > 64 {
		return netip.Addr{}, false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '%' {
			break
		}
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' || c == '.' || c == ':') {
			return netip.Addr{}, false
		}
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap().WithZone(""), true
}

// NormalizeIP returns the form of an IP address that RequiredValues gives
// for the ip and peer fields (IPv4-mapped IPv6 unmapped, zone dropped, IPv6
// compressed), or "" when s is not an IP address. An index of source IPs
// must be keyed by this form.
func NormalizeIP(s string) string {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return ""
	}
	return a.Unmap().WithZone("").String()
}

// levelOrder gives the audit levels in increasing order of detail.
var levelOrder = [...]string{"None", "Metadata", "Request", "RequestResponse"}

// levelRank returns the position of l in levelOrder, or -1.
func levelRank(l string) int {
	for i, s := range levelOrder {
		if s == l {
			return i
		}
	}
	return -1
}

var stageNames = [...]string{"RequestReceived", "ResponseStarted", "ResponseComplete", "Panic"}

// StageNames returns the stages `stage=` accepts (any other value is an
// error), in their order.
func StageNames() []string { return slices.Clone(stageNames[:]) }

// parseCode reads an HTTP status code.
func parseCode(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > 999 || s[0] == '+' || s[0] == '-' {
		return 0, errors.New("expected an HTTP status code such as 403")
	}
	return n, nil
}
