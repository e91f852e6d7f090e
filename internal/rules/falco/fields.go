package falco

import (
	"encoding/base64"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/rules"
)

// This file is the field table: every field the k8saudit and json plugins
// document (plus Falco's evt.* time fields), each with how it is read from
// a kubetrail event. The semantics follow the plugins' documentation and
// extraction behaviour: a value the event does not have is "not
// available" (every comparison on it is false, exists is false, output
// prints <NA>), and a list field with no values is not available either.

// argKind says what argument a field takes.
type argKind int

const (
	argNone        argKind = iota
	argIndex               // optional [N]: only the Nth element
	argKeyRequired         // required [key]
)

// fieldSpec describes one field.
type fieldSpec struct {
	name string
	// list fields hold several values; Falco allows only exists, in and
	// intersects on them.
	list bool
	// numeric fields compare as unsigned integers.
	numeric bool
	arg     argKind
	get     func(c *evalCtx, f *fieldInst) ([]string, bool)
}

// fieldInst is a field as a rule uses it: its spec and argument.
type fieldInst struct {
	spec  *fieldSpec
	text  string // as written, argument included ("ka.uri.param[command]")
	arg   string
	index int      // the [N] of an argIndex field, or -1
	toks  []string // a JSON pointer argument, split
	trans []string // transformers, outermost first
}

// evalCtx is what extraction needs while one event is evaluated. Values
// returned by an extractor live in its buffers until the next extraction.
type evalCtx struct {
	e    *rules.Event
	ev   *audit.Event
	one  [1]string
	many []string
	// pointers caches json.value lookups: most rules start with the
	// kevt macro, jevt.value[/stage], and one lookup serves them all.
	pointers []pointerValue
}

type pointerValue struct {
	f  *fieldInst
	s  string
	ok bool
}

// pointer is json.value[...]: the value at a JSON pointer of the event.
func (c *evalCtx) pointer(f *fieldInst) ([]string, bool) {
	for _, p := range c.pointers {
		if p.f == f {
			if !p.ok {
				return nil, false
			}
			return c.single(p.s)
		}
	}
	v, ok := jsonPointer(c.e.Raw, f.toks)
	p := pointerValue{f: f, ok: ok}
	if ok {
		p.s = jsonText(v)
	}
	c.pointers = append(c.pointers, p)
	if !ok {
		return nil, false
	}
	return c.single(p.s)
}

func (c *evalCtx) single(s string) ([]string, bool) {
	c.one[0] = s
	return c.one[:], true
}

// nonEmpty is a scalar read from the decoded event, where an empty string
// means the member was absent (the event model omits empty members).
func (c *evalCtx) nonEmpty(s string) ([]string, bool) {
	if s == "" {
		return nil, false
	}
	return c.single(s)
}

// strs returns a list value, or not available when it is empty.
func (c *evalCtx) strs(vs []string, idx int) ([]string, bool) {
	if idx >= 0 {
		if idx >= len(vs) {
			return nil, false
		}
		return c.single(vs[idx])
	}
	if len(vs) == 0 {
		return nil, false
	}
	return vs, true
}

func (c *evalCtx) objectRef() *audit.ObjectReference {
	if c.ev.ObjectRef == nil {
		return &audit.ObjectReference{}
	}
	return c.ev.ObjectRef
}

func (c *evalCtx) annotation(k string) ([]string, bool) {
	v, ok := c.ev.Annotations[k]
	if !ok {
		return nil, false
	}
	return c.single(v)
}

// fromRequest reads requestObject.<keys>, rendered as the plugin does.
func (c *evalCtx) fromRequest(keys ...string) ([]string, bool) {
	v, ok := jsonPath(c.ev.RequestObject, keys...)
	if !ok {
		return nil, false
	}
	return c.single(jsonText(v))
}

// listFromRequest reads the array requestObject.<keys>, each element
// rendered as text.
func (c *evalCtx) listFromRequest(keys ...string) ([]string, bool) {
	v, ok := jsonPath(c.ev.RequestObject, keys...)
	if !ok || jsonKind(v) != '[' {
		return nil, false
	}
	c.many = c.many[:0]
	jsonEach(v, func(el []byte) { c.many = append(c.many, jsonText(el)) })
	return c.strs(c.many, -1)
}

