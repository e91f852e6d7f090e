package cli

import (
	"io/fs"

	"github.com/kubetrail/kubetrail/internal/secretfile"
)

// checkSecretFile refuses a file holding a secret that anyone but its
// owner may read or change (secretfile.Check).
func checkSecretFile(flag, path string) error { return secretfile.Check(flag, path) }

// checkSecretMode is checkSecretFile on a file's information already read
// (secretfile.CheckMode).
func checkSecretMode(flag, path string, fi fs.FileInfo) error {
	return secretfile.CheckMode(flag, path, fi)
}

// secretModeOK says whether a secret file's mode and owner may be used
// (secretfile.ModeOK).
func secretModeOK(perm fs.FileMode, owner, self int) bool {
	return secretfile.ModeOK(perm, owner, self)
}
