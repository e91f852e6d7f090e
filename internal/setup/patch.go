package setup

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"
)

// PatchOptions says how to enable auditing in a kube-apiserver manifest.
type PatchOptions struct {
	Policy        string // --audit-policy-file, required
	LogPath       string // --audit-log-path, required
	MaxAge        int    // --audit-log-maxage
	MaxBackup     int    // --audit-log-maxbackup
	MaxSize       int    // --audit-log-maxsize
	WebhookConfig string // --audit-webhook-config-file, optional
}

// PatchManifest returns the manifest with auditing enabled as opt says:
// the --audit-* flags set (replaced when present, added otherwise) in the
// kube-apiserver container's command (or args, when the flags are there),
// hostPath volumes and volumeMounts for the policy, the webhook config and
// the log folder (reusing those already there for the same paths). It
// edits the YAML node tree, so comments and key order are kept; the result
// is encoded with an indent of 2. notes tell what could not be kept as it
// was. Patching the result again changes nothing.
func PatchManifest(data []byte, opt PatchOptions) (out []byte, notes []string, err error) {
	if opt.Policy == "" || opt.LogPath == "" {
		return nil, nil, errors.New("the policy file and the log path are required")
	}
	for _, p := range []string{opt.Policy, opt.LogPath, opt.WebhookConfig} {
		if p != "" && !path.IsAbs(p) {
			return nil, nil, fmt.Errorf("%q: paths in the manifest must be absolute", p)
		}
	}
	if opt.LogPath == "-" {
		return nil, nil, errors.New("--audit-log-path=- needs no volumes; give a file path")
	}
	if opt.MaxAge < 0 || opt.MaxBackup < 0 || opt.MaxSize < 0 {
		return nil, nil, errors.New("rotation values must not be negative")
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil, errors.New("empty manifest")
		}
		return nil, nil, err
	}
	var extra yaml.Node
	if dec.Decode(&extra) == nil {
		return nil, nil, errors.New("the manifest holds more than one YAML document")
	}
	root := deref(&doc)
	if root.Kind == yaml.DocumentNode && len(root.Content) > 0 {
		root = deref(root.Content[0])
	}
	spec := get(root, "spec")
	if spec == nil || spec.Kind != yaml.MappingNode {
		return nil, nil, errors.New("no spec: mapping in the manifest")
	}
	c := &checker{}
	ctr := c.apiserverContainer(get(spec, "containers"))
	if ctr == nil {
		return nil, nil, errors.New("no kube-apiserver container in spec.containers")
	}

	// Flags.
	flags := [][2]string{
		{"audit-policy-file", opt.Policy},
		{"audit-log-path", opt.LogPath},
		{"audit-log-maxage", strconv.Itoa(opt.MaxAge)},
		{"audit-log-maxbackup", strconv.Itoa(opt.MaxBackup)},
		{"audit-log-maxsize", strconv.Itoa(opt.MaxSize)},
	}
	if opt.WebhookConfig != "" {
		flags = append(flags, [2]string{"audit-webhook-config-file", opt.WebhookConfig})
	}
	target, err := flagSeq(ctr)
	if err != nil {
		return nil, nil, err
	}
	for _, f := range flags {
		setFlag(ctr, target, f[0], f[1])
	}

	// Volumes and mounts.
	vols := ensureSeq(spec, "volumes")
	mounts := ensureSeq(ctr, "volumeMounts")
	addMount(vols, mounts, "audit-policy", opt.Policy, opt.Policy, "File", true)
	if opt.WebhookConfig != "" {
		addMount(vols, mounts, "audit-webhook", opt.WebhookConfig, opt.WebhookConfig, "File", true)
	}
	dir := path.Dir(opt.LogPath)
	addMount(vols, mounts, "audit-log", dir, dir, "DirectoryOrCreate", false)

	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	compact, ind := indentStyle(data)
	if compact {
		enc.CompactSeqIndent()
	}
	if ind != 0 && ind != 2 {
		notes = append(notes, fmt.Sprintf("the manifest was indented by %d spaces; it is rewritten with 2", ind))
	}
	if err := enc.Encode(&doc); err != nil {
		return nil, nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, nil, err
	}
	return buf.Bytes(), notes, nil
}

