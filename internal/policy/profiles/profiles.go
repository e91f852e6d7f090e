// Package profiles holds the starting audit policies of
// "kubetrail policy init", as audit.k8s.io/v1 Policy YAML files.
package profiles

import (
	"embed"
	"fmt"
	"slices"
	"strings"
)

//go:embed *.yaml
var files embed.FS

// Names lists the profiles, least detail first.
var Names = []string{"minimal", "recommended", "cks", "compliance"}

// Get returns the policy file of the named profile.
func Get(name string) ([]byte, error) {
	if !slices.Contains(Names, name) {
		return nil, fmt.Errorf("unknown profile %q; choose one of %s", name, strings.Join(Names, ", "))
	}
	return files.ReadFile(name + ".yaml")
}
