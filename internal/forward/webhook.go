package forward

import (
	"context"
	"fmt"
	"net/http"

	"github.com/kubetrail/kubetrail/internal/alert"
)

// webhook POSTs each batch as an audit.k8s.io/v1 EventList, the body the
// API server's own webhook backend sends (so any audit webhook receiver,
// another kubetrail serve included, takes it), or as JSON lines.
type webhook struct {
	*httpDest
	jsonl  bool
	header http.Header
	buf    []byte
}

func newWebhook(t *alert.Target, env Env) (Sender, error) {
	h, err := newHTTPDest(t, env)
	if err != nil {
		return nil, err
	}
	w := &webhook{httpDest: h, header: http.Header{}}
	switch f := t.Param("format"); f {
	case "", "eventlist":
	case "jsonl":
		w.jsonl = true
	default:
		return nil, fmt.Errorf("format=%q: want eventlist or jsonl", f)
	}
	switch {
	case h.token != "":
		w.header.Set("Authorization", "Bearer "+h.token)
	case h.hasUser:
		w.header.Set("Authorization", h.basicAuth())
	}
	return w, nil
}

// eventListHead starts an EventList; items are the stored events as they
// are, with their kind and apiVersion (the API server's webhook leaves
// them out of items, and decoders accept both).
const eventListHead = `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[`

func (w *webhook) Send(ctx context.Context, evs []Event) error {
	b := w.buf[:0]
	ct := "application/json"
	if w.jsonl {
		ct = "application/x-ndjson"
		for i := range evs {
			b = append(append(b, evs[i].Raw...), '\n')
		}
	} else {
		b = append(b, eventListHead...)
		for i := range evs {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, evs[i].Raw...)
		}
		b = append(b, "]}"...)
	}
	w.buf = b
	_, err := w.post(ctx, w.base.String(), ct, w.header, b)
	return err
}
