package metrics

import (
	"bufio"
	"bytes"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"time"
)

// GoCollector gives the go_* families client_golang's
// collectors.NewGoCollector() gives by default, with the same names, help
// and types.
func GoCollector() Collector { return CollectorFunc(collectGo) }

func collectGo() []Family {
	gauge := func(name, help string, v float64) Family {
		return Family{Name: name, Help: help, Type: GaugeType, Metrics: []Metric{{Value: v}}}
	}
	counter := func(name, help string, v float64) Family {
		return Family{Name: name, Help: help, Type: CounterType, Metrics: []Metric{{Value: v}}}
	}
	var gc debug.GCStats
	gc.PauseQuantiles = make([]time.Duration, 5)
	debug.ReadGCStats(&gc)
	pauses := Metric{Sum: gc.PauseTotal.Seconds(), Count: uint64(gc.NumGC)}
	for i, q := range gc.PauseQuantiles {
		pauses.Quantiles = append(pauses.Quantiles, Quantile{float64(i) / float64(len(gc.PauseQuantiles)-1), q.Seconds()})
	}
	threads, _ := runtime.ThreadCreateProfile(nil)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	rm := []metrics.Sample{{Name: "/gc/gogc:percent"}, {Name: "/gc/gomemlimit:bytes"}, {Name: "/sched/gomaxprocs:threads"}}
	metrics.Read(rm)
	rmValue := func(i int) float64 {
		if rm[i].Value.Kind() != metrics.KindUint64 {
			return 0
		}
		return float64(rm[i].Value.Uint64())
	}
	f := func(v uint64) float64 { return float64(v) }
	return []Family{
		{Name: "go_gc_duration_seconds", Help: "A summary of the wall-time pause (stop-the-world) duration in garbage collection cycles.", Type: SummaryType, Metrics: []Metric{pauses}},
		gauge("go_gc_gogc_percent", "Heap size target percentage configured by the user, otherwise 100. This value is set by the GOGC environment variable, and the runtime/debug.SetGCPercent function. Sourced from /gc/gogc:percent.", rmValue(0)),
		gauge("go_gc_gomemlimit_bytes", "Go runtime memory limit configured by the user, otherwise math.MaxInt64. This value is set by the GOMEMLIMIT environment variable, and the runtime/debug.SetMemoryLimit function. Sourced from /gc/gomemlimit:bytes.", rmValue(1)),
		gauge("go_goroutines", "Number of goroutines that currently exist.", float64(runtime.NumGoroutine())),
		{Name: "go_info", Help: "Information about the Go environment.", Type: GaugeType, Metrics: []Metric{{Labels: []Label{{"version", runtime.Version()}}, Value: 1}}},
		gauge("go_memstats_alloc_bytes", "Number of bytes allocated in heap and currently in use. Equals to /memory/classes/heap/objects:bytes.", f(ms.HeapAlloc)),
		counter("go_memstats_alloc_bytes_total", "Total number of bytes allocated in heap until now, even if released already. Equals to /gc/heap/allocs:bytes.", f(ms.TotalAlloc)),
		gauge("go_memstats_buck_hash_sys_bytes", "Number of bytes used by the profiling bucket hash table. Equals to /memory/classes/profiling/buckets:bytes.", f(ms.BuckHashSys)),
		counter("go_memstats_frees_total", "Total number of heap objects frees. Equals to /gc/heap/frees:objects + /gc/heap/tiny/allocs:objects.", f(ms.Frees)),
		gauge("go_memstats_gc_sys_bytes", "Number of bytes used for garbage collection system metadata. Equals to /memory/classes/metadata/other:bytes.", f(ms.GCSys)),
		gauge("go_memstats_heap_alloc_bytes", "Number of heap bytes allocated and currently in use, same as go_memstats_alloc_bytes. Equals to /memory/classes/heap/objects:bytes.", f(ms.HeapAlloc)),
		gauge("go_memstats_heap_idle_bytes", "Number of heap bytes waiting to be used. Equals to /memory/classes/heap/released:bytes + /memory/classes/heap/free:bytes.", f(ms.HeapIdle)),
		gauge("go_memstats_heap_inuse_bytes", "Number of heap bytes that are in use. Equals to /memory/classes/heap/objects:bytes + /memory/classes/heap/unused:bytes", f(ms.HeapInuse)),
		gauge("go_memstats_heap_objects", "Number of currently allocated objects. Equals to /gc/heap/objects:objects.", f(ms.HeapObjects)),
		gauge("go_memstats_heap_released_bytes", "Number of heap bytes released to OS. Equals to /memory/classes/heap/released:bytes.", f(ms.HeapReleased)),
		gauge("go_memstats_heap_sys_bytes", "Number of heap bytes obtained from system. Equals to /memory/classes/heap/objects:bytes + /memory/classes/heap/unused:bytes + /memory/classes/heap/released:bytes + /memory/classes/heap/free:bytes.", f(ms.HeapSys)),
		gauge("go_memstats_last_gc_time_seconds", "Number of seconds since 1970 of last garbage collection.", float64(gc.LastGC.UnixNano())/1e9),
		counter("go_memstats_mallocs_total", "Total number of heap objects allocated, both live and gc-ed. Semantically a counter version for go_memstats_heap_objects gauge. Equals to /gc/heap/allocs:objects + /gc/heap/tiny/allocs:objects.", f(ms.Mallocs)),
		gauge("go_memstats_mcache_inuse_bytes", "Number of bytes in use by mcache structures. Equals to /memory/classes/metadata/mcache/inuse:bytes.", f(ms.MCacheInuse)),
		gauge("go_memstats_mcache_sys_bytes", "Number of bytes used for mcache structures obtained from system. Equals to /memory/classes/metadata/mcache/inuse:bytes + /memory/classes/metadata/mcache/free:bytes.", f(ms.MCacheSys)),
		gauge("go_memstats_mspan_inuse_bytes", "Number of bytes in use by mspan structures. Equals to /memory/classes/metadata/mspan/inuse:bytes.", f(ms.MSpanInuse)),
		gauge("go_memstats_mspan_sys_bytes", "Number of bytes used for mspan structures obtained from system. Equals to /memory/classes/metadata/mspan/inuse:bytes + /memory/classes/metadata/mspan/free:bytes.", f(ms.MSpanSys)),
		gauge("go_memstats_next_gc_bytes", "Number of heap bytes when next garbage collection will take place. Equals to /gc/heap/goal:bytes.", f(ms.NextGC)),
		gauge("go_memstats_other_sys_bytes", "Number of bytes used for other system allocations. Equals to /memory/classes/other:bytes.", f(ms.OtherSys)),
		gauge("go_memstats_stack_inuse_bytes", "Number of bytes obtained from system for stack allocator in non-CGO environments. Equals to /memory/classes/heap/stacks:bytes.", f(ms.StackInuse)),
		gauge("go_memstats_stack_sys_bytes", "Number of bytes obtained from system for stack allocator. Equals to /memory/classes/heap/stacks:bytes + /memory/classes/os-stacks:bytes.", f(ms.StackSys)),
		gauge("go_memstats_sys_bytes", "Number of bytes obtained from system. Equals to /memory/classes/total:byte.", f(ms.Sys)),
		gauge("go_sched_gomaxprocs_threads", "The current runtime.GOMAXPROCS setting, or the number of operating system threads that can execute user-level Go code simultaneously. Sourced from /sched/gomaxprocs:threads.", rmValue(2)),
		gauge("go_threads", "Number of OS threads created.", float64(threads)),
	}
}

