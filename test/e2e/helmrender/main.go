// Command helmrender renders a Helm chart as `helm template` would, with
// Helm's own engine (helm.sh/helm/v4), and prints the manifests as YAML
// documents in template-name order. test/e2e runs it to compare the chart
// with `kubetrail setup deploy` and to apply it with kubectl.
//
// It is its own module so that Helm's dependencies stay out of test/e2e's
// go.mod, which pins the kube-apiserver and etcd that build.sh builds:
// requiring Helm there would raise golang.org/x/*, gRPC and genproto under
// the API server and force its rebuild.
//
// Usage: helmrender [-json] CHART_DIR NAMESPACE [VALUES.yaml]
//
// With -json the objects are printed as one JSON v1 List instead, so the
// test reads them without a YAML library of its own.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"

	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/engine"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "helmrender:", err)
		os.Exit(1)
	}
}

func run(argv []string) error {
	fl := flag.NewFlagSet("helmrender", flag.ContinueOnError)
	asJSON := fl.Bool("json", false, "print one JSON v1 List")
	if err := fl.Parse(argv); err != nil {
		return err
	}
	args := fl.Args()
	if len(args) < 2 || len(args) > 3 {
		return fmt.Errorf("usage: helmrender [-json] CHART_DIR NAMESPACE [VALUES.yaml]")
	}
	chrt, err := loader.LoadDir(args[0])
	if err != nil {
		return fmt.Errorf("load chart %s: %w", args[0], err)
	}
	vals := map[string]any{}
	if len(args) == 3 {
		b, err := os.ReadFile(args[2])
		if err != nil {
			return err
		}
		if vals, err = common.ReadValues(b); err != nil {
			return fmt.Errorf("%s: %w", args[2], err)
		}
	}
	opts := common.ReleaseOptions{Name: "kubetrail", Namespace: args[1], IsInstall: true}
	top, err := util.ToRenderValues(chrt, vals, opts, common.DefaultCapabilities)
	if err != nil {
		return err
	}
	out, err := engine.Render(chrt, top)
	if err != nil {
		return err
	}
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range out {
			if !yield(n) {
				return
			}
		}
	})
	var items []any
	for _, n := range names {
		if strings.HasSuffix(n, "NOTES.txt") || strings.TrimSpace(out[n]) == "" {
			continue
		}
		if !*asJSON {
			fmt.Printf("---\n# Source: %s\n%s\n", n, strings.TrimSpace(out[n]))
			continue
		}
		// One object a template here; sigs.k8s.io/yaml reads YAML as
		// kubectl does.
		var obj any
		if err := yaml.Unmarshal([]byte(out[n]), &obj); err != nil {
			return fmt.Errorf("%s: %w", n, err)
		}
		if obj != nil {
			items = append(items, obj)
		}
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"apiVersion": "v1", "kind": "List", "items": items})
	}
	return nil
}
