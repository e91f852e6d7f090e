package server

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"testing"

	"github.com/kubetrail/kubetrail/internal/store/local"
)

// TestStoreAnswersNameCollectorDamage: a serve --store whose collector
// lost events (damaged WAL segments, CollectorMode.Damage) names them in
// a Kubetrail-Damage header on every read answer, as the embedded store
// names its quarantine, so that a --server client exits 3; without
// damage no answer has the header. Planted: storeReader.Damaged
// returning nil fails it.
func TestStoreAnswersNameCollectorDamage(t *testing.T) {
	st := clickhouseStore(t, apiBatches(t)[:2])
	var damage []local.Damage
	c := apiConfig()
	c.Collector = &CollectorMode{Ready: func() error { return nil }, Damage: func() []local.Damage { return damage }}
	c.Ingest, c.Store, c.AlertsDir = st, st, t.TempDir()
	s, err := New(c, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	h := s.Handler()
	headers := func(target string) []string {
		t.Helper()
		req := httptest.NewRequest(http.MethodGet, target, nil)
		req.Header.Set("Authorization", "Bearer all")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			t.Fatalf("%s: %d %s", target, rec.Code, rec.Body.String())
		}
		return rec.Header().Values(DamageHeader)
	}
	targets := []string{"/api/v1/events?filter=user%3Dattacker", "/api/v1/stats?by=user", "/api/v1/investigate/denied"}
	for _, target := range targets {
		if got := headers(target); len(got) != 0 {
			t.Errorf("%s without damage: %s %v", target, DamageHeader, got)
		}
	}
	damage = []local.Damage{{Path: "/data/clickhouse-spool/wal/0000000000000004.wal.damaged", Reason: "events never reached ClickHouse"}}
	want := []string{url.QueryEscape(damage[0].String())}
	for _, target := range targets {
		if got := headers(target); !slices.Equal(got, want) {
			t.Errorf("%s with a damaged spool segment: %s %v, want %v", target, DamageHeader, got, want)
		}
	}
}
