package cli

import (
	"github.com/spf13/pflag"
)

// addSegmentFormatFlag adds --segment-format, the format of the segments
// a command writes into the data folder: 5 since it prints and
// investigates faster in a smaller folder, 4 for a whole-store reader
// that must be fastest (docs/adr/0025-segment-v5.md has the
// measurements); every format is read whatever it says.
func addSegmentFormatFlag(f *pflag.FlagSet, p *int) {
	f.IntVar(p, "segment-format", 5, "format of the segments written into the data folder: 5, or 4 (about 18% larger, prints scattered events and investigates more slowly, exports about 1.4 times and imports about 1.14 times as fast; docs/adr/0025); a folder may hold both")
}
