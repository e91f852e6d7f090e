package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// sharedRulesets finds the public rule sets (shared/rulesets beside the
// repository, or $KUBETRAIL_SHARED), which are never copied into it.
func sharedRulesets() (string, error) {
	if d := os.Getenv("KUBETRAIL_SHARED"); d != "" {
		return filepath.Join(d, "rulesets"), nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if st, err := os.Stat(filepath.Join(dir, "shared", "rulesets")); err == nil && st.IsDir() {
			return filepath.Join(dir, "shared", "rulesets"), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no shared/rulesets beside the repository or its parents; set KUBETRAIL_SHARED")
		}
		dir = parent
	}
}

// sortedLines returns out's lines, sorted, for comparing alert sets.
func sortedLines(out string) []string {
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) == 1 && lines[0] == "" {
		return nil
	}
	slices.Sort(lines)
	return lines
}

// detection measures `kubetrail detect` over the store and over the log
// file, with the built-in pack and with Falco's and SigmaHQ's rule sets,
// and checks that the store and the file give the same alerts.
func (s *suite) detection(ci int, c corpus) error {
	w := &s.out
	kt := filepath.Join(s.bin, "kubetrail")
	dir := filepath.Join(s.work, "data-import")
	rs, err := sharedRulesets()
	if err != nil {
		return err
	}
	sets := []struct {
		name, what string
		args       []string
	}{
		{"built-in pack", "kubetrail's %d rules", nil},
		{"Falco k8saudit", "Falco's %d k8s_audit rules, rule_matching first", []string{"--rules", filepath.Join(rs, "falco")}},
		{"SigmaHQ + built-in", "SigmaHQ's 16 kubernetes/audit rules and the pack, %d in all", []string{"--rules", filepath.Join(rs, "sigma"), "--builtin"}},
	}
	var packFile, packStore, falcoFile, falcoStore row
	fmt.Fprintf(w, "## Detection, %s events\n\n", c.name)
	fmt.Fprintf(w, "`kubetrail detect -o jsonl` as a new process (median of %d; peak RSS the largest): over the store `kubetrail import` wrote "+
		"(`--data`: with only kubetrail rules, each rule's condition is decided on the store's columns, and an event's text is read only when a rule needs it "+
		"(a body or URI condition the columns cannot decide, a threshold, a sequence, an alert); those reads run ahead of the rules on two goroutines, "+
		"and a segment's columns are read while the rules work through the one before; "+
		"a Sigma or Falco rule is given only the events its prefilter may match, decided on the columns (or the JSON keys it names); "+
		"a Sigma or Falco rule with none makes every event read whole), "+
		"and over the log file without a store. Before a row is written, the alerts of the two are compared as sorted lines: they agree on every row. "+
		"events/s is the corpus's events over the time.\n\n", s.runs)
	fmt.Fprintf(w, "| rules | alerts | detect --data | events/s | peak RSS | detect FILE | events/s | peak RSS |\n|---|---|---|---|---|---|---|---|\n")
	for _, set := range sets {
		store, err := s.measure(s.runs, func() *exec.Cmd {
			return exec.Command(kt, append([]string{"detect", "--data", dir, "-o", "jsonl"}, set.args...)...)
		}, nil)
		if err != nil {
			return err
		}
		file, err := s.measure(s.runs, func() *exec.Cmd {
			return exec.Command(kt, append([]string{"detect", c.path, "-o", "jsonl"}, set.args...)...)
		}, nil)
		if err != nil {
			return err
		}
		a, b := sortedLines(store.out), sortedLines(file.out)
		if !slices.Equal(a, b) {
			return fmt.Errorf("detect with %s: %d alerts from the store, %d from the file, not the same", set.name, len(a), len(b))
		}
		if len(a) == 0 {
			return fmt.Errorf("detect with %s raised no alert on the corpus: the row would measure nothing", set.name)
		}
		n, err := enabledRules(kt, set.args)
		if err != nil {
			return err
		}
		perSec := func(r row) string { return commas(float64(c.events) / r.median.Seconds()) }
		fmt.Fprintf(w, "| %s (%s) | %d | %s | %s | %s | %s | %s | %s |\n", set.name, fmt.Sprintf(set.what, n), len(a),
			dur(store.median), perSec(store), human(store.rss), dur(file.median), perSec(file), human(file.rss))
		s.fig.add("detect, "+set.name+", over the store", ci, fig{kt: store.median, rss: store.rss})
		switch set.name {
		case "built-in pack":
			packFile, packStore = file, store
		case "Falco k8saudit":
			falcoFile, falcoStore = file, store
		}
	}
	fmt.Fprintf(w, "\nFalco's rules, events per second over the %s corpus: %s over the file, %s over the store (an event is read when some rule's prefilter may match it).\n\n",
		c.name, commas(float64(c.events)/falcoFile.median.Seconds()), commas(float64(c.events)/falcoStore.median.Seconds()))
	return s.packBesideJQ(ci, c, packFile, packStore)
}

// enabledRules counts the enabled rules `kubetrail rules list` shows for
// the rule arguments.
func enabledRules(kt string, args []string) (int, error) {
	out, err := exec.Command(kt, append([]string{"rules", "list"}, args...)...).Output()
	if err != nil {
		return 0, fmt.Errorf("kubetrail rules list %s: %w", strings.Join(args, " "), err)
	}
	n := 0
	for i, l := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		if f := strings.Fields(l); i > 0 && len(f) > 2 && f[2] == "true" {
			n++
		}
	}
	if n == 0 {
		return 0, fmt.Errorf("kubetrail rules list %s: no enabled rule in %q", strings.Join(args, " "), out)
	}
	return n, nil
}