var (
	keyLine = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^( *)[^ #-][^:]*:\s*(#.*)?$`) })
	seqLine = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^( *)- `) })
	indLine = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^( +)[^ -#]`) })
)

// indentStyle tells whether the manifest writes a block sequence at its
// key's indentation ("key:\n- item", as kubeadm does) and the first
// indentation of a nested mapping key (0 when unknown).
func indentStyle(data []byte) (compact bool, indent int) {
	lines := strings.Split(string(data), "\n")
	compactSeen, indentedSeen := false, false
	for i := 0; i+1 < len(lines); i++ {
		if m := keyLine().FindStringSubmatch(lines[i]); m != nil {
			if s := seqLine().FindStringSubmatch(lines[i+1]); s != nil {
				if len(s[1]) == len(m[1]) {
					compactSeen = true
				} else {
					indentedSeen = true
				}
			} else if indent == 0 && len(m[1]) == 0 {
				if n := indLine().FindStringSubmatch(lines[i+1]); n != nil {
					indent = len(n[1])
				}
			}
		}
	}
	return compactSeen || !indentedSeen, indent
}

// flagSeq picks the sequence the flags go in: args when it holds flags (or
// when command is only the binary and args exists), command otherwise.
func flagSeq(ctr *yaml.Node) (*yaml.Node, error) {
	cmd, args := get(ctr, "command"), get(ctr, "args")
	if args != nil && args.Kind == yaml.SequenceNode {
		for _, n := range args.Content {
			if strings.HasPrefix(n.Value, "--") {
				return args, nil
			}
		}
		if cmd == nil || len(cmd.Content) <= 1 {
			return args, nil
		}
	}
	if cmd == nil || cmd.Kind != yaml.SequenceNode {
		return nil, errors.New("the kube-apiserver container has no command: or args: list")
	}
	return cmd, nil
}

func str(v string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: v}
}

// setFlag sets --name=value: the first occurrence in command or args is
// rewritten, later ones are removed; when there is none the flag goes in
// target, before the first flag that sorts after it.
func setFlag(ctr, target *yaml.Node, name, value string) {
	want := "--" + name + "=" + value
	found := false
	for _, key := range []string{"command", "args"} {
		seq := get(ctr, key)
		if seq == nil || seq.Kind != yaml.SequenceNode {
			continue
		}
		var keep []*yaml.Node
		for i := 0; i < len(seq.Content); i++ {
			n := seq.Content[i]
			v := n.Value
			if v != "--"+name && !strings.HasPrefix(v, "--"+name+"=") {
				keep = append(keep, n)
				continue
			}
			if v == "--"+name && i+1 < len(seq.Content) && !strings.HasPrefix(seq.Content[i+1].Value, "-") {
				i++ // the value in the next item goes too
			}
			if found {
				continue
			}
			found = true
			if n.Value != want {
				n.Value, n.Tag, n.Style = want, "!!str", 0
			}
			keep = append(keep, n)
		}
		seq.Content = keep
	}
	if found {
		return
	}
	// Keep sorted flags (as kubeadm writes them) sorted; otherwise put
	// the flag after the last --audit-* one, or at the end.
	at, sorted, prev := len(target.Content), true, ""
	for _, n := range target.Content {
		if strings.HasPrefix(n.Value, "--") {
			if n.Value < prev {
				sorted = false
			}
			prev = n.Value
		}
	}
	for i, n := range target.Content {
		if sorted && strings.HasPrefix(n.Value, "--") && n.Value > want {
			at = i
			break
		}
		if !sorted && strings.HasPrefix(n.Value, "--audit-") {
			at = i + 1
		}
	}
	target.Content = append(target.Content[:at], append([]*yaml.Node{str(want)}, target.Content[at:]...)...)
}

