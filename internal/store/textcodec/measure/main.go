// Command measure compares text layouts on a JSON-lines corpus for ADR
// 0023: the columnar layouts of package textcodec and the store's current
// text blocks (raw lines sorted by user, verb and resource in 16 MiB
// groups, cut into 384 KiB zstd blocks). It streams the corpus one group
// at a time, so memory stays near a group's size whatever the corpus.
//
//	GOMAXPROCS=1 go run ./internal/store/textcodec/measure -in FILE [-max N]
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/kubetrail/kubetrail/internal/store/textcodec"
)

// layout is one way of storing a group's text.
type layout struct {
	name string
	opt  textcodec.Options
	// blocks, when set, is the store's current layout: raw lines in
	// zstd blocks of this many bytes.
	blocks int
}

// result adds up a layout's figures over the groups.
type result struct {
	bytes             int64
	encode, decodeAll time.Duration
	open              time.Duration // Open: the group's header and meta
	opens             int
	one               time.Duration // per single-event read, the group open
	ones              int
	sub               [4]time.Duration // 1000 events of 2M, 1%, 2.5% of each group, the secrets
}

var fractions = [3]float64{0, 0.01, 0.025}

func main() {
	in := flag.String("in", "/tmp/kubetrail-bench/audit-200000.log", "JSON lines")
	maxLines := flag.Int("max", 0, "read at most this many lines (0: all)")
	groupBytes := flag.Int("group-bytes", 16<<20, "raw bytes of a group, as the store's")
	sorted := flag.Bool("sorted", true, "sort each group by user, verb, resource as the store does")
	only := flag.String("layouts", "", "layout names separated by semicolons (default all)")
	columns := flag.Bool("columns", false, "print where the bytes of the all-options layout go, by column")
	flag.Parse()
	layouts := allLayouts()
	if *only != "" {
		keep := strings.Split(*only, ";")
		layouts = slices.DeleteFunc(layouts, func(l layout) bool { return !slices.Contains(keep, l.name) })
	}
	f, err := os.Open(*in)
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	res := make([]result, len(layouts))
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
	if err != nil {
		log.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 7))
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 64<<20)
	var group [][]byte
	colSizes := map[string]int{}
	nSecrets := 0
	size, events, raw := 0, 0, int64(0)
	flush := func() {
		if len(group) == 0 {
			return
		}
		if *sorted {
			sortGroup(group)
		}
		rds := newReads(rng, len(group))
		rds.subs[3] = secrets(group)
		nSecrets += len(rds.subs[3])
		if *columns {
			addColumns(group, dec, colSizes)
		} else {
			for i, l := range layouts {
				measure(l, group, dec, rds, &res[i])
			}
		}
		group, size = nil, 0
	}
	for sc.Scan() {
		if *maxLines > 0 && events == *maxLines {
			break
		}
		line := bytes.Clone(sc.Bytes())
		group = append(group, line)
		size += len(line) + 1
		raw += int64(len(line) + 1)
		events++
		if size >= *groupBytes {
			flush()
		}
	}
	if err := sc.Err(); err != nil {
		log.Fatal(err)
	}
	flush()
	mb := float64(raw) / 1e6
	if *columns {
		printColumns(colSizes, events)
		return
	}
	fmt.Printf("%d events (%d on secrets), %.1f MB of lines, groups of %d MiB, sorted %v\n\n", events, nSecrets, mb, *groupBytes>>20, *sorted)
	fmt.Println("| layout | bytes | B/event | x raw | encode MB/s | decode all MB/s | open µs | 1 event µs | 1000 ev ms | 1% ms | 2.5% ms | secrets ms |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|---|")
	for i, l := range layouts {
		r := res[i]
		fmt.Printf("| %s | %d | %.1f | %.4f | %.1f | %.1f | %.0f | %.0f | %.1f | %.1f | %.1f | %.1f |\n",
			l.name, r.bytes, float64(r.bytes)/float64(events), float64(r.bytes)/float64(raw),
			mb/r.encode.Seconds(), mb/r.decodeAll.Seconds(),
			float64(r.open.Microseconds())/float64(max(r.opens, 1)),
			float64(r.one.Microseconds())/float64(max(r.ones, 1)),
			ms(r.sub[0]), ms(r.sub[1]), ms(r.sub[2]), ms(r.sub[3]))
	}
}