// walk collects the values at keys below v the way the k8saudit plugin's
// recursive getter does: every array met on the way is entered element by
// element (only element idx when idx >= 0, and not available when out of
// range); an element without the rest of the path contributes a nil. An
// empty key stands for the value itself.
func walk(v []byte, idx int, keys []string, out [][]byte) ([][]byte, bool) {
	for i, k := range keys {
		if jsonKind(v) == '[' {
			if idx < 0 {
				jsonEach(v, func(el []byte) {
					var ok bool
					var sub [][]byte
					if sub, ok = walk(el, idx, keys[i:], nil); ok {
						out = append(out, sub...)
					} else {
						out = append(out, nil)
					}
				})
				return out, true
			}
			el, ok := jsonIndex(v, idx)
			if !ok {
				return out, false
			}
			v = el
		}
		if k == "" {
			continue
		}
		var ok bool
		if v, ok = jsonMember(v, k); !ok {
			return out, false
		}
	}
	return append(out, v), true
}

// walkStrings is walk below requestObject with missing values skipped.
func (c *evalCtx) walkStrings(idx int, keys ...string) ([]string, bool) {
	vals, ok := walk(c.ev.RequestObject, idx, keys, nil)
	if !ok {
		return nil, false
	}
	c.many = c.many[:0]
	for _, v := range vals {
		if v != nil {
			c.many = append(c.many, jsonText(v))
		}
	}
	return c.strs(c.many, -1)
}

// walkFlat is walkStrings, with array values flattened into their
// elements (a role rule's verbs, a container's command).
func (c *evalCtx) walkFlat(idx int, keys ...string) ([]string, bool) {
	vals, ok := walk(c.ev.RequestObject, idx, keys, nil)
	if !ok {
		return nil, false
	}
	c.many = c.many[:0]
	for _, v := range vals {
		if jsonKind(v) == '[' {
			jsonEach(v, func(el []byte) {
				if jsonKind(el) != 'n' {
					c.many = append(c.many, jsonText(el))
				}
			})
		}
	}
	return c.strs(c.many, -1)
}

// images is a container list's images; one container without an image
// makes the whole field not available, as in the plugin.
func (c *evalCtx) images(list string, idx int, repoOnly bool) ([]string, bool) {
	vals, ok := walk(c.ev.RequestObject, idx, []string{"spec", list, "image"}, nil)
	if !ok {
		return nil, false
	}
	c.many = c.many[:0]
	for _, v := range vals {
		if v == nil {
			return nil, false
		}
		s := jsonText(v)
		if repoOnly {
			s = repository(s)
		}
		c.many = append(c.many, s)
	}
	return c.strs(c.many, -1)
}

// repository is an image reference without its tag and digest.
func repository(image string) string {
	if i := strings.IndexByte(image, ':'); i >= 0 {
		image = image[:i]
	}
	if i := strings.IndexByte(image, '@'); i >= 0 {
		image = image[:i]
	}
	return image
}

// hostPorts is each container port's hostPort, or its containerPort when
// it has none (which is the host port under hostNetwork).
func (c *evalCtx) hostPorts(list string, idx int) ([]string, bool) {
	vals, ok := walk(c.ev.RequestObject, idx, []string{"spec", list, "ports"}, nil)
	if !ok {
		return nil, false
	}
	c.many = c.many[:0]
	for _, ports := range vals {
		jsonEach(ports, func(port []byte) {
			if v, ok := jsonMember(port, "hostPort"); ok {
				c.many = append(c.many, jsonText(v))
			} else if v, ok := jsonMember(port, "containerPort"); ok {
				c.many = append(c.many, jsonText(v))
			}
		})
	}
	return c.strs(c.many, -1)
}

// effective is the plugin's eff_run_as_user/group: each container's
// <key>, or the pod's spec.<key>, or "0". (The plugin reads <key> directly
// under the container and under spec, not under securityContext; kubetrail
// does the same so that rules give Falco's answers.)
func (c *evalCtx) effective(list string, idx int, key string) ([]string, bool) {
	def := "0"
	if v, ok := jsonPath(c.ev.RequestObject, "spec", key); ok {
		def = jsonText(v)
	}
	vals, ok := walk(c.ev.RequestObject, idx, []string{"spec", list, key}, nil)
	if !ok {
		return nil, false
	}
	c.many = c.many[:0]
	for _, v := range vals {
		if v == nil {
			c.many = append(c.many, def)
		} else {
			c.many = append(c.many, jsonText(v))
		}
	}
	return c.strs(c.many, -1)
}

