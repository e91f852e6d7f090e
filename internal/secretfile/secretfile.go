// Package secretfile checks the files that hold secrets (bearer tokens,
// private keys, passwords) before kubetrail reads them: a file anyone but
// its owner may read or change is refused, with the command that fixes
// it. The CLI and the ClickHouse store's password_file share it.
package secretfile

import (
	"fmt"
	"io/fs"
	"os"
	"runtime"
)

// Check refuses a file holding a secret (bearer tokens, a
// private key) that anyone but its owner may read or change: a token that
// every local user can read is every local user's token, and one they can
// write lets them choose it. The message names the file, its mode and the
// command that fixes it.
func Check(flag, path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("%s: %w", flag, err)
	}
	return CheckMode(flag, path, fi)
}

// CheckMode is Check on a file's information already read,
// for a file the caller has open (so the mode checked is the file's that is
// read).
func CheckMode(flag, path string, fi fs.FileInfo) error {
	mode := fi.Mode()
	// Windows has no such permission bits; Go makes them up.
	if runtime.GOOS == "windows" || ModeOK(mode.Perm(), fileOwner(fi), os.Getuid()) {
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

// ModeOK says whether a secret file of mode perm, owned by uid owner,
// may be used by a process of uid self. Private to its owner is fine. So is,
// for a process that is not root, a file that root owns and shares with its
// group to read only, and with no one else: root chose that group, and it is
// the one way root can hand a secret to a service's user. It is what the
// kubelet makes of a Secret volume under the pod's fsGroup (0440
// root:fsGroup, so a non-root container can read it) and what PostgreSQL
// accepts for a root-owned key (0640). A root process reads such a file as
// its owner, so the group's access serves nothing there and is refused.
func ModeOK(perm fs.FileMode, owner, self int) bool {
	if perm&0o077 == 0 {
		return true
	}
	return owner == 0 && self != 0 && perm&0o037 == 0
}
