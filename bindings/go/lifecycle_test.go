package alibi

import (
	"os"
	"regexp"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// Each cycle creates a context and a mask, runs a slice forward and a tensor copy, and closes
// nothing: only the finalizers free them. 20,000 cycles held at once would be 20,000 contexts and
// as many masks and tensors. A context starts no thread (calls share the process's workers).
func TestUnclosedObjectsAreFreedByTheGarbageCollector(t *testing.T) {
	const cycles, gcEvery, n, h, d = 20000, 200, 16, 2, 32
	qkv, out := random(n*h*d, 17), make([]float32, n*h*d)
	cu := []int32{0, n}
	forgetfulCycle := func() {
		ctx, err := NewCPUContext()
		must(t, err)
		mask, err := NewVarlenMask(ctx, cu, cu, true)
		must(t, err)
		must(t, ctx.ForwardFloat32(qkv, qkv, qkv, Heads{h, h, d}, mask, nil, out, nil))
		x, err := NewTensor(ctx, F32, n, h, d)
		must(t, err)
		must(t, x.CopyFromFloat32(qkv))
	}
	for i := 0; i < gcEvery; i++ {
		forgetfulCycle()
	}
	collect()
	threads0, rss0 := statusField(t, "Threads"), statusField(t, "VmRSS")
	maxThreads, maxRSS := threads0, rss0
	start := time.Now()
	for i := 1; i <= cycles; i++ {
		forgetfulCycle()
		if i%gcEvery == 0 {
			maxThreads, maxRSS = max64(maxThreads, statusField(t, "Threads")), max64(maxRSS, statusField(t, "VmRSS"))
			collect()
		}
	}
	settled := settledThreads(t, threads0+8)
	t.Logf("%d unclosed cycles in %v, GC every %d: threads %d, at most %d, %d once settled; RSS %d KiB, at most %d KiB",
		cycles, time.Since(start).Round(time.Millisecond), gcEvery, threads0, maxThreads, settled, rss0, maxRSS)
	// The warm-up started the shared workers; the Go runtime may add a few threads of its own.
	if maxThreads > threads0+8 {
		t.Errorf("threads grew from %d to %d: unclosed contexts are not freed", threads0, maxThreads)
	}
	if settled > threads0+8 {
		t.Errorf("%d threads once collected, %d before: unclosed contexts are not freed", settled, threads0)
	}
	if maxRSS > rss0+32*1024 {
		t.Errorf("resident memory grew from %d KiB to %d KiB: unclosed objects are not freed", rss0, maxRSS)
	}
}

// settledThreads collects until the thread count is at most target (finalizers destroy contexts
// one at a time), for up to 5 s, and returns the count.
func settledThreads(t *testing.T, target int64) int64 {
	deadline := time.Now().Add(5 * time.Second)
	for {
		collect()
		threads := statusField(t, "Threads")
		if threads <= target || time.Now().After(deadline) {
			return threads
		}
	}
}

// collect runs the garbage collector twice: the first queues the finalizers of the unreachable
// objects, the pause lets them run, the second frees what they released.
func collect() {
	runtime.GC()
	time.Sleep(10 * time.Millisecond)
	runtime.GC()
}

// statusField is a number of /proc/self/status, e.g. Threads or VmRSS (in KiB).
func statusField(t *testing.T, name string) int64 {
	t.Helper()
	status, err := os.ReadFile("/proc/self/status")
	must(t, err)
	m := regexp.MustCompile(name + `:\s+(\d+)`).FindSubmatch(status)
	if m == nil {
		t.Fatalf("no %s in /proc/self/status", name)
	}
	value, err := strconv.ParseInt(string(m[1]), 10, 64)
	must(t, err)
	return value
}

func max64(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}
