package ingest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/kubetrail/kubetrail/internal/store/local"
	"github.com/kubetrail/kubetrail/internal/testenv"
)

// TestWebhookDiskFull fills a small file system under the store: the
// webhook must answer 503 (so the API server keeps the batch), keep every
// event it acknowledged before, and store again once there is room.
func TestWebhookDiskFull(t *testing.T) {
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=4m"); err != nil {
		// CI runs as root (.ci/run), so there this is a failure, not a skip.
		testenv.Unavailable(t, "cannot mount a small tmpfs to fill (%v); this test needs root", err)
		return
	}
	defer unix.Unmount(dir, unix.MNT_DETACH)
	data := filepath.Join(dir, "data")
	db, err := local.Open(data, local.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	srv := newWebhookServer(t, db)
	url := srv.URL + "/ingest/webhook"

	acked, n := 0, 0
	sendBatch := func() (int, WebhookResponse) {
		var items []string
		for i := 0; i < 50; i++ {
			items = append(items, item(fmt.Sprintf("full-%06d", n)))
			n++
		}
		return post(t, url, "application/json", strings.NewReader(eventList(items...)))
	}
	// Fill most of the space, then send until the disk is full.
	filler := filepath.Join(dir, "filler")
	if err := os.WriteFile(filler, make([]byte, 3<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	var code int
	var wr WebhookResponse
	for i := 0; i < 200; i++ {
		code, wr = sendBatch()
		if code != 200 {
			break
		}
		acked += wr.Stored
	}
	if code != 503 || !strings.Contains(wr.Error, "no space left on device") {
		t.Fatalf("disk full: answer %d %+v, want 503 naming the cause", code, wr)
	}
	if acked == 0 {
		t.Fatal("nothing was acknowledged before the disk filled")
	}
	// Room again: the same store takes batches again, without a restart.
	os.Remove(filler)
	code, wr = sendBatch()
	if code != 200 || wr.Stored != 50 {
		t.Fatalf("after freeing space: %d %+v", code, wr)
	}
	acked += wr.Stored
	if got := len(storedIDs(t, data)); got != acked {
		t.Fatalf("stored %d events, acknowledged %d", got, acked)
	}
}