// ensureSeq returns mapping m's sequence key, adding an empty block one.
func ensureSeq(m *yaml.Node, key string) *yaml.Node {
	if s := get(m, key); s != nil && s.Kind == yaml.SequenceNode {
		return s
	}
	s := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key { // null or some other kind: replace it
			m.Content[i+1] = s
			return s
		}
	}
	m.Content = append(m.Content, str(key), s)
	return s
}

// setKey sets mapping m's key to a scalar value, adding it at the end.
func setKey(m *yaml.Node, key, value, tag string) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			v := m.Content[i+1]
			if v.Kind == yaml.ScalarNode && v.Value == value {
				return
			}
			m.Content[i+1] = &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: value}
			return
		}
	}
	m.Content = append(m.Content, str(key), &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: value})
}

// addMount makes sure mountPath is mounted from a hostPath volume of type
// hpType, readOnly or writable. A mount at the same path is reused with
// its volume; otherwise a volume for the same host path is reused;
// otherwise both are added, named base (or base-2, ...).
func addMount(vols, mounts *yaml.Node, base, hostPath, mountPath, hpType string, readOnly bool) {
	clean := path.Clean(mountPath)
	var m, v *yaml.Node
	for _, it := range mounts.Content {
		if p := get(it, "mountPath"); p != nil && path.Clean(p.Value) == clean {
			m = it
			break
		}
	}
	name := ""
	if m != nil {
		if n := get(m, "name"); n != nil {
			name = n.Value
		}
		for _, it := range vols.Content {
			if n := get(it, "name"); n != nil && name != "" && n.Value == name {
				v = it
				break
			}
		}
	}
	if v == nil {
		for _, it := range vols.Content {
			hp := get(it, "hostPath")
			if p := get(hp, "path"); p != nil && path.Clean(p.Value) == path.Clean(hostPath) {
				if n := get(it, "name"); m == nil && n != nil && n.Value != "" {
					name = n.Value
				}
				v = it
				break
			}
		}
	}
	if name == "" {
		name = base
		for i := 2; taken(vols, mounts, name); i++ {
			name = base + "-" + strconv.Itoa(i)
		}
	}
	if v == nil {
		v = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Content: []*yaml.Node{
			str("hostPath"), {Kind: yaml.MappingNode, Tag: "!!map", Content: []*yaml.Node{
				str("path"), str(hostPath), str("type"), str(hpType)}},
			str("name"), str(name)}}
		vols.Content = append(vols.Content, v)
	} else {
		setKey(v, "name", name, "!!str")
		hp := get(v, "hostPath")
		if hp != nil && hp.Kind == yaml.MappingNode {
			setKey(hp, "type", hpType, "!!str")
		}
	}
	if m == nil {
		m = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Content: []*yaml.Node{
			str("mountPath"), str(mountPath), str("name"), str(name)}}
		mounts.Content = append(mounts.Content, m)
	} else {
		setKey(m, "name", name, "!!str")
	}
	// A misspelled readonly: is what the walkthroughs get wrong; the
	// kubelet ignores it, so it goes.
	for i := 0; i+1 < len(m.Content); i += 2 {
		if k := m.Content[i].Value; k != "readOnly" && strings.EqualFold(k, "readOnly") {
			m.Content = append(m.Content[:i], m.Content[i+2:]...)
			i -= 2
		}
	}
	setKey(m, "readOnly", strconv.FormatBool(readOnly), "!!bool")
}

func taken(vols, mounts *yaml.Node, name string) bool {
	for _, seq := range []*yaml.Node{vols, mounts} {
		for _, it := range seq.Content {
			if n := get(it, "name"); n != nil && n.Value == name {
				return true
			}
		}
	}
	return false
}

