package forward

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/kubetrail/kubetrail/internal/alert"
)

// otlp sends OTLP/HTTP logs (ExportLogsServiceRequest) in the JSON
// encoding the OTLP specification defines: lowerCamelCase field names,
// 64-bit integers as decimal strings, enums as integers. Each event is a
// log record whose body is the stored event JSON as a string, its time
// the stageTimestamp, one resource per cluster (k8s.cluster.name).
type otlp struct {
	*httpDest
	header   http.Header
	rejected atomic.Uint64
	now      func() time.Time
}

func newOTLP(t *alert.Target, env Env) (Sender, error) {
	h, err := newHTTPDest(t, env)
	if err != nil {
		return nil, err
	}
	o := &otlp{httpDest: h, header: http.Header{}, now: time.Now}
	if h.token != "" {
		o.header.Set("Authorization", "Bearer "+h.token)
	}
	return o, nil
}

func (o *otlp) Counts() (existing, rejected uint64) { return 0, o.rejected.Load() }

type (
	otlpRequest struct {
		ResourceLogs []otlpResourceLogs `json:"resourceLogs"`
	}
	otlpResourceLogs struct {
		Resource  otlpResource    `json:"resource"`
		ScopeLogs []otlpScopeLogs `json:"scopeLogs"`
	}
	otlpResource struct {
		Attributes []otlpKV `json:"attributes"`
	}
	otlpScopeLogs struct {
		Scope      otlpScope    `json:"scope"`
		LogRecords []otlpRecord `json:"logRecords"`
	}
	otlpScope struct {
		Name string `json:"name"`
	}
	otlpRecord struct {
		TimeUnixNano         string    `json:"timeUnixNano"`
		ObservedTimeUnixNano string    `json:"observedTimeUnixNano"`
		SeverityNumber       int       `json:"severityNumber"`
		SeverityText         string    `json:"severityText"`
		Body                 otlpValue `json:"body"`
		Attributes           []otlpKV  `json:"attributes,omitempty"`
	}
	otlpKV struct {
		Key   string    `json:"key"`
		Value otlpValue `json:"value"`
	}
	otlpValue struct {
		StringValue string `json:"stringValue"`
	}
)

// severityInfo is SEVERITY_NUMBER_INFO.
const severityInfo = 9

func (o *otlp) Send(ctx context.Context, evs []Event) error {
	var req otlpRequest
	byCluster := map[string]int{}
	observed := strconv.FormatInt(o.now().UnixNano(), 10)
	for i := range evs {
		e := &evs[i]
		k, ok := byCluster[e.Cluster]
		if !ok {
			k = len(req.ResourceLogs)
			byCluster[e.Cluster] = k
			rl := otlpResourceLogs{Resource: otlpResource{Attributes: []otlpKV{{"service.name", otlpValue{"kube-apiserver"}}}},
				ScopeLogs: []otlpScopeLogs{{Scope: otlpScope{Name: "kubetrail"}}}}
			if e.Cluster != "" {
				rl.Resource.Attributes = append(rl.Resource.Attributes, otlpKV{"k8s.cluster.name", otlpValue{e.Cluster}})
			}
			req.ResourceLogs = append(req.ResourceLogs, rl)
		}
		rec := otlpRecord{TimeUnixNano: strconv.FormatInt(e.Time().UnixNano(), 10), ObservedTimeUnixNano: observed,
			SeverityNumber: severityInfo, SeverityText: "INFO", Body: otlpValue{string(e.Raw)}}
		attr := func(k, v string) {
			if v != "" {
				rec.Attributes = append(rec.Attributes, otlpKV{k, otlpValue{v}})
			}
		}
		attr("k8s.audit.id", e.Ev.AuditID)
		attr("k8s.audit.stage", string(e.Ev.Stage))
		attr("k8s.audit.verb", e.Ev.Verb)
		attr("user.name", e.Ev.User.Username)
		if r := e.Ev.ObjectRef; r != nil {
			attr("k8s.namespace.name", r.Namespace)
			attr("k8s.audit.resource", r.Resource)
		}
		sl := &req.ResourceLogs[k].ScopeLogs[0]
		sl.LogRecords = append(sl.LogRecords, rec)
	}
	body, err := json.Marshal(&req)
	if err != nil {
		return err
	}
	resp, err := o.post(ctx, o.endpoint("/v1/logs"), "application/json", o.header, body)
	if err != nil {
		return err
	}
	// A partial success is final: the spec says not to send the rejected
	// records again. They are counted (and the message logged by the
	// caller's metrics), the rest is delivered.
	var ans struct {
		PartialSuccess struct {
			RejectedLogRecords json.Number `json:"rejectedLogRecords"`
		} `json:"partialSuccess"`
	}
	if len(resp) > 0 && json.Unmarshal(resp, &ans) == nil {
		if n, err := strconv.ParseUint(string(ans.PartialSuccess.RejectedLogRecords), 10, 64); err == nil {
			o.rejected.Add(n)
		}
	}
	return nil
}