// subjects lists the binding subjects of one kind, as "name" or, with ns,
// "namespace:name".
func (c *evalCtx) subjects(kind string, ns bool) ([]string, bool) {
	v, ok := jsonPath(c.ev.RequestObject, "subjects")
	if !ok {
		return nil, false
	}
	c.many = c.many[:0]
	jsonEach(v, func(s []byte) {
		k, _ := jsonMember(s, "kind")
		if jsonText(k) != kind {
			return
		}
		n, ok := jsonMember(s, "name")
		if !ok {
			return
		}
		name := jsonText(n)
		if ns {
			nsv, _ := jsonMember(s, "namespace")
			name = jsonText(nsv) + ":" + name
		}
		c.many = append(c.many, name)
	})
	return c.strs(c.many, -1)
}

func (c *evalCtx) eventTime() time.Time {
	if t := c.ev.Time(); !t.IsZero() {
		return t.UTC()
	}
	return time.Time{}
}

func (c *evalCtx) rawTime() ([]string, bool) {
	t := c.eventTime()
	if t.IsZero() {
		return nil, false
	}
	return c.single(strconv.FormatInt(t.UnixNano(), 10))
}

// fieldTable builds the table of every supported field, by name.
func fieldTable() map[string]*fieldSpec {
	t := map[string]*fieldSpec{}
	add := func(name string, list bool, arg argKind, get func(c *evalCtx, f *fieldInst) ([]string, bool)) *fieldSpec {
		s := &fieldSpec{name: name, list: list, arg: arg, get: get}
		t[name] = s
		return s
	}
	scalar := func(name string, get func(c *evalCtx) ([]string, bool)) {
		add(name, false, argNone, func(c *evalCtx, _ *fieldInst) ([]string, bool) { return get(c) })
	}

	scalar("ka.auditid", func(c *evalCtx) ([]string, bool) { return c.nonEmpty(c.ev.AuditID) })
	scalar("ka.stage", func(c *evalCtx) ([]string, bool) { return c.nonEmpty(string(c.ev.Stage)) })
	scalar("ka.auth.decision", func(c *evalCtx) ([]string, bool) { return c.annotation("authorization.k8s.io/decision") })
	scalar("ka.auth.reason", func(c *evalCtx) ([]string, bool) { return c.annotation("authorization.k8s.io/reason") })
	scalar("ka.auth.openshift.decision", func(c *evalCtx) ([]string, bool) { return c.annotation("authorization.openshift.io/decision") })
	scalar("ka.auth.openshift.username", func(c *evalCtx) ([]string, bool) { return c.annotation("authentication.openshift.io/username") })
	scalar("ka.validations.admission.policy.failure", func(c *evalCtx) ([]string, bool) {
		return c.annotation("validation.policy.admission.k8s.io/validation_failure")
	})
	scalar("ka.security.pod.violations", func(c *evalCtx) ([]string, bool) {
		return c.annotation("pod-security.kubernetes.io/audit-violations")
	})
	scalar("ka.user.name", func(c *evalCtx) ([]string, bool) { return c.nonEmpty(c.ev.User.Username) })
	add("ka.user.groups", true, argNone, func(c *evalCtx, _ *fieldInst) ([]string, bool) { return c.strs(c.ev.User.Groups, -1) })
	scalar("ka.impuser.name", func(c *evalCtx) ([]string, bool) {
		if c.ev.ImpersonatedUser == nil {
			return nil, false
		}
		return c.nonEmpty(c.ev.ImpersonatedUser.Username)
	})
	scalar("ka.verb", func(c *evalCtx) ([]string, bool) { return c.nonEmpty(c.ev.Verb) })
	scalar("ka.uri", func(c *evalCtx) ([]string, bool) { return c.nonEmpty(c.ev.RequestURI) })
	add("ka.uri.param", false, argKeyRequired, func(c *evalCtx, f *fieldInst) ([]string, bool) {
		u, err := url.Parse(c.ev.RequestURI)
		if err != nil || c.ev.RequestURI == "" {
			return nil, false
		}
		q, err := url.ParseQuery(u.RawQuery)
		if err != nil || len(q[f.arg]) == 0 {
			return nil, false
		}
		return c.single(q[f.arg][0])
	})
	scalar("ka.target.name", func(c *evalCtx) ([]string, bool) { return c.nonEmpty(c.objectRef().Name) })
	scalar("ka.target.namespace", func(c *evalCtx) ([]string, bool) { return c.nonEmpty(c.objectRef().Namespace) })
	scalar("ka.target.resource", func(c *evalCtx) ([]string, bool) { return c.nonEmpty(c.objectRef().Resource) })
	scalar("ka.target.subresource", func(c *evalCtx) ([]string, bool) { return c.nonEmpty(c.objectRef().Subresource) })
	scalar("ka.target.pod.name", func(c *evalCtx) ([]string, bool) {
		if c.objectRef().Resource != "pods" {
			return nil, false
		}
		return c.nonEmpty(c.objectRef().Name)
	})
	add("ka.req.binding.subjects", true, argNone, func(c *evalCtx, _ *fieldInst) ([]string, bool) { return c.listFromRequest("subjects") })
	add("ka.req.binding.subjects.user_names", true, argNone, func(c *evalCtx, _ *fieldInst) ([]string, bool) { return c.subjects("User", false) })
	add("ka.req.binding.subjects.serviceaccount_names", true, argNone, func(c *evalCtx, _ *fieldInst) ([]string, bool) {
		return c.subjects("ServiceAccount", false)
	})
	add("ka.req.binding.subjects.serviceaccount_ns_names", true, argNone, func(c *evalCtx, _ *fieldInst) ([]string, bool) {
		return c.subjects("ServiceAccount", true)
	})
	add("ka.req.binding.subjects.group_names", true, argNone, func(c *evalCtx, _ *fieldInst) ([]string, bool) { return c.subjects("Group", false) })
	scalar("ka.req.binding.role", func(c *evalCtx) ([]string, bool) { return c.fromRequest("roleRef", "name") })
	// Deprecated in the plugin, which answers "true" whatever the key.
	add("ka.req.binding.subject.has_name", false, argKeyRequired, func(c *evalCtx, _ *fieldInst) ([]string, bool) { return c.single("true") })
	scalar("ka.req.configmap.name", func(c *evalCtx) ([]string, bool) { return c.nonEmpty(c.objectRef().Name) })
	scalar("ka.req.configmap.obj", func(c *evalCtx) ([]string, bool) { return c.fromRequest("data") })

	for _, list := range []string{"containers", "initContainers", "ephemeralContainers"} {
		addContainerFields(add, list)
	}
	scalar("ka.req.container.image", func(c *evalCtx) ([]string, bool) { return c.images("containers", 0, false) })
	scalar("ka.req.container.image.repository", func(c *evalCtx) ([]string, bool) { return c.images("containers", 0, true) })
	scalar("ka.req.container.privileged", func(c *evalCtx) ([]string, bool) {
		vals, ok := walk(c.ev.RequestObject, -1, []string{"spec", "containers", "securityContext", "privileged"}, nil)
		if !ok {
			return nil, false
		}
		for _, v := range vals {
			if string(v) == "true" {
				return c.single("true")
			}
		}
		return c.single("false")
	})
	scalar("ka.req.pod.host_ipc", func(c *evalCtx) ([]string, bool) { return c.fromRequest("spec", "hostIPC") })
	scalar("ka.req.pod.host_network", func(c *evalCtx) ([]string, bool) { return c.fromRequest("spec", "hostNetwork") })
	scalar("ka.req.container.host_network", func(c *evalCtx) ([]string, bool) { return c.fromRequest("spec", "hostNetwork") })
	scalar("ka.req.pod.host_pid", func(c *evalCtx) ([]string, bool) { return c.fromRequest("spec", "hostPID") })
	scalar("ka.req.pod.run_as_user", func(c *evalCtx) ([]string, bool) { return c.fromRequest("spec", "securityContext", "runAsUser") })
	scalar("ka.req.pod.run_as_group", func(c *evalCtx) ([]string, bool) { return c.fromRequest("spec", "securityContext", "runAsGroup") })
	scalar("ka.req.pod.fs_group", func(c *evalCtx) ([]string, bool) { return c.fromRequest("spec", "securityContext", "fsGroup") })
	add("ka.req.pod.supplemental_groups", true, argNone, func(c *evalCtx, _ *fieldInst) ([]string, bool) {
		return c.listFromRequest("spec", "securityContext", "supplementalGroups")
	})
	add("ka.req.role.rules", true, argNone, func(c *evalCtx, _ *fieldInst) ([]string, bool) { return c.listFromRequest("rules") })
	for _, k := range []string{"apiGroups", "nonResourceURLs", "verbs", "resources"} {
		add("ka.req.role.rules."+k, true, argIndex, func(c *evalCtx, f *fieldInst) ([]string, bool) {
			return c.walkFlat(f.index, "rules", k)
		})
	}
	scalar("ka.req.service.type", func(c *evalCtx) ([]string, bool) { return c.fromRequest("spec", "type") })
	add("ka.req.service.ports", true, argIndex, func(c *evalCtx, f *fieldInst) ([]string, bool) { return c.walkStrings(f.index, "spec", "ports") })
	add("ka.req.pod.volumes.hostpath", true, argIndex, func(c *evalCtx, f *fieldInst) ([]string, bool) {
		return c.walkStrings(f.index, "spec", "volumes", "hostPath", "path")
	})
	add("ka.req.volume.hostpath", false, argKeyRequired, func(c *evalCtx, f *fieldInst) ([]string, bool) {
		paths, ok := c.walkStrings(-1, "spec", "volumes", "hostPath", "path")
		if !ok {
			if _, has := jsonPath(c.ev.RequestObject, "spec", "volumes"); !has {
				return nil, false
			}
		}
		prefix, isPrefix := strings.CutSuffix(f.arg, "*")
		for _, p := range paths {
			if isPrefix && strings.HasPrefix(p, prefix) || p == f.arg {
				return c.single("true")
			}
		}
		return c.single("false")
	})
	add("ka.req.pod.volumes.flexvolume_driver", true, argIndex, func(c *evalCtx, f *fieldInst) ([]string, bool) {
		return c.walkStrings(f.index, "spec", "volumes", "flexVolume", "driver")
	})
	add("ka.req.pod.volumes.volume_type", true, argIndex, func(c *evalCtx, f *fieldInst) ([]string, bool) {
		vols, ok := walk(c.ev.RequestObject, f.index, []string{"spec", "volumes", ""}, nil)
		if !ok {
			return nil, false
		}
		c.many = c.many[:0]
		for _, v := range vols {
			jsonKeys(v, func(k string) {
				if k != "name" {
					c.many = append(c.many, k)
				}
			})
		}
		return c.strs(c.many, -1)
	})
	scalar("ka.resp.name", func(c *evalCtx) ([]string, bool) {
		v, ok := jsonPath(c.ev.ResponseObject, "metadata", "name")
		if !ok {
			return nil, false
		}
		return c.single(jsonText(v))
	})
	scalar("ka.response.code", func(c *evalCtx) ([]string, bool) {
		if c.ev.ResponseStatus == nil || c.ev.ResponseStatus.Code == 0 {
			return nil, false
		}
		return c.single(strconv.Itoa(int(c.ev.ResponseStatus.Code)))
	})
	scalar("ka.response.reason", func(c *evalCtx) ([]string, bool) {
		if c.ev.ResponseStatus == nil {
			return nil, false
		}
		return c.nonEmpty(c.ev.ResponseStatus.Reason)
	})
	scalar("ka.useragent", func(c *evalCtx) ([]string, bool) { return c.nonEmpty(c.ev.UserAgent) })
	add("ka.sourceips", true, argIndex, func(c *evalCtx, f *fieldInst) ([]string, bool) { return c.strs(c.ev.SourceIPs, f.index) })
	scalar("ka.cluster.name", func(c *evalCtx) ([]string, bool) { return c.nonEmpty(c.e.Cluster) })

	// The json plugin's fields, and their jevt.* aliases.
	for _, p := range []string{"json", "jevt"} {
		add(p+".value", false, argKeyRequired, func(c *evalCtx, f *fieldInst) ([]string, bool) { return c.pointer(f) })
		scalar(p+".obj", func(c *evalCtx) ([]string, bool) { return c.single(indentJSON(c.e.Raw)) })
		scalar(p+".rawtime", func(c *evalCtx) ([]string, bool) { return c.rawTime() })
	}
	// jevt.time is the legacy (pre-plugin) event time field.
	scalar("jevt.time", func(c *evalCtx) ([]string, bool) { return timeField(c, "15:04:05.000000000") })
	scalar("evt.time", func(c *evalCtx) ([]string, bool) { return timeField(c, "15:04:05.000000000") })
	scalar("evt.time.s", func(c *evalCtx) ([]string, bool) { return timeField(c, "15:04:05") })
	scalar("evt.time.iso8601", func(c *evalCtx) ([]string, bool) { return timeField(c, "2006-01-02T15:04:05.000000000Z") })
	scalar("evt.datetime", func(c *evalCtx) ([]string, bool) { return timeField(c, "2006-01-02 15:04:05.000000000") })
	scalar("evt.source", func(c *evalCtx) ([]string, bool) { return c.single(sourceK8sAudit) })
	for _, n := range []string{"evt.rawtime", "evt.rawtime.s", "evt.rawtime.ns"} {
		div := int64(1)
		if n == "evt.rawtime.s" {
			div = int64(time.Second)
		}
		s := add(n, false, argNone, func(c *evalCtx, _ *fieldInst) ([]string, bool) {
			t := c.eventTime()
			if t.IsZero() {
				return nil, false
			}
			return c.single(strconv.FormatInt(t.UnixNano()/div, 10))
		})
		s.numeric = true
	}
	return t
}

