package forward

import (
	"context"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/kubetrail/kubetrail/internal/alert"
	"github.com/kubetrail/kubetrail/internal/alert/output"
	"github.com/kubetrail/kubetrail/internal/store/local"
)

// DefaultKafkaTimeout bounds one Send to Kafka when the URL sets no
// timeout: every record of the batch acknowledged, or the Send fails.
const DefaultKafkaTimeout = 30 * time.Second

// validTopic reports whether Kafka accepts name as a topic: 1 to 249 of
// A-Z, a-z, 0-9, '.', '_' and '-'. (A regexp with {1,249} is unrolled
// when compiled: 0.9 ms and 3,000 allocations at every start of every
// command, as a package variable.)
func validTopic(name string) bool {
	if len(name) == 0 || len(name) > 249 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// kafkaDest produces one record per event to a topic: the stored event
// JSON as the value, the event's store key (32 hex digits) as the key, so
// a topic partitioned by key keeps every copy of an event in one
// partition and a consumer can drop the copies; the cluster as a header
// and the stageTimestamp as the record's timestamp. The producer is
// idempotent with acks=all: a record is acknowledged once every in-sync
// replica has it, and the client's own retries within a Send (a lost
// answer, NOT_ENOUGH_REPLICAS_AFTER_APPEND, REQUEST_TIMED_OUT) are
// de-duplicated by the broker.
type kafkaDest struct {
	client  *kgo.Client
	name    string
	topic   string
	timeout time.Duration
	hooks   *kafkaHooks
	// done holds the events of the batch being sent that Kafka has
	// acknowledged: a Send of the same batch again produces only the
	// others (records of a failed partition fail while the others land).
	done map[local.Pos]bool
	// Reused between Sends: kgo lets go of a record once its promise ran,
	// and ProduceSync returns only after every promise ran.
	recs []kgo.Record
	ptrs []*kgo.Record
	idx  []int
	keys []byte
}

func newKafka(t *alert.Target, env Env) (Sender, error) {
	u := t.URL
	if u.Host == "" {
		return nil, errors.New("no broker: want kafka://BROKER[,BROKER...]/TOPIC")
	}
	var brokers []string
	for b := range strings.SplitSeq(u.Host, ",") {
		if b == "" {
			return nil, fmt.Errorf("brokers %q: an empty broker address", u.Host)
		}
		brokers = append(brokers, b)
	}
	topic := strings.TrimPrefix(u.Path, "/")
	if !validTopic(topic) {
		return nil, fmt.Errorf("topic %q: want one topic name of letters, digits, '.', '_' and '-' as the path, such as kafka://broker:9092/k8s-audit", topic)
	}
	timeout := DefaultKafkaTimeout
	if v := t.Param("timeout"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("timeout=%q: want a duration such as 30s", v)
		}
		timeout = d
	}
	// Kafka's default max.message.bytes; a larger event fails every try
	// (MESSAGE_TOO_LARGE) and blocks the destination until both this and
	// the topic's setting are raised.
	maxBytes := int32(1000012)
	if v := t.Param("max_message_bytes"); v != "" {
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil || n < 1024 {
			return nil, fmt.Errorf("max_message_bytes=%q: want a number of bytes from 1024 up, the topic's max.message.bytes", v)
		}
		maxBytes = int32(n)
	}
	hooks := &kafkaHooks{}
	// Idempotent writes are kgo's default (and need acks=all); they are
	// not turned off. A request gets a third of the Send's time from the
	// broker to reach every in-sync replica and another third on the
	// wire, so a hung request is given up and sent again (de-duplicated
	// by the broker) before the Send itself fails.
	opts := []kgo.Opt{
		kgo.SeedBrokers(brokers...),
		kgo.ClientID("kubetrail"),
		kgo.DefaultProduceTopic(topic),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		// Let a Send end at its timeout even with a request in flight:
		// the batch is then sent again, and the one whose answer was
		// lost may arrive twice, as with an HTTP destination.
		kgo.AllowIdempotentProduceCancellation(),
		kgo.ProduceRequestTimeout(timeout / 3),
		kgo.RequestTimeoutOverhead(timeout / 3),
		kgo.RetryTimeout(timeout),
		kgo.ProducerBatchMaxBytes(maxBytes),
		kgo.WithHooks(hooks),
	}
	dial, err := kafkaDialer(t, env, timeout)
	if err != nil {
		return nil, err
	}
	opts = append(opts, dial)
	mech, err := kafkaSASL(t)
	if err != nil {
		return nil, err
	}
	if mech != nil {
		opts = append(opts, kgo.SASL(mech))
	}
	client, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, err
	}
	return &kafkaDest{client: client, name: t.Name(), topic: topic, timeout: timeout, hooks: hooks, done: map[local.Pos]bool{}}, nil
}

