package textcodec

import (
	"bufio"
	"bytes"
	"cmp"
	"compress/gzip"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/kubetrail/kubetrail/internal/testenv"
)

// layouts are the option sets the tests run every round trip with.
var layouts = []Options{
	{},
	{BlockEvents: 3, Types: true, URI: true, Dict: true, Opaque: true},
	{BlockEvents: 7, Types: true, URI: true, OneFrame: true},
	{BlockEvents: 1, Types: true, Dict: true, OneFrame: true, Opaque: true},
	{BlockEvents: 5, Types: true, URI: true, Rows: true, Opaque: true},
	{BlockEvents: 4, Types: true, URI: true, Rows: true, Opaque: true, BodiesApart: true},
	{Types: true, URI: true, Rows: true},
}

func newDecoder(t testing.TB) *zstd.Decoder {
	t.Helper()
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dec.Close)
	return dec
}

// roundTrip encodes lines with opt and checks that reading every event,
// and every third event, gives the lines back byte for byte.
func roundTrip(t testing.TB, dec *zstd.Decoder, lines [][]byte, opt Options) []byte {
	t.Helper()
	g, err := Encode(lines, opt)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Open(g, dec)
	if err != nil {
		t.Fatalf("%+v: %v", opt, err)
	}
	if r.Len() != len(lines) {
		t.Fatalf("%+v: Len %d, want %d", opt, r.Len(), len(lines))
	}
	next := 0
	err = r.All(func(ord int, line []byte) error {
		if ord != next {
			return fmt.Errorf("event %d came where %d was due", ord, next)
		}
		next++
		if !bytes.Equal(line, lines[ord]) {
			return fmt.Errorf("event %d:\n got %q\nwant %q", ord, line, lines[ord])
		}
		return nil
	})
	if err == nil && next != len(lines) {
		err = fmt.Errorf("All gave %d events of %d", next, len(lines))
	}
	if err != nil {
		t.Fatalf("%+v: All: %v", opt, err)
	}
	var ords []int
	for i := 2; i < len(lines); i += 3 {
		ords = append(ords, i)
	}
	got := 0
	err = r.Events(ords, func(ord int, line []byte) error {
		if ord != ords[got] {
			return fmt.Errorf("event %d came where %d was due", ord, ords[got])
		}
		got++
		if !bytes.Equal(line, lines[ord]) {
			return fmt.Errorf("event %d:\n got %q\nwant %q", ord, line, lines[ord])
		}
		return nil
	})
	if err == nil && got != len(ords) {
		err = fmt.Errorf("Events gave %d events of %d", got, len(ords))
	}
	if err != nil {
		t.Fatalf("%+v: Events: %v", opt, err)
	}
	return g
}

const apiLine = `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a8b83341-a8b6-40d4-9435-aaa7e00d238c","stage":"ResponseComplete","requestURI":"/apis/discovery.k8s.io/v1/namespaces/tenant-030/endpointslices/app-33-ncvx9?timeout=10s","verb":"update","user":{"username":"system:serviceaccount:kube-system:endpointslice-controller","uid":"605dda5b-5e74-4a28-bb1a-a179631597f2","groups":["system:serviceaccounts","system:authenticated"],"extra":{"authentication.kubernetes.io/credential-id":["JTI=20613075-1f67-46ef-8f2e-686626aa5f98"]}},"sourceIPs":["10.0.1.11"],"objectRef":{"resource":"endpointslices","namespace":"tenant-030","name":"app-33-ncvx9","uid":"8e2725ef-0e64-47f4-bfbc-7da4bb7365e0","apiGroup":"discovery.k8s.io","apiVersion":"v1","resourceVersion":"4822160"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2026-11-01T00:00:00.874346Z","stageTimestamp":"2026-11-01T00:00:00.881305Z"}`

