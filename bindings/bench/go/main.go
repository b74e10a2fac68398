// forward_go: forward_c's measurement from Go, on []float32 slices used in place for the call;
// the same arguments, [runs [threads [seqs seqLen heads dim]]], and the same line.
package main

import (
	"alibi.dev/go/alibi"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strconv"
	"syscall"
	"time"
	"unsafe"
)

const warmup = 2
const clockThreadCPUTime = 3 // CLOCK_THREAD_CPUTIME_ID

func main() {
	runtime.LockOSThread() // the thread CPU clock then follows this goroutine's calls
	runs, threads := arg(0, 10), arg(1, 0)
	seqs, seqLen, h, d := arg(2, 64), arg(3, 128), arg(4, 16), arg(5, 128)
	t := seqs * seqLen
	n := t * h * d
	q, k, v, out := make([]float32, n), make([]float32, n), make([]float32, n), make([]float32, n)
	lse := make([]float32, h*t)
	for i := 0; i < n; i++ {
		q[i] = float32(i%97)/97 - 0.5
		k[i] = float32(i%89)/89 - 0.5
		v[i] = float32(i%83)/83 - 0.5
	}
	cu := make([]int32, seqs+1)
	for b := range cu {
		cu[b] = int32(b * seqLen)
	}
	ctx, err := alibi.NewCPUContext()
	check(err)
	defer ctx.Close()
	check(ctx.SetNumThreads(threads))
	mask, err := alibi.NewVarlenMask(ctx, cu, cu, true)
	check(err)
	defer mask.Close()
	wall, cpu := make([]float64, runs), make([]float64, runs)
	for r := -warmup; r < runs; r++ {
		wallStart, cpuStart := time.Now(), threadCPUMs()
		check(ctx.ForwardFloat32(q, k, v, alibi.Heads{Q: h, KV: h, Dim: d}, mask, nil, out, lse))
		if r >= 0 {
			cpu[r] = threadCPUMs() - cpuStart
			wall[r] = float64(time.Since(wallStart).Nanoseconds()) / 1e6
		}
	}
	sort.Float64s(wall)
	sort.Float64s(cpu)
	fmt.Printf("go      median_ms=%.4f min_ms=%.4f cpu_median_ms=%.4f cpu_min_ms=%.4f runs=%d threads=%d shape=%dx%d,H=%d,D=%d\n",
		wall[runs/2], wall[0], cpu[runs/2], cpu[0], runs, threads, seqs, seqLen, h, d)
}

// arg is argument i (0-based after the program name): runs and threads alone, the shape only whole.
func arg(i, fallback int) int {
	if len(os.Args) > i+1 && (i < 2 || len(os.Args) > 6) {
		if value, err := strconv.Atoi(os.Args[i+1]); err == nil {
			return value
		}
	}
	return fallback
}

func threadCPUMs() float64 {
	var ts syscall.Timespec
	syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockThreadCPUTime, uintptr(unsafe.Pointer(&ts)), 0)
	return float64(ts.Sec)*1e3 + float64(ts.Nsec)/1e6
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