// kafkaDialer dials brokers over TCP, or TLS with kafkas:// or tls=true
// (ca: the roots to check them with).
func kafkaDialer(t *alert.Target, env Env, timeout time.Duration) (kgo.Opt, error) {
	tlsOn := t.URL.Scheme == "kafkas"
	switch v := t.Param("tls"); v {
	case "":
	case "true":
		tlsOn = true
	case "false":
		if tlsOn {
			return nil, errors.New("tls=false with kafkas://: use kafka:// for plain TCP")
		}
	default:
		return nil, fmt.Errorf("tls=%q: want true or false", v)
	}
	if t.Param("ca") != "" && !tlsOn {
		return nil, errors.New("ca is for TLS: use kafkas:// or #tls=true")
	}
	dialer := &net.Dialer{Timeout: min(timeout/3, 10*time.Second)}
	if tlsOn {
		cfg, err := output.TLSConfig(t, env.TLS)
		if err != nil {
			return nil, err
		}
		if env.TLS == nil || env.TLS.ServerName == "" {
			// Each broker is checked against its own name (the seeds'
			// and the ones metadata advertises), not the URL's.
			cfg.ServerName = ""
		}
		return kgo.Dialer((&tls.Dialer{NetDialer: dialer, Config: cfg}).DialContext), nil
	}
	return kgo.Dialer(dialer.DialContext), nil
}

// kafkaSASL is the SASL mechanism of the URL: the user from its user
// info, the password from there or from password_file (a file keeps it
// out of process listings and shell history), the mechanism from sasl
// (PLAIN by default).
func kafkaSASL(t *alert.Target) (sasl.Mechanism, error) {
	mech := t.Param("sasl")
	pwFile := t.Param("password_file")
	u := t.URL.User
	if u == nil {
		if mech != "" || pwFile != "" {
			return nil, errors.New("sasl and password_file need a user: kafka://USER@BROKER/TOPIC")
		}
		return nil, nil
	}
	user := u.Username()
	pass, hasPass := u.Password()
	if pwFile != "" {
		if hasPass {
			return nil, errors.New("a password in the URL and a password_file: give one")
		}
		b, err := os.ReadFile(pwFile)
		if err != nil {
			return nil, fmt.Errorf("password_file: %w", err)
		}
		pass = strings.TrimRight(string(b), "\r\n")
		if pass == "" {
			return nil, fmt.Errorf("password_file %s: empty", pwFile)
		}
	}
	switch strings.ToLower(mech) {
	case "", "plain":
		return plain.Auth{User: user, Pass: pass}.AsMechanism(), nil
	case "scram-sha-256":
		return scram.Auth{User: user, Pass: pass}.AsSha256Mechanism(), nil
	case "scram-sha-512":
		return scram.Auth{User: user, Pass: pass}.AsSha512Mechanism(), nil
	default:
		return nil, fmt.Errorf("sasl=%q: want plain, scram-sha-256 or scram-sha-512", mech)
	}
}

