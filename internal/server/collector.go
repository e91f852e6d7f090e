package server

import (
	"errors"
	"net/http"

	"github.com/kubetrail/kubetrail/internal/metrics"
	"github.com/kubetrail/kubetrail/internal/store/local"
)

// CollectorMode is serve --store clickhouse://: the server takes events
// into a collector that ships them to ClickHouse, and keeps no embedded
// store; the read API answers from Config.Store (ClickHouse itself).
type CollectorMode struct {
	// Ready says whether the collector takes batches, for /readyz.
	Ready func() error
	// Metrics are the collector's, registered on /metrics.
	Metrics []metrics.Collector
	// Damage, when set, lists data the collector lost before it reached
	// Config.Store (its damaged WAL segments): every read answer names
	// it in DamageHeader, as the embedded store names its quarantine.
	Damage func() []local.Damage
}

var errCollector = errors.New("this kubetrail serve is a collector without a store to read: it stores into ClickHouse and answers no questions; ask ClickHouse with kubetrail query --store clickhouse://HOST:8123/DB")

// reads serves h, or 404 on a collector given no store to read.
func (s *Server) reads(h http.HandlerFunc) http.Handler {
	if s.db == nil && s.cfg.Store == nil {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			writeError(w, http.StatusNotFound, errCollector)
		})
	}
	return h
}

// ready is /readyz's answer: the store's, or the collector's.
func (s *Server) ready() error {
	if s.db == nil {
		return s.cfg.Collector.Ready()
	}
	return s.db.Ready()
}