// TestRoundTripOddLines: lines the API server would not write come back
// exactly too, whether the splitter follows them or keeps them raw.
func TestRoundTripOddLines(t *testing.T) {
	lines := [][]byte{
		[]byte(apiLine),
		[]byte(`{"requestURI":"/api/v1/namespaces/a/pods","verb":"create","objectRef":{"resource":"pods","namespace":"a","name":"p","apiVersion":"v1"}}`),
		[]byte(`{"requestURI":"/api/v1/namespaces/kube-system","objectRef":{"resource":"namespaces","namespace":"kube-system","name":"kube-system","apiVersion":"v1"}}`),
		[]byte(`{"requestURI":"/api/v1/namespaces/a/pods/p/exec?command=cat\u0026x=1","objectRef":{"resource":"pods","namespace":"a","name":"p","apiVersion":"v1","subresource":"exec"}}`),
		[]byte(`{"requestURI":"/api/v1/pods/x","objectRef":{"resource":"","apiVersion":"v1","name":""}}`),
		[]byte(`{"objectRef":{"resource":"pods","apiVersion":"v1"},"requestURI":"/api/v1/pods","requestURI":"/api/v1/podsX"}`),
		[]byte(` { "auditID" : "A8B83341-A8B6-40D4-9435-AAA7E00D238C" ,"t":"2026-11-01T00:00:00.87434Z", "n":[1, -0, 007, 1e3, -12, 123456789012345678901234] } `),
		[]byte(`{"stageTimestamp":"2026-11-01T00:00:00.874346+01:00","x":"2026-13-01T00:00:00.874346Z","y":"0001-01-01T00:00:00.000000Z"}`),
		[]byte(`{"a":"tab\there \"quoted\" \\ \u00e9 é","b":true,"c":null,"d":false,"e":{},"f":[],"g":[[1,[2]],{"h":"x"}]}`),
		[]byte(`{"requestObject":{"kind":"Secret","data":{"k":"dmFsdWU="},"l":[1,2,{"m":"]}"}]},"responseObject":"odd"}`),
		[]byte(`{"unterminated":"abc`),
		[]byte(`{"a":1}{"b":2}`),
		[]byte(`not json at all`),
		[]byte(``),
		nil,
		[]byte("{\"a\":\"line\nbreak\"}\n"),
		[]byte(`"just a string"`),
		[]byte(`12`),
		[]byte(`{"x":"JTI=20613075-1f67-46ef-8f2e-686626aa5f98","y":"20613075-1f67-46ef-8f2e-686626aa5f98-"}`),
		[]byte(`{"a":"` + string(bytes.Repeat([]byte("big body "), 100000)) + `"}`),
		[]byte(`{"deep":` + string(bytes.Repeat([]byte("["), 100)) + string(bytes.Repeat([]byte("]"), 100)) + `}`),
		[]byte{0xff, 0xfe, '{', '"', 0},
	}
	dec := newDecoder(t)
	for _, opt := range layouts {
		roundTrip(t, dec, lines, opt)
	}
}

// readLines reads a JSON-lines file, gzip'ed when its name says so, up to
// max lines.
func readLines(t testing.TB, path string, max int) [][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var in interface{ Read([]byte) (int, error) } = f
	if bytes.HasSuffix([]byte(path), []byte(".gz")) {
		z, err := gzip.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		in = z
	}
	sc := bufio.NewScanner(in)
	sc.Buffer(nil, 64<<20)
	var lines [][]byte
	for sc.Scan() && len(lines) < max {
		lines = append(lines, bytes.Clone(sc.Bytes()))
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return lines
}

// TestRoundTripRealAPIServer: the log a real kube-apiserver wrote (see
// internal/investigate/testdata/incident) comes back byte for byte, and
// the splitter follows every line of it (none is kept raw).
func TestRoundTripRealAPIServer(t *testing.T) {
	lines := readLines(t, "../../investigate/testdata/incident/incident.log.gz", 1<<30)
	if len(lines) < 500 {
		t.Fatalf("%d lines in the recorded incident, want its 553", len(lines))
	}
	dec := newDecoder(t)
	for _, opt := range layouts {
		roundTrip(t, dec, lines, opt)
	}
	x, err := NewEncoder(Options{Types: true, URI: true, Opaque: true})
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	e := newEncoder(x.opt, x.zenc)
	guessed := 0
	for _, l := range lines {
		if !e.sp.split(l) {
			t.Fatalf("the splitter gave up on an API server line: %s", l)
		}
		e.add(l)
	}
	for _, k := range e.cols[e.uriCol].kinds {
		if k >= kindURI && k <= kindLast {
			guessed++
		}
	}
	// Most requests of the incident name an object; /version, /openapi
	// and discovery requests do not.
	if guessed < len(lines)/2 {
		t.Errorf("requestURI guessed from objectRef for %d of %d events, want at least half", guessed, len(lines))
	}
}

// TestRoundTripCorpus: 20,000 events of bench/gen, the corpus make bench
// measures (generated here, so that the test runs on every machine).
func TestRoundTripCorpus(t *testing.T) {
	cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "run", "./bench/gen", "--events", "20000", "--seed", "1")
	cmd.Dir = "../../.."
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("bench/gen: %v\n%s", err, stderr.String())
	}
	lines := bytes.Split(bytes.TrimSuffix(out, []byte("\n")), []byte("\n"))
	if len(lines) != 20000 {
		t.Fatalf("bench/gen gave %d lines, want 20000", len(lines))
	}
	dec := newDecoder(t)
	for _, opt := range []Options{
		{BlockEvents: 1024, Types: true, URI: true, Dict: true, Opaque: true},
		{BlockEvents: 4096, Types: true, URI: true, OneFrame: true, Opaque: true},
		{BlockEvents: 256, Types: true, URI: true, Rows: true, Opaque: true},
		{BlockEvents: 256, Types: true, URI: true, Rows: true, Opaque: true, BodiesApart: true},
	} {
		roundTrip(t, dec, lines, opt)
	}
}

