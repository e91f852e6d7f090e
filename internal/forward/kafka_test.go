package forward

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/kubetrail/kubetrail/internal/store/local"
)

const kafkaTopicName = "k8s-audit"

// newKafka starts an in-process broker cluster with the topic (3
// partitions unless told) and returns it and the seed list of the URL.
func startKafka(t *testing.T, opts ...kfake.Opt) (*kfake.Cluster, string) {
	t.Helper()
	opts = append([]kfake.Opt{kfake.NumBrokers(2), kfake.SeedTopics(3, kafkaTopicName)}, opts...)
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c, strings.Join(c.ListenAddrs(), ",")
}

// produceLog watches the produce requests a cluster receives.
type produceLog struct {
	mu       sync.Mutex
	requests int
	acks     []int16
	pids     []int64
}

func watchProduce(c *kfake.Cluster) *produceLog {
	l := &produceLog{}
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		pr := req.(*kmsg.ProduceRequest)
		l.mu.Lock()
		defer l.mu.Unlock()
		l.requests++
		l.acks = append(l.acks, pr.Acks)
		for _, tp := range pr.Topics {
			for _, p := range tp.Partitions {
				var rb kmsg.RecordBatch
				if err := rb.ReadFrom(p.Records); err == nil {
					l.pids = append(l.pids, rb.ProducerID)
				}
			}
		}
		return nil, nil, false
	})
	return l
}

// readTopic consumes every record of the topic, up to each partition's
// end offset at the call.
func readTopic(t *testing.T, seeds string, partitions int32, extra ...kgo.Opt) []*kgo.Record {
	t.Helper()
	opts := append([]kgo.Opt{kgo.SeedBrokers(strings.Split(seeds, ",")...), kgo.ConsumeTopics(kafkaTopicName),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(50 * time.Millisecond)}, extra...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req := kmsg.NewPtrListOffsetsRequest()
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = kafkaTopicName
	for p := int32(0); p < partitions; p++ {
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Partition, rp.Timestamp = p, -1
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	left := int64(0)
	for _, tp := range resp.Topics {
		for _, p := range tp.Partitions {
			if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
				t.Fatalf("list offsets of partition %d: %v", p.Partition, err)
			}
			left += p.Offset
		}
	}
	var out []*kgo.Record
	for int64(len(out)) < left {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of the topic's %d records", len(out), left)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
		out = append(out, fs.Records()...)
	}
	return out
}

// checkOnce requires every event of recs on the topic exactly once, as
// the event's bytes with its store key, the cluster header and its
// stageTimestamp; it returns the partition of each key.
func checkOnce(t *testing.T, got []*kgo.Record, n int) map[string]int32 {
	t.Helper()
	count := map[string]int{}
	part := map[string]int32{}
	for _, r := range got {
		id := idOf(r.Value)
		count[id]++
		part[string(r.Key)] = r.Partition
		e := ev(mustAtoi(t, strings.TrimPrefix(id, "id-")), "")
		k := local.KeyOf("prod", r.Value)
		if string(r.Key) != fmt.Sprintf("%x", k[:]) {
			t.Errorf("%s: key %q; want the store key %x", id, r.Key, k[:])
		}
		if len(r.Headers) != 1 || r.Headers[0].Key != "cluster" || string(r.Headers[0].Value) != "prod" {
			t.Errorf("%s: headers %v; want cluster=prod", id, r.Headers)
		}
		if !r.Timestamp.Equal(e.Event.StageTimestamp.Truncate(time.Millisecond)) {
			t.Errorf("%s: timestamp %v; want its stageTimestamp %v", id, r.Timestamp, e.Event.StageTimestamp.Time)
		}
	}
	for i := 0; i < n; i++ {
		if c := count[fmt.Sprintf("id-%d", i)]; c != 1 {
			t.Errorf("id-%d is on the topic %d times; want once", i, c)
		}
	}
	if len(got) != n {
		t.Errorf("%d records on the topic; want %d", len(got), n)
	}
	return part
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	var n int
	if _, err := fmt.Sscan(s, &n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestKafkaWireFormat: one record per event on the URL's topic, through
// two seed brokers: the stored bytes as the value, the store key as the
// key (so every copy of an event goes to one partition), the cluster as
// a header and the stageTimestamp as its time; produced with acks=all by
// an idempotent producer. The broker answers a produce with a retriable
// error before writing (NOT_ENOUGH_REPLICAS), and twice after writing
// (NOT_ENOUGH_REPLICAS_AFTER_APPEND, REQUEST_TIMED_OUT: the answer says
// failure, the records are there): the client retries within the Send,
// the broker drops the copies by producer sequence, and every event is on
// the topic exactly once.
// Mutations it catches: kgo.DisableIdempotentWrite() (the records written
// before a failed answer are there twice); acks=leader (the producer must
// wait for every in-sync replica); no key, or a key drawn per send.
func TestKafkaWireFormat(t *testing.T) {
	c, seeds := startKafka(t)
	pl := watchProduce(c)
	faults := c.Fault(
		kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Err: kerr.NotEnoughReplicas},
		kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Err: kerr.NotEnoughReplicasAfterAppend},
		kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Err: kerr.RequestTimedOut},
	)
	f, _, err := forwardAll(t, "kafka://"+seeds+"/"+kafkaTopicName, 10)
	if err != nil {
		t.Fatal(err)
	}
	if h := faults.Hits(); h != 3 {
		t.Errorf("the broker failed %d produce requests; want 3", h)
	}
	part := checkOnce(t, readTopic(t, seeds, 3), 10)
	pl.mu.Lock()
	if pl.requests < 3+3 || slices.ContainsFunc(pl.acks, func(a int16) bool { return a != -1 }) || slices.Contains(pl.pids, -1) || len(pl.pids) == 0 {
		t.Errorf("%d produce requests, acks %v, producer IDs %v; want acks=all (-1) and a producer ID on every batch", pl.requests, pl.acks, pl.pids)
	}
	pl.mu.Unlock()
	if st := f.Stats(); st.Events != 10 || st.Failures != 0 {
		t.Errorf("stats %+v; want 10 events and no failed Send (the client retries within it)", st)
	}
	// The same events again (a batch sent again after a restart): each
	// copy goes to the partition of the first.
	if _, _, err := forwardAll(t, "kafka://"+seeds+"/"+kafkaTopicName, 10); err != nil {
		t.Fatal(err)
	}
	spread := map[int32]bool{}
	for _, r := range readTopic(t, seeds, 3) {
		spread[r.Partition] = true
		if p := part[string(r.Key)]; p != r.Partition {
			t.Errorf("%s: a copy in partition %d, the first in %d", idOf(r.Value), r.Partition, p)
		}
	}
	if len(spread) < 2 {
		t.Errorf("every record in partitions %v: the key does not spread them", spread)
	}
}

