package cli

import (
	"github.com/spf13/pflag"

	"github.com/kubetrail/kubetrail/internal/ingest"
)

// addSyslogFlags adds serve's syslog listener flags, which fill c.
func addSyslogFlags(f *pflag.FlagSet, c *ingest.SyslogConfig) {
	f.StringArrayVar(&c.Listen, "syslog-listen", nil, "take audit events as syslog messages (repeatable): tcp://ADDR, tls://ADDR (with --tls-cert/--tls-key; --client-ca makes client certificates required) or udp://ADDR (lossy); RFC 5424 or 3164, octet-counted or newline-framed, the event's JSON as the message. tcp:// and udp:// beyond loopback need --insecure, tls:// needs --client-ca or --insecure")
	f.StringVar(&c.DefaultCluster, "syslog-cluster", "default", `cluster of syslog events whose structured data names none ([`+ingest.SyslogSDID+` cluster="NAME"])`)
	f.IntVar(&c.MaxMessageBytes, "syslog-max-message-bytes", ingest.DefaultSyslogMaxMessageBytes, "largest syslog message taken; a larger frame is skipped, and logged with the sender's address")
	f.IntVar(&c.MaxConns, "syslog-max-connections", ingest.DefaultSyslogMaxConns, "syslog TCP/TLS connections open at once; more wait in the accept backlog")
	f.DurationVar(&c.IdleTimeout, "syslog-idle-timeout", ingest.DefaultSyslogIdleTimeout, "close a syslog connection on which no message starts for this long (senders reconnect)")
}