// now is the process's CPU time (user and system): with GOMAXPROCS=1 on
// a machine other work shares, it measures the work done, where the wall
// clock would measure the neighbours too.
func now() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		log.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func since(t0 time.Duration) time.Duration { return now() - t0 }

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func allLayouts() []layout {
	all := textcodec.Options{Types: true, URI: true, Dict: true, Opaque: true}
	with := func(f func(*textcodec.Options)) textcodec.Options {
		o := all
		f(&o)
		return o
	}
	return []layout{
		{name: "v4 text blocks (384 KiB zstd-3)", blocks: 384 << 10},
		{name: "v4 text, 64 KiB blocks", blocks: 64 << 10},
		{name: "columns only, 1 block", opt: textcodec.Options{}},
		{name: "+opaque bodies", opt: textcodec.Options{Opaque: true}},
		{name: "+types (uuid,time,int)", opt: textcodec.Options{Opaque: true, Types: true}},
		{name: "+uri from objectRef", opt: textcodec.Options{Opaque: true, Types: true, URI: true}},
		{name: "+dict (all), 1 block", opt: all},
		{name: "all, one frame, 1 block", opt: with(func(o *textcodec.Options) { o.OneFrame = true })},
		{name: "all, 16384/block", opt: with(func(o *textcodec.Options) { o.BlockEvents = 16384 })},
		{name: "all, 4096/block", opt: with(func(o *textcodec.Options) { o.BlockEvents = 4096 })},
		{name: "all, 1024/block", opt: with(func(o *textcodec.Options) { o.BlockEvents = 1024 })},
		{name: "all, 256/block", opt: with(func(o *textcodec.Options) { o.BlockEvents = 256 })},
		{name: "all, one frame, 1024/block", opt: with(func(o *textcodec.Options) { o.BlockEvents = 1024; o.OneFrame = true })},
		{name: "all, one frame, 256/block", opt: with(func(o *textcodec.Options) { o.BlockEvents = 256; o.OneFrame = true })},
		{name: "all, 1024/block, zstd better", opt: with(func(o *textcodec.Options) { o.BlockEvents = 1024; o.Level = zstd.SpeedBetterCompression })},
		{name: "rows, 1024/block", opt: with(func(o *textcodec.Options) { o.BlockEvents = 1024; o.Rows = true })},
		{name: "rows, 256/block", opt: with(func(o *textcodec.Options) { o.BlockEvents = 256; o.Rows = true })},
		{name: "rows, bodies apart, 1024/block", opt: with(func(o *textcodec.Options) { o.BlockEvents = 1024; o.Rows = true; o.BodiesApart = true })},
		{name: "rows, bodies apart, 256/block", opt: with(func(o *textcodec.Options) { o.BlockEvents = 256; o.Rows = true; o.BodiesApart = true })},
		{name: "rows, 4096/block", opt: with(func(o *textcodec.Options) { o.BlockEvents = 4096; o.Rows = true })},
		{name: "rows, 1024/block, zstd better", opt: with(func(o *textcodec.Options) { o.BlockEvents = 1024; o.Rows = true; o.Level = zstd.SpeedBetterCompression })},
		{name: "all, 1024/block, bodies split", opt: with(func(o *textcodec.Options) { o.BlockEvents = 1024; o.Opaque = false })},
		{name: "all, 1024/block, no dict", opt: with(func(o *textcodec.Options) { o.BlockEvents = 1024; o.Dict = false })},
		{name: "store v5, 256/block", opt: storeV5(256)},
		{name: "store v5, 128/block", opt: storeV5(128)},
		{name: "store v5, 64/block", opt: storeV5(64)},
	}
}