func (k *kafkaDest) Send(ctx context.Context, evs []Event) error {
	ctx, cancel := context.WithTimeout(ctx, k.timeout)
	defer cancel()
	k.recs, k.ptrs, k.idx = k.recs[:0], k.ptrs[:0], k.idx[:0]
	k.keys = k.keys[:0]
	for i := range evs {
		e := &evs[i]
		if k.done[e.Pos] {
			continue
		}
		kb := local.KeyOf(e.Cluster, e.Raw)
		start := len(k.keys)
		k.keys = hex.AppendEncode(k.keys, kb[:])
		k.recs = append(k.recs, kgo.Record{
			Topic:     k.topic,
			Key:       k.keys[start:len(k.keys):len(k.keys)],
			Value:     e.Raw,
			Timestamp: e.Time(),
			Headers:   []kgo.RecordHeader{{Key: "cluster", Value: []byte(e.Cluster)}},
		})
		k.idx = append(k.idx, i)
	}
	if len(k.recs) == 0 {
		clear(k.done)
		return nil
	}
	for i := range k.recs {
		k.ptrs = append(k.ptrs, &k.recs[i])
	}
	k.hooks.reset()
	results := k.client.ProduceSync(ctx, k.ptrs...)
	var failed map[*kgo.Record]error
	for _, r := range results {
		if r.Err != nil {
			if failed == nil {
				failed = map[*kgo.Record]error{}
			}
			failed[r.Record] = r.Err
		}
	}
	var first error
	var firstID string
	for i, r := range k.ptrs {
		if err, ok := failed[r]; ok {
			if first == nil {
				first, firstID = err, evs[k.idx[i]].Ev.AuditID
			}
			continue
		}
		k.done[evs[k.idx[i]].Pos] = true
	}
	clear(k.recs) // drop the references to evs
	if first == nil {
		clear(k.done)
		return nil
	}
	if errors.Is(first, context.DeadlineExceeded) && ctx.Err() != nil {
		first = fmt.Errorf("not acknowledged within %s (timeout)%s", k.timeout, k.hooks.last())
	}
	return &recordsError{name: k.name, failed: len(failed), of: len(k.ptrs), first: first, firstAuditID: firstID}
}

// recordsError is a Send whose records failed in part: the batch is sent
// again, and only the failed records go out.
type recordsError struct {
	name       string
	failed, of int
	first      error
	// firstAuditID names the first failed record's event: a record
	// refused for good (too large) blocks the destination until someone
	// finds it.
	firstAuditID string
}

func (e *recordsError) Error() string {
	return fmt.Sprintf("produce to %s: %d of %d records failed (they are sent again), the first (auditID %s): %v", e.name, e.failed, e.of, e.firstAuditID, e.first)
}

func (e *recordsError) Unwrap() error { return e.first }

func (k *kafkaDest) Close() error {
	k.client.Close()
	return nil
}

// kafkaHooks keeps the last broker connection error of a Send: a Send
// that times out names why (a refused dial, a failed SASL handshake, a
// read timeout) rather than only "context deadline exceeded".
type kafkaHooks struct {
	mu  sync.Mutex
	err string
}

var (
	_ kgo.HookBrokerConnect = (*kafkaHooks)(nil)
	_ kgo.HookBrokerE2E     = (*kafkaHooks)(nil)
)

func (h *kafkaHooks) OnBrokerConnect(meta kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	h.note(meta, err)
}

func (h *kafkaHooks) OnBrokerE2E(meta kgo.BrokerMetadata, _ int16, e2e kgo.BrokerE2E) {
	h.note(meta, e2e.Err())
}

func (h *kafkaHooks) note(meta kgo.BrokerMetadata, err error) {
	if err == nil {
		return
	}
	h.mu.Lock()
	h.err = fmt.Sprintf("%s:%d: %v", meta.Host, meta.Port, err)
	h.mu.Unlock()
}

func (h *kafkaHooks) reset() {
	h.mu.Lock()
	h.err = ""
	h.mu.Unlock()
}

// last is ", last broker error: ..." or "".
func (h *kafkaHooks) last() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.err == "" {
		return ""
	}
	return "; last broker error: " + h.err
}
