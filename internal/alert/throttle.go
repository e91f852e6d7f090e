package alert

import (
	"slices"
	"strings"
	"time"
)

// groupFields are the fields a Throttle may group by, besides the rule.
var groupFields = []string{"user", "cluster", "namespace", "source", "severity"}

// Throttle groups the notifications of one output: the first alert of a
// rule and key is sent at once and opens a window; the alerts of the same
// rule and key that follow within the window are counted, and when the
// window ends they are sent as one notification (the last of them, with
// Count set to how many it stands for), which opens the next window. A
// burst of a thousand alerts thus makes one notification at once and one
// per window while it lasts. Stored alerts are never grouped.
type Throttle struct {
	// Window is how long a group stays quiet after a notification; 0
	// sends every alert.
	Window time.Duration
	// GroupBy are the fields (user, cluster, namespace, source, severity)
	// that, with the rule, make a group's key.
	GroupBy []string
	// MaxGroups bounds the open windows (and the cursor file); an alert
	// of a new group beyond it is sent at once.
	MaxGroups int
}

// Default throttle settings.
const (
	DefaultThrottleWindow = time.Minute
	DefaultMaxGroups      = 1000
)

// DefaultGroupBy groups by rule, cluster and user: one notification per
// person per rule and window.
var defaultGroupBy = []string{"cluster", "user"}

// group is one open window.
type group struct {
	key   string
	end   time.Time
	count int    // alerts folded since the last notification
	last  *Alert // the newest of them
}

// throttler applies a Throttle. It is not safe for concurrent use.
type throttler struct {
	cfg    Throttle
	groups map[string]*group
}

func newThrottler(cfg Throttle) *throttler {
	if cfg.MaxGroups <= 0 {
		cfg.MaxGroups = DefaultMaxGroups
	}
	return &throttler{cfg: cfg, groups: map[string]*group{}}
}

func (t *throttler) key(a *Alert) string {
	var b strings.Builder
	b.WriteString(a.Rule)
	for _, f := range t.cfg.GroupBy {
		b.WriteByte(0)
		switch f {
		case "user":
			b.WriteString(a.User)
		case "cluster":
			b.WriteString(a.Cluster)
		case "namespace":
			b.WriteString(a.Namespace)
		case "source":
			b.WriteString(a.Source)
		case "severity":
			b.WriteString(a.Severity.String())
		}
	}
	return b.String()
}

// admit reports whether a must be sent now; when not, it is counted in its
// group and will be part of a later notification (due).
func (t *throttler) admit(a *Alert, now time.Time) bool {
	if t.cfg.Window <= 0 {
		return true
	}
	k := t.key(a)
	g := t.groups[k]
	if g != nil && (now.Before(g.end) || g.count > 0) {
		// Within the window, or past it with a notification not yet made:
		// this alert joins it.
		g.count++
		c := *a
		g.last = &c
		return false
	}
	if g == nil && len(t.groups) >= t.cfg.MaxGroups {
		return true
	}
	t.groups[k] = &group{key: k, end: now.Add(t.cfg.Window)}
	return true
}

// due returns the notifications of the windows that ended by now, oldest
// window first, at most max, and opens the next window of each; windows
// that ended quiet are closed.
func (t *throttler) due(now time.Time, max int) []Alert {
	var ended []*group
	for _, g := range t.groups {
		if !now.Before(g.end) {
			ended = append(ended, g)
		}
	}
	slices.SortFunc(ended, func(a, b *group) int {
		if c := a.end.Compare(b.end); c != 0 {
			return c
		}
		return strings.Compare(a.key, b.key)
	})
	var out []Alert
	for _, g := range ended {
		if g.count == 0 {
			delete(t.groups, g.key)
			continue
		}
		if len(out) == max {
			break
		}
		n := *g.last
		n.Count = g.count
		out = append(out, n)
		g.count, g.last, g.end = 0, nil, now.Add(t.cfg.Window)
	}
	return out
}

// next returns when the earliest window ends, zero when none is open.
func (t *throttler) next() time.Time {
	var min time.Time
	for _, g := range t.groups {
		if min.IsZero() || g.end.Before(min) {
			min = g.end
		}
	}
	return min
}