// storeV5 is the store's v5 text layout (internal/store/local's
// textLayout) with perBlock events a block.
func storeV5(perBlock int) textcodec.Options {
	return textcodec.Options{BlockEvents: perBlock, Types: true, URI: true, Opaque: true, Rows: true, BodiesApart: true}
}

// sortGroup sorts lines by user, verb and resource, keeping arrival order
// among equals, as the store's writer does.
func sortGroup(lines [][]byte) {
	type ev struct {
		User struct {
			Username string `json:"username"`
		} `json:"user"`
		Verb      string `json:"verb"`
		ObjectRef struct {
			Resource string `json:"resource"`
		} `json:"objectRef"`
	}
	keys := make(map[*byte]string, len(lines))
	for _, l := range lines {
		var e ev
		_ = json.Unmarshal(l, &e) // a line that is not an event sorts first
		if len(l) > 0 {
			keys[&l[0]] = e.User.Username + "\x00" + e.Verb + "\x00" + e.ObjectRef.Resource
		}
	}
	key := func(l []byte) string {
		if len(l) == 0 {
			return ""
		}
		return keys[&l[0]]
	}
	slices.SortStableFunc(lines, func(a, b []byte) int { return strings.Compare(key(a), key(b)) })
}

// reads are the events each layout reads from a group: 20 single events,
// then the subsets of fractions.
type reads struct {
	ones []int
	subs [4][]int
}

func newReads(rng *rand.Rand, n int) reads {
	var rd reads
	for range 20 {
		rd.ones = append(rd.ones, rng.IntN(n))
	}
	for k := range fractions {
		rd.subs[k] = pick(rng, n, k)
	}
	return rd
}

// secrets returns the events whose objectRef is a secret: the printing
// of issue 12's 47k secret-access events, whose runs the sort by user,
// verb and resource keeps together.
func secrets(lines [][]byte) []int {
	var ords []int
	for i, l := range lines {
		if bytes.Contains(l, []byte(`"objectRef":{"resource":"secrets"`)) {
			ords = append(ords, i)
		}
	}
	return ords
}

// best runs f three times and returns its shortest CPU time: the machine
// is shared, and the shortest run is the least disturbed.
func best(f func() error) time.Duration {
	d := time.Duration(1 << 62)
	for range 3 {
		t0 := now()
		if err := f(); err != nil {
			log.Fatal(err)
		}
		d = min(d, since(t0))
	}
	return d
}

// measure encodes one group in layout l and times its reads.
func measure(l layout, lines [][]byte, dec *zstd.Decoder, rds reads, r *result) {
	if l.blocks > 0 {
		measureBlocks(l, lines, dec, rds, r)
		return
	}
	t0 := now()
	g, err := textcodec.Encode(lines, l.opt)
	if err != nil {
		log.Fatal(err)
	}
	r.encode += since(t0)
	r.bytes += int64(len(g))
	check := func(ord int, line []byte) error {
		if !bytes.Equal(line, lines[ord]) {
			return fmt.Errorf("%s: event %d does not round-trip", l.name, ord)
		}
		return nil
	}
	var rd *textcodec.Reader
	r.open += best(func() (err error) {
		rd, err = textcodec.Open(g, dec)
		return err
	})
	r.opens++
	r.decodeAll += best(func() error { return rd.All(func(int, []byte) error { return nil }) })
	if err := rd.All(check); err != nil {
		log.Fatal(err)
	}
	for _, ord := range rds.ones {
		r.one += best(func() error { return rd.Events([]int{ord}, check) })
		r.ones++
	}
	for k, ords := range rds.subs {
		r.sub[k] += best(func() error { return rd.Events(ords, check) })
	}
}

