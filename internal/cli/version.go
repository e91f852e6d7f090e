package cli

import (
	"encoding/json"
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// Commit is set at build time (make build: -ldflags "-X
// .../internal/cli.Commit=..."); without it, the commit Go stamped into the
// binary is used, when it did (not with -buildvcs=false).
var Commit = ""

// buildInfo is what the binary knows of its own build.
type buildInfo struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	GoVersion string `json:"goVersion"`
}

// thisBuild reads the version set at build time (Version), and the commit
// the Go toolchain stamped into the binary (vcs.revision, with "-dirty"
// when the work tree had changes); "unknown" when it was not built from a
// checkout.
func thisBuild() buildInfo {
	b := buildInfo{Version: Version, Commit: "unknown", GoVersion: runtime.Version()}
	if Commit != "" {
		b.Commit = Commit
		return b
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		var rev string
		dirty := false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if rev != "" {
			b.Commit = rev
			if dirty {
				b.Commit += "-dirty"
			}
		}
	}
	return b
}

func (b buildInfo) String() string {
	return fmt.Sprintf("kubetrail %s %s %s", b.Version, b.Commit, b.GoVersion)
}

func versionCmd(e *env) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print kubetrail's version, commit and Go version",
		Long: `version prints one line, "kubetrail VERSION COMMIT GOVERSION", the same as
kubetrail --version; -o json prints {"version","commit","goVersion"}.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b := thisBuild()
			switch output {
			case "", "text":
				fmt.Fprintln(e.stdout, b)
			case "json":
				return json.NewEncoder(e.stdout).Encode(b)
			default:
				return fmt.Errorf("-o %q: want text or json", output)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	return cmd
}