// TestKafkaRecordErrorsRetried: the broker refuses one partition's
// records with an error that is not retriable (INVALID_RECORD) while the
// others land. The Send fails, and the forwarder's next Send produces the
// refused records only: every event is on the topic exactly once.
// Mutations it catches: a Send that reports success when some records
// failed (they are lost); one that sends the whole batch again (the
// records that had landed are there twice).
func TestKafkaRecordErrorsRetried(t *testing.T) {
	c, seeds := startKafka(t)
	faults := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Partitions: []int32{1}, Err: kerr.InvalidRecord, Count: 2})
	f, _, err := forwardAll(t, "kafka://"+seeds+"/"+kafkaTopicName, 12)
	if err != nil {
		t.Fatal(err)
	}
	if h := faults.Hits(); h != 2 {
		t.Fatalf("the broker refused %d produce requests; want 2", h)
	}
	checkOnce(t, readTopic(t, seeds, 3), 12)
	st := f.Stats()
	if st.Failures != 2 || st.Events != 12 {
		t.Errorf("stats %+v; want 2 failed Sends and 12 events", st)
	}
}

// TestKafkaTimeout: a broker that holds every produce request for 1.5 s
// (then writes it): a Send ends at the URL's timeout (0.5 s) with the
// reason, the forwarder retries, and once the broker answers again every
// event is on the topic; only the held batch may be there twice.
// Mutations it catches: no timeout on the Send, or kgo's default refusal
// to cancel an idempotent request in flight (the Send waits for the
// broker: no failed Send, and the forwarder cannot stop or back off).
func TestKafkaTimeout(t *testing.T) {
	c, seeds := startKafka(t)
	var mu sync.Mutex
	held := 0
	until := time.Now().Add(1500 * time.Millisecond)
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if wait := time.Until(until); wait > 0 {
			mu.Lock()
			held++
			mu.Unlock()
			c.SleepControl(func() { time.Sleep(wait) })
		}
		return nil, nil, false
	})
	began := time.Now()
	f, _, err := forwardAll(t, "kafka://"+seeds+"/"+kafkaTopicName+"#timeout=500ms", 10)
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(began); took > 8*time.Second {
		t.Errorf("took %v", took)
	}
	got := readTopic(t, seeds, 3)
	count := map[string]int{}
	for _, r := range got {
		count[idOf(r.Value)]++
	}
	for i := 0; i < 10; i++ {
		id := fmt.Sprintf("id-%d", i)
		if count[id] == 0 || count[id] > 1 && i >= 4 {
			t.Errorf("%s is on the topic %d times; want once (at most twice for the held batch, id-0 to id-3)", id, count[id])
		}
	}
	st := f.Stats()
	mu.Lock()
	defer mu.Unlock()
	if st.Failures < 1 || st.Events != 10 || held == 0 {
		t.Errorf("stats %+v, %d requests held; want failed Sends while the broker held them, then 10 events", st, held)
	}
}