// TestEventsRandomSubsets reads random subsets of a group, checking each
// event against its line: blocks are entered at any event and left after
// any event.
func TestEventsRandomSubsets(t *testing.T) {
	lines := readLines(t, "../../investigate/testdata/incident/incident.log.gz", 1<<30)
	dec := newDecoder(t)
	rng := rand.New(rand.NewPCG(1, 2))
	var r *Reader
	for _, opt := range []Options{
		{BlockEvents: 64, Types: true, URI: true, Dict: true, Opaque: true},
		{BlockEvents: 64, Types: true, URI: true, Rows: true, Opaque: true},
		{BlockEvents: 64, Types: true, URI: true, Rows: true, Opaque: true, BodiesApart: true},
	} {
		g, err := Encode(lines, opt)
		if err != nil {
			t.Fatal(err)
		}
		r, err = Open(g, dec)
		if err != nil {
			t.Fatal(err)
		}
		for range 50 {
			var ords []int
			for i := range lines {
				if rng.IntN(20) == 0 {
					ords = append(ords, i)
				}
			}
			n := 0
			err := r.Events(ords, func(ord int, line []byte) error {
				n++
				if !bytes.Equal(line, lines[ord]) {
					return fmt.Errorf("event %d:\n got %q\nwant %q", ord, line, lines[ord])
				}
				return nil
			})
			if err != nil {
				t.Fatalf("%+v: %v", opt, err)
			}
			if n != len(ords) {
				t.Fatalf("%+v: %d events of %d", opt, n, len(ords))
			}
		}
	}
	if err := r.Events([]int{5, 3}, func(int, []byte) error { return nil }); err == nil {
		t.Error("descending ordinals were read")
	}
	if err := r.Events([]int{len(lines)}, func(int, []byte) error { return nil }); err == nil {
		t.Error("an ordinal past the group was read")
	}
}

