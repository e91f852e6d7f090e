package forward

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/kubetrail/kubetrail/internal/alert"
)

// DefaultIndex is the data stream of Elastic's Kubernetes audit logs
// integration, used when the URL names no index.
const DefaultIndex = "logs-kubernetes.audit_logs-default"

// elastic sends to Elasticsearch's bulk API with the create action (the
// one data streams accept), each document's _id the event's store key:
// a batch sent again creates nothing twice, the copies answer 409 and are
// counted as already there. Items that fail otherwise (429, a shard
// unavailable) are sent again, alone, until they are created.
type elastic struct {
	*httpDest
	index  string
	header http.Header
	// done holds the _ids of the batch being sent that Elasticsearch has
	// already: a Send of the same batch again sends only the others.
	done     map[string]bool
	existing atomic.Uint64
	buf      []byte
}

func newElastic(t *alert.Target, env Env) (Sender, error) {
	h, err := newHTTPDest(t, env)
	if err != nil {
		return nil, err
	}
	index := strings.Trim(h.base.Path, "/")
	if strings.Contains(index, "/") {
		return nil, fmt.Errorf("path %q: want one index or data stream name, such as /%s", h.base.Path, DefaultIndex)
	}
	if index == "" {
		index = DefaultIndex
	}
	e := &elastic{httpDest: h, index: index, header: http.Header{}, done: map[string]bool{}}
	switch {
	case h.token != "":
		e.header.Set("Authorization", "ApiKey "+h.token)
	case h.hasUser:
		e.header.Set("Authorization", e.basicAuth())
	}
	e.base.Path = "/_bulk"
	return e, nil
}

func (e *elastic) Counts() (existing, rejected uint64) { return e.existing.Load(), 0 }

func (e *elastic) Send(ctx context.Context, evs []Event) error {
	ids := make([]string, 0, len(evs))
	auditIDs := make([]string, 0, len(evs)) // of ids' events, to name a failed item
	b := e.buf[:0]
	sent := map[string]bool{}
	for i := range evs {
		id := evs[i].Key()
		if e.done[id] || sent[id] {
			continue
		}
		sent[id] = true
		ids = append(ids, id)
		auditIDs = append(auditIDs, evs[i].Ev.AuditID)
		b = fmt.Appendf(b, `{"create":{"_index":%q,"_id":%q}}`+"\n", e.index, id)
		doc, err := elasticDoc(b, &evs[i])
		if err != nil {
			return fmt.Errorf("event %s: %w", evs[i].Pos, err)
		}
		b = append(doc, '\n')
	}
	e.buf = b
	if len(ids) == 0 {
		clear(e.done)
		return nil
	}
	resp, err := e.post(ctx, e.base.String(), "application/x-ndjson", e.header, b)
	if err != nil {
		return err
	}
	var ans struct {
		Errors bool `json:"errors"`
		Items  []map[string]struct {
			ID     string `json:"_id"`
			Status int    `json:"status"`
			Error  *struct {
				Type   string `json:"type"`
				Reason string `json:"reason"`
			} `json:"error"`
		} `json:"items"`
	}
	if err := json.Unmarshal(resp, &ans); err != nil {
		return fmt.Errorf("POST %s: the answer is not a bulk response: %w", e.name, err)
	}
	if len(ans.Items) != len(ids) {
		return fmt.Errorf("POST %s: %d items answered for %d sent", e.name, len(ans.Items), len(ids))
	}
	var failed int
	var first string
	for i, item := range ans.Items {
		r, ok := item["create"]
		switch {
		case !ok:
			return fmt.Errorf("POST %s: item %d is not a create result", e.name, i)
		case r.Status/100 == 2:
			e.done[ids[i]] = true
		case r.Status == http.StatusConflict:
			// Created by an earlier send whose answer was lost.
			e.done[ids[i]] = true
			e.existing.Add(1)
		default:
			failed++
			if first == "" {
				first = fmt.Sprintf("auditID %s: status %d", auditIDs[i], r.Status)
				if r.Error != nil {
					first += ": " + r.Error.Type + ": " + r.Error.Reason
				}
			}
		}
	}
	if failed > 0 {
		return &itemsError{name: e.name, failed: failed, of: len(ids), first: first}
	}
	clear(e.done)
	return nil
}

// itemsError is a bulk answer with failed items: the batch is sent again,
// and only the failed items go out.
type itemsError struct {
	name   string
	failed int
	of     int
	first  string
}

func (e *itemsError) Error() string {
	return fmt.Sprintf("bulk %s: %d of %d items failed (they are sent again), the first: %s", e.name, e.failed, e.of, e.first)
}

// elasticDoc appends the document of an event: the event under
// kubernetes.audit, as Elastic's Kubernetes audit logs integration
// stores it (annotation keys with '.' turned into '_', so that
// "authorization.k8s.io/decision" stays one field), @timestamp its
// stageTimestamp and the cluster as orchestrator.cluster.name (ECS).
func elasticDoc(dst []byte, e *Event) ([]byte, error) {
	dst = append(dst, `{"@timestamp":"`...)
	dst = e.Time().UTC().AppendFormat(dst, "2006-01-02T15:04:05.000000Z")
	dst = append(dst, `","event":{"kind":"event","dataset":"kubernetes.audit_logs"}`...)
	if e.Cluster != "" {
		c, _ := json.Marshal(e.Cluster)
		dst = append(dst, `,"orchestrator":{"cluster":{"name":`...)
		dst = append(dst, c...)
		dst = append(dst, "}}"...)
	}
	dst = append(dst, `,"kubernetes":{"audit":`...)
	raw := e.Raw
	if len(e.Ev.Annotations) > 0 {
		var err error
		if raw, err = underscoreAnnotations(raw, e.Ev.Annotations); err != nil {
			return nil, err
		}
	}
	dst = append(dst, raw...)
	return append(dst, "}}"...), nil
}

// underscoreAnnotations rewrites the event's annotations with '.' in keys
// turned into '_'; the other fields keep their bytes.
func underscoreAnnotations(raw []byte, ann map[string]string) ([]byte, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(raw, &top); err != nil {
		return nil, err
	}
	if _, ok := top["annotations"]; !ok {
		return raw, nil
	}
	b, err := json.Marshal(underscoreKeys(ann))
	if err != nil {
		return nil, err
	}
	top["annotations"] = b
	out, err := json.Marshal(top)
	if err != nil {
		return nil, errors.Join(errors.New("re-encode"), err)
	}
	return out, nil
}

// underscoreKeys returns ann with '.' in keys turned into '_'. Two keys
// may then be one (a.b and a_b): a key with no '.' keeps its name, and a
// rewritten key whose name is taken gets _2, _3... (in the order of the
// keys, so the same event is always the same document); no value is lost.
func underscoreKeys(ann map[string]string) map[string]string {
	m := make(map[string]string, len(ann))
	var dotted []string
	for k, v := range ann {
		if strings.Contains(k, ".") {
			dotted = append(dotted, k)
		} else {
			m[k] = v
		}
	}
	slices.Sort(dotted)
	for _, k := range dotted {
		name := strings.ReplaceAll(k, ".", "_")
		for n := 2; ; n++ {
			if _, taken := m[name]; !taken {
				break
			}
			name = fmt.Sprintf("%s_%d", strings.ReplaceAll(k, ".", "_"), n)
		}
		m[name] = ann[k]
	}
	return m
}