// addContainerFields adds the per-container fields of one of a pod's
// container lists.
func addContainerFields(add func(string, bool, argKind, func(*evalCtx, *fieldInst) ([]string, bool)) *fieldSpec, list string) {
	p := "ka.req.pod." + list + "."
	sc := func(name string, keys ...string) {
		add(p+name, true, argIndex, func(c *evalCtx, f *fieldInst) ([]string, bool) {
			return c.walkStrings(f.index, append([]string{"spec", list, "securityContext"}, keys...)...)
		})
	}
	add(p+"image", true, argIndex, func(c *evalCtx, f *fieldInst) ([]string, bool) { return c.images(list, f.index, false) })
	add(p+"image.repository", true, argIndex, func(c *evalCtx, f *fieldInst) ([]string, bool) { return c.images(list, f.index, true) })
	add(p+"name", true, argIndex, func(c *evalCtx, f *fieldInst) ([]string, bool) { return c.walkStrings(f.index, "spec", list, "name") })
	add(p+"command", true, argIndex, func(c *evalCtx, f *fieldInst) ([]string, bool) { return c.walkFlat(f.index, "spec", list, "command") })
	add(p+"args", true, argIndex, func(c *evalCtx, f *fieldInst) ([]string, bool) { return c.walkFlat(f.index, "spec", list, "args") })
	add(p+"host_port", true, argIndex, func(c *evalCtx, f *fieldInst) ([]string, bool) { return c.hostPorts(list, f.index) })
	sc("privileged", "privileged")
	sc("allow_privilege_escalation", "allowPrivilegeEscalation")
	sc("read_only_fs", "readOnlyRootFilesystem")
	sc("run_as_user", "runAsUser")
	sc("run_as_group", "runAsGroup")
	sc("proc_mount", "procMount")
	sc("add_capabilities", "capabilities", "add")
	add(p+"eff_run_as_user", true, argIndex, func(c *evalCtx, f *fieldInst) ([]string, bool) { return c.effective(list, f.index, "runAsUser") })
	add(p+"eff_run_as_group", true, argIndex, func(c *evalCtx, f *fieldInst) ([]string, bool) { return c.effective(list, f.index, "runAsGroup") })
}

func timeField(c *evalCtx, layout string) ([]string, bool) {
	t := c.eventTime()
	if t.IsZero() {
		return nil, false
	}
	return c.single(t.Format(layout))
}

// applyTransformers applies tolower() and its kin, innermost first.
func applyTransformers(vals []string, trans []string) []string {
	out := append([]string(nil), vals...)
	for i := len(trans) - 1; i >= 0; i-- {
		for j, v := range out {
			switch trans[i] {
			case "tolower":
				out[j] = strings.ToLower(v)
			case "toupper":
				out[j] = strings.ToUpper(v)
			case "b64":
				if d, err := base64.StdEncoding.DecodeString(v); err == nil {
					out[j] = string(d)
				}
			case "basename":
				out[j] = path.Base(v)
			}
		}
	}
	return out
}
