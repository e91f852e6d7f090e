package query

import (
	"slices"
	"strings"
)

// eventKeys are the JSON keys of an audit event that each field's values
// come from (by canonical name, lower case). The cluster is the store's,
// in no key.
var eventKeys = map[string][]string{
	"user": {"user"}, "group": {"user"}, "user.uid": {"user"}, "user.extra": {"user"},
	"as": {"impersonatedUser"}, "as.group": {"impersonatedUser"}, "as.uid": {"impersonatedUser"}, "as.extra": {"impersonatedUser"},
	"verb":     {"verb"},
	"resource": {"objectRef"}, "subresource": {"objectRef"}, "ns": {"objectRef"}, "name": {"objectRef"},
	"apigroup": {"objectRef"}, "apiversion": {"objectRef"}, "objectref.uid": {"objectRef"}, "objectref.resourceversion": {"objectRef"},
	"code": {"responseStatus"}, "status": {"responseStatus"}, "reason": {"responseStatus"}, "message": {"responseStatus"},
	"ip": {"sourceIPs"}, "peer": {"sourceIPs"},
	"ua":    {"userAgent"},
	"level": {"level"}, "stage": {"stage"}, "uri": {"requestURI"}, "auditid": {"auditID"},
	"decision": {"annotations"}, "annotation": {"annotations"},
	"time":                    {"stageTimestamp", "requestReceivedTimestamp"},
	"received":                {"requestReceivedTimestamp"},
	"impersonationconstraint": {"authenticationMetadata"},
	"requestobject":           {"requestObject"}, "responseobject": {"responseObject"},
}

// freeTextKeys are the keys free text is looked for in (FreeTextFields).
var freeTextKeys = []string{"requestURI", "userAgent", "user", "impersonatedUser", "objectRef", "responseStatus",
	"annotations", "requestObject", "responseObject"}

// EventKeys returns the JSON keys of an audit event that f reads, in no
// particular order: f matches an event as it matches the event's fields of
// those keys alone (audit.StoredFields decodes them), so a store can decide
// f on the text of an event without decoding all of it. ok is false when f
// reads what no key holds (the cluster).
func (f *Filter) EventKeys() (keys []string, ok bool) {
	ok = true
	add := func(ks ...string) {
		for _, k := range ks {
			if !slices.Contains(keys, k) {
				keys = append(keys, k)
			}
		}
	}
	Walk(f.expr, func(e Expr) bool {
		switch e := e.(type) {
		case *Cmp:
			ks, known := eventKeys[strings.ToLower(e.Field.Name)]
			if !known {
				ok = false
			}
			add(ks...)
		case *Text:
			add(freeTextKeys...)
		}
		return true
	})
	if !ok {
		return nil, false
	}
	return keys, true
}
