// Package builtin holds kubetrail's built-in detection pack: native rules
// written for kubetrail (pack.yaml), on by default in `kubetrail detect`.
// docs/detection.md documents each rule and what else fires it.
package builtin

import (
	_ "embed"
	"fmt"

	"github.com/kubetrail/kubetrail/internal/rules"
	"github.com/kubetrail/kubetrail/internal/rules/native"
)

//go:embed pack.yaml
var pack []byte

// FileName is the name the pack's problems and rules are reported under.
const FileName = "builtin:pack.yaml"

// Rules compiles the pack. It panics if the pack does not load: the pack
// is part of the binary and its tests load it.
func Rules() []*native.Rule {
	ev, probs := native.Load(nil, rules.File{Name: FileName, Data: pack})
	for _, p := range probs {
		panic(fmt.Sprintf("BUG: the built-in pack does not load: %s", p))
	}
	return ev.Compiled()
}