// pick returns ascending random ordinals: 1000 spread over every group of
// the 2M corpus (about 1000/150 per group) for k = 0, else fractions[k].
func pick(rng *rand.Rand, n, k int) []int {
	p := fractions[k]
	if k == 0 {
		p = 1000.0 / 2e6
	}
	var ords []int
	for i := range n {
		if rng.Float64() < p {
			ords = append(ords, i)
		}
	}
	return ords
}

// measureBlocks is the store's v4 text: the lines, one after another
// with a newline, cut into zstd blocks of about l.blocks bytes; a read
// decompresses the blocks of the events it wants and finds their lines.
func measureBlocks(l layout, lines [][]byte, dec *zstd.Decoder, rds reads, r *result) {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1))
	if err != nil {
		log.Fatal(err)
	}
	defer enc.Close()
	t0 := now()
	var blocks [][]byte
	var first []int // first event of each block
	var plain []byte
	for i, line := range lines {
		if len(plain) == 0 {
			first = append(first, i)
		}
		plain = append(append(plain, line...), '\n')
		if len(plain) >= l.blocks || i == len(lines)-1 {
			blocks = append(blocks, enc.EncodeAll(plain, nil))
			plain = plain[:0]
		}
	}
	r.encode += since(t0)
	for _, b := range blocks {
		r.bytes += int64(len(b))
	}
	first = append(first, len(lines))
	var buf []byte
	read := func(ords []int) {
		for i := 0; i < len(ords); {
			b, _ := slices.BinarySearch(first, ords[i]+1)
			b--
			buf, err = dec.DecodeAll(blocks[b], buf[:0])
			if err != nil {
				log.Fatal(err)
			}
			ord, rest := first[b], buf
			for ; i < len(ords) && ords[i] < first[b+1]; i++ {
				for ord < ords[i] {
					rest = rest[bytes.IndexByte(rest, '\n')+1:]
					ord++
				}
				line := rest[:bytes.IndexByte(rest, '\n')]
				if !bytes.Equal(line, lines[ord]) {
					log.Fatalf("%s: event %d does not round-trip", l.name, ord)
				}
			}
		}
	}
	all := make([]int, len(lines))
	for i := range all {
		all[i] = i
	}
	r.decodeAll += best(func() error { read(all); return nil })
	for _, ord := range rds.ones {
		r.one += best(func() error { read([]int{ord}); return nil })
		r.ones++
	}
	for k, ords := range rds.subs {
		r.sub[k] += best(func() error { read(ords); return nil })
	}
}

// addColumns adds the stored bytes of each column of a group written
// with every option, 1024 events a block.
func addColumns(lines [][]byte, dec *zstd.Decoder, sizes map[string]int) {
	g, err := textcodec.Encode(lines, textcodec.Options{BlockEvents: 1024, Types: true, URI: true, Dict: true, Opaque: true})
	if err != nil {
		log.Fatal(err)
	}
	rd, err := textcodec.Open(g, dec)
	if err != nil {
		log.Fatal(err)
	}
	s, err := rd.ColumnBytes()
	if err != nil {
		log.Fatal(err)
	}
	total := 0
	for k, v := range s {
		sizes[k] += v
		total += v
	}
	sizes["(header, meta, block tables)"] += len(g) - total
}

func printColumns(sizes map[string]int, events int) {
	names := make([]string, 0, len(sizes))
	total := 0
	for k, v := range sizes {
		names = append(names, k)
		total += v
	}
	slices.SortFunc(names, func(a, b string) int { return sizes[b] - sizes[a] })
	fmt.Printf("%d events, %d bytes, %.1f B/event\n\n| column | bytes | B/event | share |\n|---|---|---|---|\n", events, total, float64(total)/float64(events))
	for _, n := range names[:min(len(names), 25)] {
		fmt.Printf("| %s | %d | %.2f | %.1f%% |\n", n, sizes[n], float64(sizes[n])/float64(events), 100*float64(sizes[n])/float64(total))
	}
}
