// packed_batch (Go): attention with ALiBi over a packed batch of three sequences, the shapes a
// serving engine mixes in one step (prefill 7x7, chunked prefill 5 queries over 12 keys, decode
// 1 query over 9 keys), causal, H = 4, D = 16, f32, with the log-sum-exp. The slices are used in
// place (no copy); every sequence is checked against a direct computation in double.
package main

import (
	"alibi.dev/go/alibi"
	"fmt"
	"math"
	"math/rand"
	"os"
)

const h, d = 4, 16

var lq, lk = []int{7, 5, 1}, []int{7, 12, 9}
var names = []string{"prefill", "chunked prefill", "decode"}

func main() {
	cuQ, cuK := make([]int32, len(lq)+1), make([]int32, len(lk)+1)
	for b := range lq {
		cuQ[b+1], cuK[b+1] = cuQ[b]+int32(lq[b]), cuK[b]+int32(lk[b])
	}
	tq, tk := int(cuQ[len(lq)]), int(cuK[len(lk)])
	rng := rand.New(rand.NewSource(20240521))
	q, k, v := random(rng, tq*h*d), random(rng, tk*h*d), random(rng, tk*h*d)
	out, lse := make([]float32, len(q)), make([]float32, h*tq)
	fmt.Printf("libalibi %s (Go): packed batch of %d sequences, %d queries, %d keys, H=%d, D=%d, f32\n",
		alibi.Version(), len(lq), tq, tk, h, d)

	if err := forward(q, k, v, cuQ, cuK, out, lse); err != nil {
		fmt.Println("forward failed:", err)
		os.Exit(1)
	}

	slopes, _ := alibi.Slopes(h, 8)
	allPass := true
	for b := range lq {
		errOut, errLse := 0.0, 0.0
		for head := 0; head < h; head++ {
			for i := 0; i < lq[b]; i++ {
				t, qpos := int(cuQ[b])+i, i+lk[b]-lq[b]
				score := make([]float64, min(qpos+1, lk[b]))
				max, sum := math.Inf(-1), 0.0
				for j := range score {
					dot := 0.0
					for e := 0; e < d; e++ {
						dot += float64(q[(t*h+head)*d+e]) * float64(k[((int(cuK[b])+j)*h+head)*d+e])
					}
					score[j] = dot/math.Sqrt(d) - float64(slopes[head])*math.Abs(float64(qpos-j))
					max = math.Max(max, score[j])
				}
				for _, s := range score {
					sum += math.Exp(s - max)
				}
				rowLse := max + math.Log(sum)
				errLse = math.Max(errLse, math.Abs(rowLse-float64(lse[head*tq+t])))
				for e := 0; e < d; e++ {
					acc := 0.0
					for j, s := range score {
						acc += math.Exp(s-rowLse) * float64(v[((int(cuK[b])+j)*h+head)*d+e])
					}
					errOut = math.Max(errOut, math.Abs(acc-float64(out[(t*h+head)*d+e])))
				}
			}
		}
		pass := errOut <= 1e-4 && errLse <= 1e-4
		allPass = allPass && pass
		fmt.Printf("  sequence %d  %-15s  Lq=%2d Lk=%2d  max|out-ref| %.2e  max|lse-ref| %.2e  %s\n",
			b, names[b], lq[b], lk[b], errOut, errLse, verdict(pass))
	}
	fmt.Println(verdict(allPass))
	if !allPass {
		os.Exit(1)
	}
}

func forward(q, k, v []float32, cuQ, cuK []int32, out, lse []float32) error {
	ctx, err := alibi.NewCPUContext()
	if err != nil {
		return err
	}
	defer ctx.Close()
	mask, err := alibi.NewVarlenMask(ctx, cuQ, cuK, true)
	if err != nil {
		return err
	}
	defer mask.Close()
	return ctx.ForwardFloat32(q, k, v, alibi.Heads{Q: h, KV: h, Dim: d}, mask, nil, out, lse)
}

func random(rng *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = rng.Float32()*2 - 1
	}
	return x
}

func min(a, b int) int {
	if a < b {
		return a
	}
	return b
}

func verdict(pass bool) string {
	if pass {
		return "PASS"
	}
	return "FAIL"
}