// userHZ is the kernel's clock ticks per second in /proc's times, as
// procfs assumes.
const userHZ = 100

// ProcessCollector gives the process_* families client_golang's
// collectors.NewProcessCollector gives on Linux, read from /proc/self; a
// file that cannot be read leaves its families out, as there.
func ProcessCollector() Collector { return CollectorFunc(collectProcess) }

func collectProcess() []Family {
	one := func(name, help string, typ Type, v float64) Family {
		return Family{Name: name, Help: help, Type: typ, Metrics: []Metric{{Value: v}}}
	}
	var fams []Family
	if st, ok := procStat(); ok {
		fams = append(fams,
			one("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", CounterType, float64(st.utime+st.stime)/userHZ),
			one("process_virtual_memory_bytes", "Virtual memory size in bytes.", GaugeType, float64(st.vsize)),
			one("process_resident_memory_bytes", "Resident memory size in bytes.", GaugeType, float64(st.rss*uint64(os.Getpagesize()))))
		if boot, ok := bootTime(); ok {
			fams = append(fams, one("process_start_time_seconds", "Start time of the process since unix epoch in seconds.", GaugeType, float64(boot)+float64(st.start)/userHZ))
		}
	}
	if fds, ok := openFDs(); ok {
		fams = append(fams, one("process_open_fds", "Number of open file descriptors.", GaugeType, float64(fds)))
	}
	if files, space, ok := limits(); ok {
		fams = append(fams,
			one("process_max_fds", "Maximum number of open file descriptors.", GaugeType, files),
			one("process_virtual_memory_max_bytes", "Maximum amount of virtual memory available in bytes.", GaugeType, space))
	}
	if in, out, ok := netOctets(); ok {
		fams = append(fams,
			one("process_network_receive_bytes_total", "Number of bytes received by the process over the network.", CounterType, in),
			one("process_network_transmit_bytes_total", "Number of bytes sent by the process over the network.", CounterType, out))
	}
	return fams
}