// TestKafkaTimeoutReason: a Send to brokers that do not answer at all
// ends at its timeout, saying so and naming the last broker error.
func TestKafkaTimeoutReason(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: every dial is refused
	d, err := NewRegistry(Env{}).Open("kafka://"+addr+"/t#timeout=300ms", "", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Sender.Close()
	began := time.Now()
	err = d.Sender.Send(context.Background(), oneEvent())
	if took := time.Since(began); took > 2*time.Second {
		t.Errorf("Send took %v with a 300ms timeout", took)
	}
	if err == nil || !strings.Contains(err.Error(), "within 300ms") || !strings.Contains(err.Error(), "refused") {
		t.Errorf("Send = %v; want a timeout naming the refused connection", err)
	}
}

// TestKafkaCursorSurvivesRestart: serve's forwarder to Kafka, stopped
// and started again with events stored while it was down: the topic (one
// partition) holds every event once, in store order.
func TestKafkaCursorSurvivesRestart(t *testing.T) {
	_, seeds := startKafka(t, kfake.SeedTopics(1, kafkaTopicName))
	dir := t.TempDir()
	cur := filepath.Join(dir, Dir, "kafka.cursor")
	open := func() *Dest {
		d, err := NewRegistry(Env{}).Open("kafka://"+seeds+"/"+kafkaTopicName, "", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		d.Config.Batch, d.Config.MinBackoff, d.Config.MaxBackoff = 4, time.Millisecond, 10*time.Millisecond
		return d
	}
	db, err := local.Open(dir, local.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	d := open()
	r := runForwarder(t, db, d, Options{Cursor: cur})
	appendEvents(t, db, 0, 10)
	waitFor(t, "10 events", func() bool { return r.f.Stats().Events == 10 })
	r.stop(t)
	d.Sender.Close()
	appendEvents(t, db, 10, 5)
	db.Close()
	db, err = local.Open(dir, local.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	d = open()
	defer d.Sender.Close()
	r = runForwarder(t, db, d, Options{Cursor: cur})
	appendEvents(t, db, 15, 5)
	waitFor(t, "10 more events", func() bool { return r.f.Stats().Events == 10 })
	r.stop(t)
	var ids []string
	for _, rec := range readTopic(t, seeds, 1) {
		ids = append(ids, idOf(rec.Value))
	}
	if want := idList(0, 20); !slices.Equal(ids, want) {
		t.Fatalf("topic %v\nwant %v", ids, want)
	}
}

// TestKafkaTLSAndSASL: kafkas:// with a CA file and SCRAM-SHA-512, the
// user from the URL and the password from password_file; a wrong
// password (over kafka://...#tls=true) fails the Send with the broker's
// reason.
// Mutations it catches: the URL's host list as every broker's TLS server
// name; the password file's newline kept.
func TestKafkaTLSAndSASL(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kafka"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, seeds := startKafka(t, kfake.TLS(&tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}),
		kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-512", "kubetrail", "s3cret"))
	tmp := t.TempDir()
	ca, pw, bad := filepath.Join(tmp, "ca.pem"), filepath.Join(tmp, "pw"), filepath.Join(tmp, "bad")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(pw, []byte("s3cret\n"), 0o600)
	os.WriteFile(bad, []byte("guess\n"), 0o600)
	u := "kafkas://kubetrail@" + seeds + "/" + kafkaTopicName + "#sasl=scram-sha-512&ca=" + ca + "&password_file="
	if _, _, err := forwardAll(t, u+pw, 6); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	checkOnce(t, readTopic(t, seeds, 3, kgo.DialTLSConfig(&tls.Config{RootCAs: pool}),
		kgo.SASL(scramSHA512("kubetrail", "s3cret"))), 6)

	// kfake closes the connection on a wrong password; a broker answers
	// as this control does, and closes it then.
	c.ControlKey(int16(kmsg.SASLAuthenticate), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		resp := req.ResponseKind().(*kmsg.SASLAuthenticateResponse)
		resp.ErrorCode = kerr.SaslAuthenticationFailed.Code
		msg := "Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512"
		resp.ErrorMessage = &msg
		return resp, nil, true
	})
	// kafka:// with tls=true is kafkas://.
	u = strings.Replace(u, "kafkas://", "kafka://", 1)
	d, err := NewRegistry(Env{}).Open(u+bad+"&tls=true&timeout=1s", "", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Sender.Close()
	err = d.Sender.Send(context.Background(), oneEvent())
	if err == nil || !strings.Contains(err.Error(), "invalid credentials") {
		t.Errorf("Send with a wrong password = %v; want the SASL failure", err)
	}
}

// TestKafkaOpenRejects: bad URLs and settings are errors naming them.
func TestKafkaOpenRejects(t *testing.T) {
	reg := NewRegistry(Env{})
	bad := func(raw, want string) {
		t.Helper()
		d, err := reg.Open(raw, "", time.Now())
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Open(%q) = %v; want an error with %q", raw, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "SECRET") {
			t.Errorf("Open(%q): the error shows a secret: %v", raw, err)
		}
		if d != nil {
			d.Sender.Close()
		}
	}
	bad("kafka:///audit", "no broker")
	bad("kafka://b:9092", `topic ""`)
	bad("kafka://b:9092/a/b", `topic "a/b"`)
	bad("kafka://b:9092,,c:9092/t", "empty broker")
	bad("kafka://b:9092/t#tls=yes", `tls="yes"`)
	bad("kafkas://b:9092/t#tls=false", "tls=false")
	bad("kafka://b:9092/t#ca=/x.pem", "ca is for TLS")
	bad("kafka://b:9092/t#sasl=plain", "need a user")
	bad("kafka://u:SECRET@b:9092/t#sasl=gssapi", `sasl="gssapi"`)
	bad("kafka://u:SECRET@b:9092/t#password_file=/x", "give one")
	bad("kafka://u@b:9092/t#password_file=/nonexistent", "password_file")
	bad("kafka://b:9092/t#timeout=-1s", "timeout")
	bad("kafka://b:9092/t#acks=1", `unknown setting "acks"`)
	bad("kafka://b:9092/t#max_message_bytes=1k", "max_message_bytes")
	// Opening does not connect: a broker that is down at start is
	// retried like any failure.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan bool, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Close()
			accepted <- true
		}
	}()
	d, err := reg.Open("kafka://"+ln.Addr().String()+"/t", "", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if len(accepted) > 0 {
		t.Error("Open connected to the broker")
	}
	d.Sender.Close()
	d, err = reg.Open("kafka://u:SECRET@b1:9092,b2:9092/t", "", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	d.Sender.Close()
	if d.Name != "kafka://b1:9092,b2:9092/..." || strings.Contains(d.ID, "SECRET") {
		t.Errorf("name %q, id %q", d.Name, d.ID)
	}
}

func scramSHA512(user, pass string) sasl.Mechanism {
	return scram.Auth{User: user, Pass: pass}.AsSha512Mechanism()
}

// oneEvent is a batch of one event, for a Send without a forwarder.
func oneEvent() []Event {
	r := ev(1, "get")
	return []Event{{Raw: r.Raw, Ev: &r.Event, Cluster: "prod"}}
}

// TestKafkaMaxMessageBytes: an event larger than max_message_bytes fails
// its Send with Kafka's reason; a larger setting lets it through.
// Mutation it catches: the setting read but not given to the producer.
func TestKafkaMaxMessageBytes(t *testing.T) {
	_, seeds := startKafka(t)
	send := func(setting string) error {
		d, err := NewRegistry(Env{}).Open("kafka://"+seeds+"/"+kafkaTopicName+"#timeout=2s&max_message_bytes="+setting, "", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		defer d.Sender.Close()
		evs := oneEvent()
		evs[0].Raw = []byte(`{"pad":"` + strings.Repeat("x", 1500) + `"}`)
		return d.Sender.Send(context.Background(), evs)
	}
	if err := send("1024"); err == nil || !strings.Contains(err.Error(), "MESSAGE_TOO_LARGE") || !strings.Contains(err.Error(), "auditID id-1") {
		t.Errorf("an event of 1510 bytes with max_message_bytes=1024: %v; want MESSAGE_TOO_LARGE and the event's auditID id-1", err)
	}
	if err := send("2048"); err != nil {
		t.Errorf("with max_message_bytes=2048: %v", err)
	}
}
