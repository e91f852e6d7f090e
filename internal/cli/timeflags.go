package cli

import (
	"net/url"
	"time"

	"github.com/spf13/cobra"

	"github.com/kubetrail/kubetrail/internal/timespec"
)

// Every --since and --until is read by internal/timespec, as the HTTP
// API's since and until are, and says the same in its help.
const (
	sinceUsage = "only events at or after this time (inclusive), compared with each event's stageTimestamp: a duration before now (2h, 30m, 7d, 1w, 1d12h), an RFC 3339 time or a date (2026-01-02 is 00:00 UTC)"
	untilUsage = "only events at or before this time (inclusive), compared with each event's stageTimestamp; the same forms as --since"
)

// timeFlags are --since and --until.
type timeFlags struct {
	since, until string
}

func (t *timeFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&t.since, "since", "", sinceUsage)
	cmd.Flags().StringVar(&t.until, "until", "", untilUsage)
}

// bounds reads the flags into a store selection's bounds (see
// timespec.Range): unix microseconds, 0 for an open side.
func (t *timeFlags) bounds(now time.Time) (lo, hi int64, err error) {
	return timespec.Range("--since", t.since, "--until", t.until, now)
}

// setTimeParams sends bounds from timespec.Range to a server as the
// absolute, inclusive times they stand for, so that the server reads "2h"
// as this command did and applies the same bounds.
func setTimeParams(q url.Values, lo, hi int64) {
	if lo != 0 {
		q.Set("since", time.UnixMicro(lo).UTC().Format(time.RFC3339Nano))
	}
	if hi != 0 {
		q.Set("until", time.UnixMicro(hi-1).UTC().Format(time.RFC3339Nano))
	}
}
