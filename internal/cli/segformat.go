package cli

import (
	"github.com/spf13/pflag"
)

// addSegmentFormatFlag adds --segment-format, the format of the segments
// a command writes into the data folder. 4 stays the default until
// format 5 reads whole stores as fast (docs/adr/0025-segment-v5.md
// has the measurements); every format is read whatever it says.
func addSegmentFormatFlag(f *pflag.FlagSet, p *int) {
	f.IntVar(p, "segment-format", 4, "format of the segments written into the data folder: 4, or 5 (about 14% smaller, prints scattered events faster, reads a whole store about 1.7 times as slowly; docs/adr/0025); a folder may hold both")
}
