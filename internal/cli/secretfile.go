package cli

import (
	"fmt"
	"io/fs"
	"os"
	"runtime"
)

// checkSecretFile refuses a file holding a secret (bearer tokens, a
// private key) that anyone but its owner may read or change: a token that
// every local user can read is every local user's token, and one they can
// write lets them choose it. The message names the file, its mode and the
// command that fixes it.
func checkSecretFile(flag, path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("%s: %w", flag, err)
	}
	return checkSecretMode(flag, path, fi.Mode())
}

// checkSecretMode is checkSecretFile on a mode already read, for a file the
// caller has open (so the mode checked is the file's that is read).
func checkSecretMode(flag, path string, mode fs.FileMode) error {
	// Windows has no such permission bits; Go makes them up.
	if runtime.GOOS == "windows" || mode.Perm()&0o077 == 0 {
		return nil
	}
	who := "group and others"
	switch {
	case mode.Perm()&0o070 == 0:
		who = "others"
	case mode.Perm()&0o007 == 0:
		who = "its group"
	}
	return fmt.Errorf("%s %s: mode %#o lets %s at a secret; run: chmod 600 %s (for a Kubernetes Secret volume, set defaultMode: 0400)",
		flag, path, mode.Perm(), who, path)
}
