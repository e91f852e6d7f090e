package forward

import (
	"context"
	"fmt"

	"github.com/kubetrail/kubetrail/internal/alert"
	"github.com/kubetrail/kubetrail/internal/alert/output"
	"github.com/kubetrail/kubetrail/internal/syslog"
)

// SDID is the structured-data ID of forwarded events: 32473 is the
// private enterprise number RFC 5612 sets aside for documentation, as
// alert outputs use (docs/adr/0009).
const SDID = "audit@32473"

// syslogDest sends one RFC 5424 message per event, octet-counted, with
// the stored event JSON as MSG.
type syslogDest struct {
	client   *syslog.Client
	facility int
	host     string
	app      string
	msgs     [][]byte
	buf      []byte
}

func newSyslog(t *alert.Target, env Env) (Sender, error) {
	client, err := output.SyslogClient(t, env.TLS)
	if err != nil {
		return nil, err
	}
	d := &syslogDest{client: client, facility: 10, host: env.Hostname, app: "kubetrail"}
	if f := t.Param("facility"); f != "" {
		n, ok := syslog.ParseFacility(f)
		if !ok {
			return nil, fmt.Errorf("facility=%q: want a name such as authpriv or local0, or 0 to 23", f)
		}
		d.facility = n
	}
	if a := t.Param("app_name"); a != "" {
		d.app = a
	}
	return d, nil
}

func (d *syslogDest) Send(ctx context.Context, evs []Event) error {
	d.msgs, d.buf = d.msgs[:0], d.buf[:0]
	starts := make([]int, 0, len(evs)+1)
	for i := range evs {
		starts = append(starts, len(d.buf))
		d.buf = syslog.Append(d.buf, Message(&evs[i], d.facility, d.host, d.app))
	}
	starts = append(starts, len(d.buf))
	for i := range evs {
		d.msgs = append(d.msgs, d.buf[starts[i]:starts[i+1]])
	}
	return d.client.Send(ctx, d.msgs...)
}

// Message is the syslog message of an event: TIMESTAMP its
// stageTimestamp, MSGID "audit", the cluster, auditID and stage as
// structured data (for routing without parsing JSON), and the stored
// event JSON as MSG, newlines and all: octet counting carries it whole.
func Message(e *Event, facility int, host, app string) *syslog.Message {
	p := []syslog.Param{{Name: "cluster", Value: e.Cluster}, {Name: "auditID", Value: e.Ev.AuditID}, {Name: "stage", Value: string(e.Ev.Stage)}}
	return &syslog.Message{Facility: facility, Severity: syslog.Info, Time: e.Time(), Hostname: host, AppName: app,
		MsgID: "audit", Data: []syslog.Element{{ID: SDID, Params: p}}, Msg: string(e.Raw)}
}

func (d *syslogDest) Close() error { return d.client.Close() }