type stat struct{ utime, stime, start, vsize, rss uint64 }

// procStat reads /proc/self/stat: the fields after the command's closing
// parenthesis (the command may hold spaces and parentheses).
func procStat() (stat, bool) {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return stat{}, false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return stat{}, false
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state): utime is field 14, stime 15, starttime 22,
	// vsize 23, rss 24.
	if len(f) < 22 {
		return stat{}, false
	}
	u := func(k int) uint64 { n, _ := strconv.ParseUint(f[k-3], 10, 64); return n }
	return stat{utime: u(14), stime: u(15), start: u(22), vsize: u(23), rss: u(24)}, true
}

// bootTime is /proc/stat's btime.
func bootTime() (uint64, bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, false
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// openFDs counts /proc/self/fd, from its size where the kernel gives it
// (Linux 6.2 on), as procfs does.
func openFDs() (int, bool) {
	if st, err := os.Stat("/proc/self/fd"); err == nil && st.Size() > 0 {
		return int(st.Size()), true
	}
	d, err := os.Open("/proc/self/fd")
	if err != nil {
		return 0, false
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	return len(names), err == nil
}

// limits reads the soft limits of open files and address space from
// /proc/self/limits; "unlimited" is the largest uint64.
func limits() (files, space float64, ok bool) {
	b, err := os.ReadFile("/proc/self/limits")
	if err != nil {
		return 0, 0, false
	}
	soft := func(line, prefix string) (float64, bool) {
		rest, ok := strings.CutPrefix(line, prefix)
		if !ok {
			return 0, false
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			return 0, false
		}
		if f[0] == "unlimited" {
			return math.MaxUint64, true
		}
		n, err := strconv.ParseUint(f[0], 10, 64)
		return float64(n), err == nil
	}
	var gotFiles, gotSpace bool
	for line := range strings.Lines(string(b)) {
		if v, ok := soft(line, "Max open files"); ok {
			files, gotFiles = v, true
		}
		if v, ok := soft(line, "Max address space"); ok {
			space, gotSpace = v, true
		}
	}
	return files, space, gotFiles && gotSpace
}

// netOctets reads IpExt's InOctets and OutOctets from
// /proc/self/net/netstat (the process's network namespace).
func netOctets() (in, out float64, ok bool) {
	fh, err := os.Open("/proc/self/net/netstat")
	if err != nil {
		return 0, 0, false
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	var names []string
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || f[0] != "IpExt:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i := 1; i < len(f) && i < len(names); i++ {
			v, _ := strconv.ParseFloat(f[i], 64)
			switch names[i] {
			case "InOctets":
				in = v
			case "OutOctets":
				out = v
			}
		}
		return in, out, true
	}
	return 0, 0, false
}