// TestDamagedGroup: a cut or flipped group is an error, never a panic or
// a wrong line passed off as right.
func TestDamagedGroup(t *testing.T) {
	lines := readLines(t, "../../investigate/testdata/incident/incident.log.gz", 200)
	dec := newDecoder(t)
	g, err := Encode(lines, Options{BlockEvents: 50, Types: true, URI: true, Dict: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, cut := range []int{0, 3, 5, 40, len(g) / 2, len(g) - 1} {
		r, err := Open(g[:cut], dec)
		if err == nil {
			err = r.All(func(int, []byte) error { return nil })
		}
		if err == nil {
			t.Errorf("a group cut at %d of %d bytes was read", cut, len(g))
		}
	}
}

// FuzzRoundTrip: any line, alone or beside an API server line, comes
// back byte for byte in every layout.
func FuzzRoundTrip(f *testing.F) {
	f.Add([]byte(apiLine))
	f.Add([]byte(`{"a":[1,"b",{"c":null}],"requestObject":{"x":"]"}}`))
	f.Add([]byte(`{"requestURI":"/api/v1/namespaces/a","objectRef":{"resource":"namespaces","name":"a","apiVersion":"v1"}}`))
	f.Add([]byte(`{"t":"2026-11-01T00:00:00.874346Z","u":"JTI=20613075-1f67-46ef-8f2e-686626aa5f98","n":-0}`))
	dec := newDecoder(f)
	f.Fuzz(func(t *testing.T, line []byte) {
		for _, opt := range layouts {
			roundTrip(t, dec, [][]byte{line, []byte(apiLine), line}, opt)
		}
	})
}

// benchLines returns the first 50,000 lines of make bench's 200k corpus
// (skipped when it is absent) and their bytes with newlines.
func benchLines(b *testing.B) ([][]byte, int) {
	b.Helper()
	const corpus = "/tmp/kubetrail-bench/audit-200000.log"
	if _, err := os.Stat(corpus); err != nil {
		b.Skipf("no corpus (make bench-quick writes it): %v", err)
	}
	lines := readLines(b, corpus, 50000)
	n := 0
	for _, l := range lines {
		n += len(l) + 1
	}
	return lines, n
}

// benchGroup encodes benchLines in the store's layout (storeLayout).
func benchGroup(b *testing.B) (*Reader, int) {
	b.Helper()
	lines, n := benchLines(b)
	g, err := Encode(lines, storeLayout)
	if err != nil {
		b.Fatal(err)
	}
	r, err := Open(g, newDecoder(b))
	if err != nil {
		b.Fatal(err)
	}
	return r, n
}

// BenchmarkEncode encodes 50,000 events in the store's layout.
func BenchmarkEncode(b *testing.B) {
	lines, n := benchLines(b)
	x, err := NewEncoder(storeLayout)
	if err != nil {
		b.Fatal(err)
	}
	defer x.Close()
	b.SetBytes(int64(n))
	cpu := testenv.CPUTime()
	for b.Loop() {
		x.Encode(lines)
	}
	b.ReportMetric(float64(testenv.CPUTime()-cpu)/float64(b.N), "cpu-ns/op")
}

// BenchmarkEncodeGroups encodes 50,000 events as the store does: groups
// of 16 MiB of lines (local's groupBytes) from one Encoder.
func BenchmarkEncodeGroups(b *testing.B) {
	lines, n := benchLines(b)
	benchEncodeGroups(b, storeGroups(lines), n)
}

// storeGroups cuts lines into groups of 16 MiB (local's groupBytes).
func storeGroups(lines [][]byte) [][][]byte {
	var groups [][][]byte
	from, size := 0, 0
	for i, l := range lines {
		size += len(l) + 1
		if size >= 16<<20 || i == len(lines)-1 {
			groups = append(groups, lines[from:i+1])
			from, size = i+1, 0
		}
	}
	return groups
}

// benchEncodeGroups encodes groups, of n bytes in all, from one Encoder
// in the store's layout.
func benchEncodeGroups(b *testing.B, groups [][][]byte, n int) {
	x, err := NewEncoder(storeLayout)
	if err != nil {
		b.Fatal(err)
	}
	defer x.Close()
	b.SetBytes(int64(n))
	cpu := testenv.CPUTime()
	for b.Loop() {
		for _, g := range groups {
			x.Encode(g)
		}
	}
	b.ReportMetric(float64(testenv.CPUTime()-cpu)/float64(b.N), "cpu-ns/op")
}

// BenchmarkEncodeStoreOrder is BenchmarkEncodeGroups with each group's
// lines in the order a v5 segment stores them: by user, verb and resource
// (local's sortBy), ties in arrival order. Sorted, most lines have the
// shape of the line before them, which the encoder takes advantage of;
// in arrival order few do.
func BenchmarkEncodeStoreOrder(b *testing.B) {
	lines, n := benchLines(b)
	type sortKey struct {
		User struct {
			Username string `json:"username"`
		} `json:"user"`
		Verb      string `json:"verb"`
		ObjectRef struct {
			Resource string `json:"resource"`
		} `json:"objectRef"`
	}
	keys := make(map[*byte]sortKey, len(lines))
	for _, l := range lines {
		var k sortKey
		if err := json.Unmarshal(l, &k); err != nil {
			b.Fatal(err)
		}
		keys[&l[0]] = k
	}
	groups := storeGroups(slices.Clone(lines))
	for _, g := range groups {
		slices.SortStableFunc(g, func(x, y []byte) int {
			kx, ky := keys[&x[0]], keys[&y[0]]
			return cmp.Or(cmp.Compare(kx.User.Username, ky.User.Username), cmp.Compare(kx.Verb, ky.Verb),
				cmp.Compare(kx.ObjectRef.Resource, ky.ObjectRef.Resource))
		})
	}
	benchEncodeGroups(b, groups, n)
}

// BenchmarkAll reads every event of the group.
func BenchmarkAll(b *testing.B) {
	r, n := benchGroup(b)
	b.SetBytes(int64(n))
	for b.Loop() {
		if err := r.All(func(int, []byte) error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOneEvent reads the last event of a block, from a block not
// already open: the worst case of one event.
func BenchmarkOneEvent(b *testing.B) {
	r, _ := benchGroup(b)
	per := r.PerBlock()
	i := 0
	for b.Loop() {
		i = (i + 1) % (r.Len() / per)
		if err := r.Events([]int{i*per + per - 1}, func(int, []byte) error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSubset reads 1% of the events, spread at random.
func BenchmarkSubset(b *testing.B) {
	r, _ := benchGroup(b)
	rng := rand.New(rand.NewPCG(3, 4))
	var ords []int
	for o := range r.Len() {
		if rng.IntN(100) == 0 {
			ords = append(ords, o)
		}
	}
	for _, noBodies := range []bool{false, true} {
		b.Run(fmt.Sprintf("noBodies=%v", noBodies), func(b *testing.B) {
			r.NoBodies = noBodies
			for b.Loop() {
				if err := r.Events(ords, func(int, []byte) error { return nil }); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	r.NoBodies = false
}

// storeLayout is the layout segment format v5 stores (docs/adr/0025).
var storeLayout = Options{BlockEvents: 256, Types: true, URI: true, Opaque: true, Rows: true, BodiesApart: true}

// readAllErr reads every event of g as Open, OpenAt and OpenHead with
// ReadBlock each do, and returns the first error, or nil when every way
// read every line; got is called with each line read.
func readAllErr(dec *zstd.Decoder, g Group, got func(ord int, line []byte) error) error {
	whole := g.Bytes()
	r, err := Open(whole, dec)
	if err != nil {
		return err
	}
	if err := r.All(got); err != nil {
		return err
	}
	pad := append(bytes.Repeat([]byte{'x'}, 7), whole...)
	r, err = OpenAt(bytes.NewReader(pad), 7, int64(len(whole)), dec)
	if err != nil {
		return err
	}
	if err := r.All(got); err != nil {
		return err
	}
	r, err = OpenHead(g.Head, dec)
	if err != nil {
		return err
	}
	if len(g.Blocks) != r.numBlocks() {
		return fmt.Errorf("%d blocks, the head says %d", len(g.Blocks), r.numBlocks())
	}
	for b, blk := range g.Blocks {
		var ords []int
		for o := b * r.per; o < min((b+1)*r.per, r.n); o++ {
			ords = append(ords, o)
		}
		if err := r.ReadBlock(b, func() ([]byte, error) { return blk, nil }, ords, got); err != nil {
			return err
		}
	}
	return nil
}

// flipLayouts are the layouts the damage tests flip bytes in: the store's
// and a column layout.
var flipLayouts = []Options{storeLayout, {BlockEvents: 16, Types: true, URI: true, Dict: true, Opaque: true}}

// TestEveryFlippedByte: every byte of a group's head, block table and
// blocks, flipped in three ways, makes every way of reading it fail:
// each part's CRC-32C is checked before the part is used, so a damaged
// group never gives a line that is not the one stored.
// (Mutation tried: openRows without checking the rows frame's CRC gives
// wrong lines, and this test fails.)
func TestEveryFlippedByte(t *testing.T) {
	lines := readLines(t, "../../investigate/testdata/incident/incident.log.gz", 40)
	dec := newDecoder(t)
	for _, opt := range flipLayouts {
		opt.BlockEvents = 16
		x, err := NewEncoder(opt)
		if err != nil {
			t.Fatal(err)
		}
		g := x.Encode(lines)
		x.Close()
		if err := readAllErr(dec, g, func(ord int, line []byte) error {
			if !bytes.Equal(line, lines[ord]) {
				return fmt.Errorf("event %d differs", ord)
			}
			return nil
		}); err != nil {
			t.Fatalf("%+v: intact group: %v", opt, err)
		}
		parts := append([][]byte{g.Head}, g.Blocks...)
		for pi, part := range parts {
			for i := range part {
				for _, mask := range []byte{0x01, 0x80, 0xff} {
					part[i] ^= mask
					err := readAllErr(dec, g, func(int, []byte) error { return nil })
					part[i] ^= mask
					if err == nil {
						t.Fatalf("%+v: part %d (0 head, then blocks) byte %d of %d xor %#x: read without an error", opt, pi, i, len(part), mask)
					}
				}
			}
		}
		// The one-string form's own bytes: magic, head length, block table.
		whole := g.Bytes()
		tableEnd := len(whole)
		for _, b := range g.Blocks {
			tableEnd -= len(b)
		}
		for i := range tableEnd {
			w := bytes.Clone(whole)
			w[i] ^= 0x01
			r, err := Open(w, dec)
			if err == nil {
				err = r.All(func(int, []byte) error { return nil })
			}
			if err == nil {
				t.Fatalf("%+v: byte %d of the group's table flipped: read without an error", opt, i)
			}
		}
	}
}

// FuzzDamagedGroup: a group of the fuzzer's line beside API server lines,
// with one byte flipped anywhere, is an error for every way of reading
// it, never a panic and never a line; and any bytes given to Open as a
// group are an error or lines, never a panic.
func FuzzDamagedGroup(f *testing.F) {
	f.Add([]byte(apiLine), uint32(0), byte(1))
	f.Add([]byte(`{"requestObject":{"a":1},"responseObject":{"b":[2]}}`), uint32(300), byte(0x80))
	f.Add([]byte(`not json`), uint32(77), byte(0xff))
	dec := newDecoder(f)
	f.Fuzz(func(t *testing.T, line []byte, pos uint32, mask byte) {
		if r, err := Open(line, dec); err == nil {
			r.All(func(int, []byte) error { return nil })
		}
		if mask == 0 {
			return
		}
		lines := [][]byte{line, []byte(apiLine), line, []byte(`{"requestObject":{"kind":"Secret"},"auditID":"a8b83341-a8b6-40d4-9435-aaa7e00d238c"}`)}
		for _, opt := range flipLayouts {
			opt.BlockEvents = 2
			x, err := NewEncoder(opt)
			if err != nil {
				t.Fatal(err)
			}
			g := x.Encode(lines)
			x.Close()
			parts := append([][]byte{g.Head}, g.Blocks...)
			n := 0
			for _, p := range parts {
				n += len(p)
			}
			at := int(pos % uint32(n))
			for _, p := range parts {
				if at < len(p) {
					p[at] ^= mask
					break
				}
				at -= len(p)
			}
			if err := readAllErr(dec, g, func(int, []byte) error { return nil }); err == nil {
				t.Fatalf("%+v: byte %d xor %#x: read without an error", opt, pos%uint32(n), mask)
			}
		}
	})
}

// TestReadBlockKeepsTheBlock: ReadBlock loads a block's bytes once for
// successive reads of it, and again for another block.
func TestReadBlockKeepsTheBlock(t *testing.T) {
	lines := readLines(t, "../../investigate/testdata/incident/incident.log.gz", 600)
	x, err := NewEncoder(storeLayout)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	g := x.Encode(lines)
	r, err := OpenHead(g.Head, newDecoder(t))
	if err != nil {
		t.Fatal(err)
	}
	loads := 0
	read := func(b, ord int) {
		t.Helper()
		load := func() ([]byte, error) { loads++; return g.Blocks[b], nil }
		err := r.ReadBlock(b, load, []int{ord}, func(o int, line []byte) error {
			if !bytes.Equal(line, lines[o]) {
				return fmt.Errorf("event %d differs", o)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	read(0, 3)
	read(0, 200)
	read(1, 256)
	read(1, 260)
	read(0, 5)
	if loads != 3 {
		t.Errorf("%d loads for reads in blocks 0, 0, 1, 1, 0: want 3", loads)
	}
	if err := r.ReadBlock(0, nil, []int{256}, func(int, []byte) error { return nil }); err == nil {
		t.Error("an event of block 1 was read as block 0's")
	}
}

// TestNoBodies: with NoBodies every event's line is its stored line with
// requestObject and responseObject null, and nothing else changed.
func TestNoBodies(t *testing.T) {
	lines := readLines(t, "../../investigate/testdata/incident/incident.log.gz", 1<<30)
	x, err := NewEncoder(storeLayout)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	r, err := Open(x.Encode(lines).Bytes(), newDecoder(t))
	if err != nil {
		t.Fatal(err)
	}
	r.NoBodies = true
	bodies := 0
	err = r.All(func(ord int, line []byte) error {
		var got, want map[string]json.RawMessage
		if err := json.Unmarshal(line, &got); err != nil {
			return fmt.Errorf("event %d: %v", ord, err)
		}
		if err := json.Unmarshal(lines[ord], &want); err != nil {
			return err
		}
		for _, k := range []string{"requestObject", "responseObject"} {
			if _, ok := want[k]; ok {
				bodies++
				want[k] = json.RawMessage("null")
			}
		}
		if !reflect.DeepEqual(got, want) {
			return fmt.Errorf("event %d:\n got %s\nwant %s", ord, line, lines[ord])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if bodies < 100 {
		t.Fatalf("%d bodies in the incident: the test reads too few", bodies)
	}
}

// BenchmarkOpenHead opens the head of a group of 50,000 events: what a
// store pays once per group a read touches.
func BenchmarkOpenHead(b *testing.B) {
	lines, _ := benchLines(b)
	x, err := NewEncoder(storeLayout)
	if err != nil {
		b.Fatal(err)
	}
	defer x.Close()
	g := x.Encode(lines)
	dec := newDecoder(b)
	for b.Loop() {
		if _, err := OpenHead(g.Head, dec); err != nil {
			b.Fatal(err)
		}
	}
}

// TestHugeCounts: a head whose CRC holds but whose event count is far
// beyond the group's bytes is an error for Open and OpenAt, not an
// allocation of its block table (without the bound, 8 TB of it).
func TestHugeCounts(t *testing.T) {
	meta := appendChunk(binary.AppendUvarint(nil, 1), nil) // one column, ""
	meta = binary.AppendUvarint(meta, 0)                   // no templates
	dec := newDecoder(t)
	x, err := NewEncoder(storeLayout)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	head := []byte{flagRows}
	head = binary.AppendUvarint(head, 1<<40)
	head = binary.AppendUvarint(head, 1)
	head = appendChunk(head, x.zenc.EncodeAll(meta, nil))
	head = appendCRC(head, 0)
	if _, err := OpenHead(head, dec); err != nil {
		t.Fatalf("the head itself is well formed: %v", err)
	}
	g := Group{Head: head}.Bytes()
	g = append(g[:len(g)-1], binary.AppendUvarint(nil, 1<<40)...)
	if _, err := Open(g, dec); err == nil {
		t.Error("Open read a group of 2^40 blocks in a few bytes")
	}
	if _, err := OpenAt(bytes.NewReader(g), 0, int64(len(g)), dec); err == nil {
		t.Error("OpenAt read a group of 2^40 blocks in a few bytes")
	}
}

// TestSecCacheAppendMicro: writing times through the cache of the last
// day gives what appendMicro gives, across seconds and days, before 1970
// and outside years 0-9999, in any order.
func TestSecCacheAppendMicro(t *testing.T) {
	times := []int64{
		0, 1, 999_999, 1_000_000, -1, -999_999, -1_000_000, -1_000_001,
		1_700_000_000_123_456, 1_700_000_000_999_999, 1_700_000_001_000_000,
		1_700_000_000_000_007, -62_135_596_800_000_001, 253_402_300_800_000_000,
		1_699_999_999_999_999, 1_700_006_400_000_000, 1_700_006_399_999_999, -86_400_000_000, -86_400_000_001,
		253_402_300_799_999_999, 1_700_000_000_123_456,
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		times = append(times, 1_700_000_000_000_000+rng.Int64N(5_000_000), 1_700_000_000_000_000+rng.Int64N(400_000_000_000))
	}
	var c secCache
	for _, us := range times {
		got, want := c.appendMicro([]byte("x"), us), appendMicro([]byte("x"), us)
		if string(got) != string(want) {
			t.Fatalf("time %d: %q, want %q", us, got, want)
		}
	}
}

// TestStrEscapes: str, which jumps from quote to quote, finds the end a
// byte-by-byte walk finds (a backslash escapes the next byte) in random
// runs of quotes, backslashes and letters, starting anywhere.
func TestStrEscapes(t *testing.T) {
	walk := func(b []byte, i int) (int, bool) {
		for i < len(b) {
			switch b[i] {
			case '\\':
				i += 2
			case '"':
				return i, true
			default:
				i++
			}
		}
		return 0, false
	}
	rng := rand.New(rand.NewPCG(5, 6))
	for range 20000 {
		b := make([]byte, 1+rng.IntN(12))
		for i := range b {
			b[i] = `"\a`[rng.IntN(3)]
		}
		i := rng.IntN(len(b) + 1)
		if i > 0 && b[i-1] == '\\' {
			continue // str starts after an opening quote
		}
		gotEnd, gotOK := str(b, i)
		wantEnd, wantOK := walk(b, i)
		if gotEnd != wantEnd || gotOK != wantOK {
			t.Fatalf("str(%q, %d) = %d, %v; want %d, %v", b, i, gotEnd, gotOK, wantEnd, wantOK)
		}
	}
}

// TestParseMicroAsTimeParse: parseMicro reads the digits itself, and must
// take exactly the values time.Parse takes and AppendFormat writes back
// the same, with the same time: a value taken that the decoder writes
// otherwise would be another line.
func TestParseMicroAsTimeParse(t *testing.T) {
	want := func(v string) (int64, bool) {
		tm, err := time.Parse(microLayout, v)
		if err != nil || tm.Format(microLayout) != v {
			return 0, false
		}
		return tm.UnixMicro(), true
	}
	vs := []string{
		"2024-05-01T12:34:56.123456Z", "1970-01-01T00:00:00.000000Z", "0000-01-01T00:00:00.000000Z",
		"9999-12-31T23:59:59.999999Z", "2024-02-29T10:00:00.000001Z", "2023-02-29T10:00:00.000001Z",
		"2024-02-30T10:00:00.000000Z", "2024-04-31T10:00:00.000000Z", "2024-13-01T10:00:00.000000Z",
		"2024-00-01T10:00:00.000000Z", "2024-01-00T10:00:00.000000Z", "2024-01-01T24:00:00.000000Z",
		"2024-01-01T23:60:00.000000Z", "2024-01-01T23:59:60.000000Z", "2024-01-01T23:59:59.+00000Z",
		"+024-01-01T23:59:59.000000Z", "2024/01/01T23:59:59.000000Z", "2024-01-01T23-59:59.000000Z",
		"2024-01-01T23:59:59,000000Z", "2024-01-01T2 :59:59.000000Z", "2024-01-01T23:59:59.00000aZ",
		"2024-01-01t23:59:59.000000Z", "2024-01-01T23:59:59.000000z", "2024-01-01T23:59:59.0000000",
		"2024-01/01T23:59:59.000000Z", "2024-01-01T23:59-59.000000Z", "1900-02-29T00:00:00.000000Z",
		"2000-02-29T00:00:00.000000Z", "2100-02-29T00:00:00.000000Z", "2024-06-31T00:00:00.000000Z",
		"2024-12-31T00:00:00.000000Z", "2024-12-32T00:00:00.000000Z", "2024-11-31T00:00:00.000000Z",
	}
	rng := rand.New(rand.NewPCG(5, 6))
	for range 2000 {
		us := rng.Int64N(400 * 365 * 86400e6)
		vs = append(vs, time.UnixMicro(us-100*365*86400e6).UTC().Format(microLayout))
		// And fields each near or past its range: leap days, the 31st
		// of short months, a 24th hour, a 60th second.
		vs = append(vs, fmt.Sprintf("%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", []int{1900, 2000, 2023, 2024, 2100, 0, 9999}[rng.IntN(7)],
			rng.IntN(14), 27+rng.IntN(6), 22+rng.IntN(3), 58+rng.IntN(3), 58+rng.IntN(3), rng.IntN(1e6)))
	}
	for _, v := range vs {
		got, ok := parseMicro([]byte(v))
		w, wok := want(v)
		if got != w || ok != wok {
			t.Errorf("parseMicro(%q) = %d, %v; time.Parse gives %d, %v", v, got, ok, w, wok)
		}
	}
}

// TestSplitNextColumn: the splitter finds a leaf's column as the one that
// followed the previous leaf's column last time when the paths are the
// same; lines of shapes that change (a field added, dropped, moved, an
// array longer) must get the columns a splitter with nothing learnt gives.
func TestSplitNextColumn(t *testing.T) {
	lines := []string{
		`{"a":"1","b":{"c":2,"d":["x","y"]},"e":"3"}`,
		`{"a":"1","b":{"c":2,"d":["x","y","z"]},"e":"3"}`,
		`{"a":"1","e":"3","b":{"c":2,"d":[]}}`,
		`{"b":{"d":["x"],"c":2},"a":"1"}`,
		`{"a":"1","b":{"c":2,"x":4,"d":["x","y"]},"e":"3"}`,
		`{"a":"1","b":{"c":{"c":2},"d":[["x"],"y"]},"e":"3"}`,
		`{"a":"1","b":{"c":2,"d":["x","y"]},"e":"3"}`,
		`["1",{"a":"2"},["3"]]`,
		`{"a":"1","b":{"c":2,"d":["x","y"]},"e":"3"}`,
	}
	e := newEncoder(Options{}, nil)
	for range 2 {
		for _, l := range lines {
			if !e.sp.split([]byte(l)) {
				t.Fatalf("split(%s) failed", l)
			}
			fresh := splitter{column: e.column}
			fresh.split([]byte(l))
			if !slices.Equal(e.sp.leaves, fresh.leaves) {
				t.Errorf("split(%s) = %v, want %v", l, e.sp.leaves, fresh.leaves)
			}
		}
	}
}

// TestMetaChecked: a head whose CRC holds but whose meta is malformed
// (a template naming a column that does not exist, a literal running
// past the meta, bytes after the last template, a template count beyond
// the templates) is an error when the head is opened or when an event
// uses a template (each is found and checked then, the last one also
// checking that nothing follows it), never a panic or a wrong line.
func TestMetaChecked(t *testing.T) {
	dec := newDecoder(t)
	x, err := NewEncoder(storeLayout)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	open := func(meta []byte) error {
		head := []byte{flagRows}
		head = binary.AppendUvarint(head, 1)
		head = binary.AppendUvarint(head, 1)
		head = appendChunk(head, x.zenc.EncodeAll(meta, nil))
		r, err := OpenHead(appendCRC(head, 0), dec)
		if err != nil {
			return err
		}
		for tid := range r.tmpls {
			if _, err := r.template(tid); err != nil {
				return err
			}
		}
		return nil
	}
	// paths returns a meta's two columns and its template count.
	paths := func(nt uint64) []byte {
		meta := binary.AppendUvarint(nil, 2)
		meta = appendChunk(meta, []byte("$.a"))
		meta = appendChunk(meta, []byte("$.b"))
		return binary.AppendUvarint(meta, nt)
	}
	// tmpl appends a template of literals lits around columns cols.
	tmpl := func(meta []byte, lits []string, cols ...uint64) []byte {
		meta = binary.AppendUvarint(meta, uint64(len(cols)))
		for _, l := range lits {
			meta = appendChunk(meta, []byte(l))
		}
		for _, c := range cols {
			meta = binary.AppendUvarint(meta, c)
		}
		return meta
	}
	good := tmpl(tmpl(paths(2), []string{`{"a":`, `,"b":`, `}`}, 0, 1), []string{`{"b":`, `}`}, 1)
	if err := open(good); err != nil {
		t.Fatalf("a well-formed meta: %v", err)
	}
	bad := map[string][]byte{
		"column 2 of 2":        tmpl(paths(1), []string{`{"a":`, `}`}, 2),
		"literal past the end": append(binary.AppendUvarint(binary.AppendUvarint(paths(1), 1), 200), '{'),
		"bytes after the last": append(tmpl(paths(1), []string{`{}`}), 0),
		"three templates of 2": good[: len(paths(2))-1 : len(paths(2))-1],
		"cut in a column":      tmpl(paths(1), []string{`{"a":`, `}`}, 1<<20)[:len(paths(1))+1+7+2+1],
	}
	bad["three templates of 2"] = append(append(bad["three templates of 2"], 3), good[len(paths(2)):]...)
	for name, meta := range bad {
		if err := open(meta); err == nil {
			t.Errorf("%s: opened without an error", name)
		}
	}
}

// TestAdopt: heads that pass their block buffers to one another with
// Adopt read every event right, the giver too, whose block the taker's
// next read overwrites (it must not go on reading it as its own).
func TestAdopt(t *testing.T) {
	lines := readLines(t, "../../investigate/testdata/incident/incident.log.gz", 1<<30)
	x, err := NewEncoder(storeLayout)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	dec := newDecoder(t)
	half := len(lines) / 2
	if half < 262 {
		t.Fatalf("%d lines: the test wants two groups of two blocks", len(lines))
	}
	parts := [][][]byte{lines[:half], lines[half:]}
	var groups []Group
	var heads []*Reader
	for _, p := range parts {
		g := x.Encode(p)
		h, err := OpenHead(g.Head, dec)
		if err != nil {
			t.Fatal(err)
		}
		groups, heads = append(groups, g), append(heads, h)
	}
	read := func(k, ord int) {
		t.Helper()
		b := ord / heads[k].PerBlock()
		load := func() ([]byte, error) { return groups[k].Blocks[b], nil }
		err := heads[k].ReadBlock(b, load, []int{ord}, func(o int, line []byte) error {
			if !bytes.Equal(line, parts[k][o]) {
				return fmt.Errorf("group %d event %d: got %.80s", k, o, line)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	// body returns an event of part k's first block with a body.
	body := func(k, from int) int {
		for o := from; o < heads[k].PerBlock(); o++ {
			if bytes.Contains(parts[k][o], []byte(`"requestObject":{`)) {
				return o
			}
		}
		t.Fatalf("no body in group %d's first block", k)
		return 0
	}
	read(0, 3)
	read(1, body(1, 0))
	heads[0].Adopt(heads[1])
	read(0, body(0, 0))
	heads[1].Adopt(heads[0])
	read(1, body(1, 0))
	read(0, 4)
	heads[0].Adopt(heads[1])
	read(0, 260)
	read(1, body(1, 0))
	heads[0].Adopt(heads[1])
	read(0, body(0, 5))
	read(1, 260)
	heads[1].Adopt(heads[1])
	read(1, 261)
}

// TestRoundTripShapesOneApart: each line differs from the one before in
// one literal only (its end, its start, a separator, a key, a value
// turned literal), so the encoder's guess that a line has the previous
// line's template must be checked to the last byte.
func TestRoundTripShapesOneApart(t *testing.T) {
	var lines [][]byte
	for _, l := range []string{
		`{"a":"1","b":2}`, `{"a":"1","b":2} `, `{"a":"1","b":2}`, ` {"a":"1","b":2}`,
		`{"a":"1", "b":2}`, `{"a":"1","c":2}`, `{"a":"1","b":true}`, `{"a":"1","b":2}`,
		`{"a":["1"],"b":2}`, `{"a":"1","b":2,"c":3}`, `{"a":"1","b":2}`, `{"a":"1","b":2}` + "\t",
	} {
		lines = append(lines, []byte(l))
	}
	dec := newDecoder(t)
	for _, opt := range layouts {
		roundTrip(t, dec, lines, opt)
	}
}
