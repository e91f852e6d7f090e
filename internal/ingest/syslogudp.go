package ingest

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/pipeline"
)

// udpQueue is how many decoded events a UDP listener holds for the store;
// when it is full, events are dropped and counted (UDP has no flow
// control to make the sender wait).
const udpQueue = 4096

type udpEvent struct {
	cluster string
	rec     audit.Record
}

// serveUDP reads one datagram per message. A reader decodes and queues
// the events; a writer stores what is queued, in batches.
func (s *Syslog) serveUDP(ctx context.Context, pc net.PacketConn) {
	log := s.cfg.Logger.With("transport", "udp", "listen", pc.LocalAddr().String())
	queue := make(chan udpEvent, udpQueue)
	var writer sync.WaitGroup
	writer.Go(func() { s.storeUDP(ctx, queue) })
	lim := &logLimit{}
	buf := make([]byte, 64<<10)
	for {
		n, peer, err := pc.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				break
			}
			log.Warn("syslog: read", "err", err)
			continue
		}
		msg := buf[:n]
		for len(msg) > 0 && (msg[len(msg)-1] == '\n' || msg[len(msg)-1] == 0) {
			msg = msg[:len(msg)-1]
		}
		s.decode(msg, func(cluster string, rec audit.Record) {
			select {
			case queue <- udpEvent{cluster: cluster, rec: rec}:
			default:
				s.cfg.Count("udp", SyslogDropped, 1)
				if lim.allow() {
					log.Warn("syslog: UDP queue to the store is full; event dropped (UDP is lossy: use tcp:// or tls://)", "peer", peer.String())
				}
			}
		}, func(reason string) {
			s.cfg.Count("udp", SyslogInvalid, 1)
			if lim.allow() {
				log.Warn("syslog: skipped", "peer", peer.String(), "reason", reason)
			}
		})
	}
	close(queue)
	writer.Wait()
}

// storeUDP stores queued events in batches of what is waiting, one batch
// per cluster.
func (s *Syslog) storeUDP(ctx context.Context, queue <-chan udpEvent) {
	log := s.cfg.Logger.With("transport", "udp")
	for ev := range queue {
		batches := map[string]*pipeline.Batch{}
		var order []string
		add := func(ev udpEvent) {
			b := batches[ev.cluster]
			if b == nil {
				b = &pipeline.Batch{Cluster: ev.cluster, Received: time.Now()}
				batches[ev.cluster] = b
				order = append(order, ev.cluster)
			}
			b.Records = append(b.Records, ev.rec)
		}
		add(ev)
	more:
		for n := 1; n < batchMaxEvents; n++ {
			select {
			case ev, ok := <-queue:
				if !ok {
					break more
				}
				add(ev)
			default:
				break more
			}
		}
		for _, c := range order {
			s.append(ctx, log, "udp", batches[c])
		}
	}
}

// logLimit lets through maxLoggedProblems lines a minute.
type logLimit struct {
	start time.Time
	n     int
}

func (l *logLimit) allow() bool {
	if now := time.Now(); now.Sub(l.start) > time.Minute {
		l.start, l.n = now, 0
	}
	l.n++
	return l.n <= maxLoggedProblems
}