// UnifiedDiff returns a unified diff (3 lines of context) of a and b by
// lines, labelled aName and bName; "" when they are equal.
func UnifiedDiff(aName, bName string, a, b []byte) string {
	if bytes.Equal(a, b) {
		return ""
	}
	al, bl := splitLines(a), splitLines(b)
	// LCS table over lines.
	n, m := len(al), len(bl)
	lcs := make([][]int32, n+1)
	for i := range lcs {
		lcs[i] = make([]int32, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if al[i] == bl[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	type op struct {
		kind byte // ' ', '-', '+'
		a, b int  // line indexes in a and b (0-based) before this op
		text string
	}
	var ops []op
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && al[i] == bl[j]:
			ops = append(ops, op{' ', i, j, al[i]})
			i++
			j++
		case i < n && (j == m || lcs[i+1][j] >= lcs[i][j+1]):
			ops = append(ops, op{'-', i, j, al[i]})
			i++
		default:
			ops = append(ops, op{'+', i, j, bl[j]})
			j++
		}
	}
	var out strings.Builder
	fmt.Fprintf(&out, "--- %s\n+++ %s\n", aName, bName)
	const ctx = 3
	for k := 0; k < len(ops); {
		if ops[k].kind == ' ' {
			k++
			continue
		}
		start := max(k-ctx, 0)
		// Extend the hunk while changes are at most 2*ctx lines apart.
		end := k
		for end < len(ops) {
			if ops[end].kind != ' ' {
				end++
				continue
			}
			run := end
			for run < len(ops) && ops[run].kind == ' ' {
				run++
			}
			if run == len(ops) || run-end > 2*ctx {
				end = min(end+ctx, len(ops))
				break
			}
			end = run
		}
		var aCount, bCount int
		for _, o := range ops[start:end] {
			if o.kind != '+' {
				aCount++
			}
			if o.kind != '-' {
				bCount++
			}
		}
		aStart, bStart := ops[start].a+1, ops[start].b+1
		if aCount == 0 {
			aStart--
		}
		if bCount == 0 {
			bStart--
		}
		fmt.Fprintf(&out, "@@ -%s +%s @@\n", hunkRange(aStart, aCount), hunkRange(bStart, bCount))
		for _, o := range ops[start:end] {
			out.WriteByte(o.kind)
			out.WriteString(o.text)
			out.WriteByte('\n')
		}
		k = end
	}
	return out.String()
}

func hunkRange(start, count int) string {
	if count == 1 {
		return strconv.Itoa(start)
	}
	return fmt.Sprintf("%d,%d", start, count)
}

func splitLines(b []byte) []string {
	s := strings.TrimSuffix(string(b), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// WriteManifest replaces file with data atomically (a temporary file in
// the same folder renamed over it, with the original's mode), after
// copying the original to .FILE.kubetrail-backup-TIMESTAMP beside it with
// mode 0600. The leading dot matters: the kubelet runs every file in the
// static-pod folder whose name does not start with a dot.
// It returns the backup's name.
func WriteManifest(file string, data []byte, now time.Time) (backup string, err error) {
	st, err := os.Stat(file)
	if err != nil {
		return "", err
	}
	old, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	backup = filepath.Join(filepath.Dir(file), "."+filepath.Base(file)+".kubetrail-backup-"+now.UTC().Format("20060102T150405Z"))
	bf, err := os.OpenFile(backup, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", err
	}
	if _, err := bf.Write(old); err != nil {
		bf.Close()
		return "", err
	}
	if err := bf.Chmod(0o600); err != nil {
		bf.Close()
		return "", err
	}
	if err := bf.Sync(); err != nil {
		bf.Close()
		return "", err
	}
	if err := bf.Close(); err != nil {
		return "", err
	}
	// A leading dot keeps the kubelet from reading the temporary file
	// as a static pod.
	tmp, err := os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+".tmp-*")
	if err != nil {
		return backup, err
	}
	defer os.Remove(tmp.Name()) // after the rename there is nothing to remove
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return backup, err
	}
	if err := tmp.Chmod(st.Mode().Perm()); err != nil {
		tmp.Close()
		return backup, err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return backup, err
	}
	if err := tmp.Close(); err != nil {
		return backup, err
	}
	return backup, os.Rename(tmp.Name(), file)
}
