package alibi

import (
	"fmt"
	"math"
	"math/rand"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"

	"alibi.dev/go/alibi/internal/capi"
)

const hq, hkv, dim = 4, 2, 16

// prefill 5x5, chunked prefill 3 queries over 7 keys, decode 1 query over 4 keys
var cuQ, cuK = []int32{0, 5, 8, 9}, []int32{0, 5, 12, 16}

// Slices over `tokens` tokens: 0 and 1 hold keys [0, 4), slice 2 keys [4, 12), where queries 0..3
// see no key.
const tokens = 12

var qRanges, kRanges = []int32{0, 4, 4, 12, 4, 12}, []int32{0, 4, 0, 4, 4, 12}
var types = []MaskType{MaskCausal, MaskFull, MaskCausal}

// reference is attention with ALiBi in plain double loops; positions and visibility are given.
func reference(q, k, v []float32, tq, tk int, visible func(i, j int) bool, qpos, kpos []int) (out, lse []float64) {
	formula := func(i, h int) float64 { return slopeOf(h, hq) }
	return referenceWithSlopes(q, k, v, tq, tk, visible, qpos, kpos, formula)
}

// referenceWithSlopes is reference with the slope of query i, head h given by slope.
func referenceWithSlopes(q, k, v []float32, tq, tk int, visible func(i, j int) bool, qpos, kpos []int,
	slopeOfQuery func(i, h int) float64) (out, lse []float64) {
	out, lse = make([]float64, tq*hq*dim), make([]float64, hq*tq)
	scale := 1 / math.Sqrt(dim)
	score := make([]float64, tk)
	for h := 0; h < hq; h++ {
		kh := h / (hq / hkv)
		for i := 0; i < tq; i++ {
			slope := slopeOfQuery(i, h)
			max := math.Inf(-1)
			for j := 0; j < tk; j++ {
				score[j] = math.Inf(-1)
				if !visible(i, j) {
					continue
				}
				dot := 0.0
				for e := 0; e < dim; e++ {
					dot += float64(q[(i*hq+h)*dim+e]) * float64(k[(j*hkv+kh)*dim+e])
				}
				score[j] = scale*dot - slope*math.Abs(float64(qpos[i]-kpos[j]))
				max = math.Max(max, score[j])
			}
			if math.IsInf(max, -1) {
				lse[h*tq+i] = max
				continue
			}
			sum := 0.0
			for j := 0; j < tk; j++ {
				sum += math.Exp(score[j] - max)
			}
			lse[h*tq+i] = max + math.Log(sum)
			for j := 0; j < tk; j++ {
				p := math.Exp(score[j]-max) / sum
				for e := 0; p != 0 && e < dim; e++ {
					out[(i*hq+h)*dim+e] += p * float64(v[(j*hkv+kh)*dim+e])
				}
			}
		}
	}
	return out, lse
}

// slopeOf is the slope formula with max_bias 8: c = 2^floor(log2 n), m0 = 2^(-8/c), m1 = 2^(-8/(2c)).
func slopeOf(h, n int) float64 {
	c := 1
	for c*2 <= n {
		c *= 2
	}
	if h < c {
		return math.Pow(math.Pow(2, -8.0/float64(c)), float64(h+1))
	}
	return math.Pow(math.Pow(2, -8.0/float64(2*c)), float64(2*(h-c)+1))
}

// varlenCausalReference: bottom-right aligned per sequence, positions likewise.
func varlenCausalReference(q, k, v []float32) (out, lse []float64) {
	tq, tk := int(cuQ[len(cuQ)-1]), int(cuK[len(cuK)-1])
	seqQ, seqK, qpos, kpos := make([]int, tq), make([]int, tk), make([]int, tq), make([]int, tk)
	for b := 0; b+1 < len(cuQ); b++ {
		lq, lk := int(cuQ[b+1]-cuQ[b]), int(cuK[b+1]-cuK[b])
		for r := 0; r < lq; r++ {
			seqQ[int(cuQ[b])+r], qpos[int(cuQ[b])+r] = b, r+lk-lq
		}
		for c := 0; c < lk; c++ {
			seqK[int(cuK[b])+c], kpos[int(cuK[b])+c] = b, c
		}
	}
	visible := func(i, j int) bool { return seqQ[i] == seqK[j] && kpos[j] <= qpos[i] }
	return reference(q, k, v, tq, tk, visible, qpos, kpos)
}

func random(n int, seed int64) []float32 {
	rng := rand.New(rand.NewSource(seed))
	x := make([]float32, n)
	for i := range x {
		x[i] = rng.Float32()*2 - 1
	}
	return x
}

func assertClose(t *testing.T, what string, expected []float64, actual []float32, tol float64) {
	t.Helper()
	if len(expected) != len(actual) {
		t.Fatalf("%s: %d values, expected %d", what, len(actual), len(expected))
	}
	for i, e := range expected {
		a := float64(actual[i])
		if math.IsInf(e, 0) && a != e || !math.IsInf(e, 0) && !(math.Abs(e-a) <= tol*(1+math.Abs(e))) {
			t.Fatalf("%s[%d] = %g, expected %g", what, i, a, e)
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// cpuContext opens a CPU context, closed when the test ends.
func cpuContext(t *testing.T) *Context {
	t.Helper()
	ctx, err := NewCPUContext()
	must(t, err)
	t.Cleanup(ctx.Close)
	return ctx
}

// cpuVarlenMask opens a CPU context and the causal varlen mask of cuQ and cuK, closed when the
// test ends.
func cpuVarlenMask(t *testing.T) (*Context, *Mask) {
	t.Helper()
	ctx := cpuContext(t)
	mask, err := NewVarlenMask(ctx, cuQ, cuK, true)
	must(t, err)
	t.Cleanup(mask.Close)
	return ctx, mask
}

func TestVarlenCausalForwardMatchesReference(t *testing.T) {
	tq, tk := int(cuQ[3]), int(cuK[3])
	q, k, v := random(tq*hq*dim, 1), random(tk*hkv*dim, 2), random(tk*hkv*dim, 3)
	out, lse := make([]float32, len(q)), make([]float32, hq*tq)
	ctx, mask := cpuVarlenMask(t)
	must(t, ctx.ForwardFloat32(q, k, v, Heads{hq, hkv, dim}, mask, nil, out, lse))
	refOut, refLse := varlenCausalReference(q, k, v)
	assertClose(t, "out", refOut, out, 1e-4)
	assertClose(t, "lse", refLse, lse, 1e-4)
}

func TestTensorForwardMatchesReference(t *testing.T) {
	tq, tk := int64(cuQ[3]), int64(cuK[3])
	q, k, v := random(int(tq)*hq*dim, 4), random(int(tk)*hkv*dim, 5), random(int(tk)*hkv*dim, 6)
	ctx, mask := cpuVarlenMask(t)
	tq3, tk3, tv3 := f32Tensor(t, ctx, q, tq, hq, dim), f32Tensor(t, ctx, k, tk, hkv, dim), f32Tensor(t, ctx, v, tk, hkv, dim)
	to3 := f32Tensor(t, ctx, nil, tq, hq, dim)
	must(t, ctx.Forward(tq3, tk3, tv3, mask, NewAttentionParams(), to3, nil))
	out := make([]float32, len(q))
	must(t, to3.CopyToFloat32(out))
	refOut, _ := varlenCausalReference(q, k, v)
	assertClose(t, "out", refOut, out, 1e-4)
}

// f32Tensor creates an f32 tensor holding data (uninitialised for nil), closed when the test ends.
func f32Tensor(t *testing.T, ctx *Context, data []float32, shape ...int64) *Tensor {
	t.Helper()
	x, err := NewTensor(ctx, F32, shape...)
	must(t, err)
	t.Cleanup(x.Close)
	if data != nil {
		must(t, x.CopyFromFloat32(data))
	}
	return x
}

// sliceMask opens the mask of slices [from, to), closed when the test ends: all keys (0, 3), keys
// [0, 4) (0, 2) or keys [4, 12) (2, 3).
func sliceMask(t *testing.T, ctx *Context, from, to int) *Mask {
	t.Helper()
	mask, err := NewRangesMask(ctx, qRanges[2*from:2*to], kRanges[2*from:2*to], types[from:to], tokens, tokens)
	must(t, err)
	t.Cleanup(mask.Close)
	return mask
}

func TestRangesForwardMatchesReference(t *testing.T) {
	const n = tokens
	q, k, v := random(n*hq*dim, 7), random(n*hkv*dim, 8), random(n*hkv*dim, 9)
	out, lse := make([]float32, len(q)), make([]float32, hq*n)
	ctx := cpuContext(t)
	mask := sliceMask(t, ctx, 0, 3)
	if slices, err := mask.NumSlices(); err != nil || slices != 3 {
		t.Fatalf("NumSlices = %d, %v", slices, err)
	}
	params := NewAttentionParams()
	params.MaxBias = 8
	must(t, ctx.ForwardFloat32(q, k, v, Heads{hq, hkv, dim}, mask, params, out, lse))
	positions := make([]int, n)
	for i := range positions {
		positions[i] = i
	}
	visible := func(i, j int) bool {
		for s, typ := range types {
			qs, sq := int(qRanges[2*s]), int(qRanges[2*s+1]-qRanges[2*s])
			ks, sk := int(kRanges[2*s]), int(kRanges[2*s+1]-kRanges[2*s])
			r, c := i-qs, j-ks
			if r < 0 || r >= sq || c < 0 || c >= sk {
				continue
			}
			causal := typ == MaskCausal || typ == MaskBiCausal
			inverse := typ == MaskInverseCausal || typ == MaskBiCausal
			if (!causal || c <= r+sk-sq) && (!inverse || c >= r) {
				return true
			}
		}
		return false
	}
	refOut, refLse := reference(q, k, v, n, n, visible, positions, positions)
	assertClose(t, "out", refOut, out, 1e-4)
	assertClose(t, "lse", refLse, lse, 1e-4)
}

func TestBF16ForwardMatchesReference(t *testing.T) {
	tq, tk := int(cuQ[3]), int(cuK[3])
	q, k, v := bf16(random(tq*hq*dim, 10)), bf16(random(tk*hkv*dim, 11)), bf16(random(tk*hkv*dim, 12))
	out := make([]uint16, len(q))
	ctx, mask := cpuVarlenMask(t)
	must(t, ctx.ForwardUint16(BF16, q, k, v, Heads{hq, hkv, dim}, mask, nil, out, nil))
	refOut, _ := varlenCausalReference(floats(q), floats(k), floats(v))
	assertClose(t, "out", refOut, floats(out), 1e-2)
}

func TestInvalidCallReturnsTheLibraryMessage(t *testing.T) {
	ctx, err := NewCPUContext()
	must(t, err)
	defer ctx.Close()
	mask, err := NewVarlenMask(ctx, []int32{0, 4, 2}, []int32{0, 4, 6}, true)
	e, ok := err.(*Error)
	if mask != nil || !ok {
		t.Fatalf("decreasing cu_seqlens_q: mask %v, error %v", mask, err)
	}
	if e.Status != StatusInvalidArgument || !strings.HasPrefix(e.Message, "alibi_mask_create_varlen: ") ||
		!strings.HasPrefix(e.Error(), "invalid argument: alibi_mask_create_varlen") {
		t.Fatalf("unexpected error %#v (%v)", e, e)
	}
	mask, err = NewVarlenMask(ctx, []int32{0, 2}, []int32{0, 2}, true)
	must(t, err)
	defer mask.Close()
	kv := make([]float32, 2*hkv*dim)
	if err := ctx.ForwardFloat32(make([]float32, 7), kv, kv, Heads{hq, hkv, dim}, mask, nil, kv, nil); err.(*Error).Status != StatusShapeMismatch {
		t.Fatalf("7 elements: %v", err)
	}
}

func assertFails(t *testing.T, status Status, message string, err error) {
	t.Helper()
	if e, ok := err.(*Error); !ok || e.Status != status || e.Message != message {
		t.Fatalf("error %v, expected %v: %s", err, status, message)
	}
}

// arrayArguments are the arguments a message of the array forms may name.
var arrayArguments = []string{"q", "k", "v", "out", "lse", "dout", "dq", "dk", "dv", "dslopes"}

// assertNames asserts a shape mismatch whose message names argument and no other array ("k has
// 480 elements" or "k.shape[0] = 15": the library's wording may change, its subject may not).
func assertNames(t *testing.T, argument string, err error) {
	t.Helper()
	e, ok := err.(*Error)
	if !ok || e.Status != StatusShapeMismatch {
		t.Fatalf("error %v, expected a shape mismatch naming %s", err, argument)
	}
	for _, name := range arrayArguments {
		named := regexp.MustCompile(`: ` + name + `( has |\.shape\[)`).MatchString(e.Message)
		if named != (name == argument) {
			t.Fatalf("%q names %s: %v, expected it to name %s only", e.Message, name, named, argument)
		}
	}
}

func TestRawCallsReturnTheirStatusAndMessage(t *testing.T) {
	ctx, err := NewCPUContext()
	must(t, err)
	defer ctx.Close()
	assertFails(t, StatusInvalidArgument, "alibi_context_set_num_threads: num_threads = -1 is outside [0, 1024]",
		fromC(capi.Alibi_context_set_num_threads(ctx.h, -1)))
	p := capi.NewAlibi_attention_params()
	defer capi.DeleteAlibi_attention_params(p)
	assertFails(t, StatusInvalidArgument, "alibi_attention_params_set_slopes: count = -1 is negative",
		fromC(p.SetSlopes(make([]float32, 1), -1)))
	// The binding's own message above is not read again for the library's next failure.
	assertFails(t, StatusNullPointer, "alibi_context_synchronize: ctx is NULL", fromC(capi.Alibi_context_synchronize(0)))
	assertFails(t, StatusNullPointer, "alibi_attention_merge: out_a is NULL",
		fromC(capi.Alibi_attention_merge(ctx.h, 0, 0, 0, 0, 0, 0)))
}

func TestConcurrentFailuresKeepTheirOwnMessages(t *testing.T) {
	var wg sync.WaitGroup
	for g := 1; g <= 8; g++ {
		wg.Add(1)
		go func(threads int) {
			defer wg.Done()
			ctx, err := NewCPUContext()
			if err != nil {
				t.Error(err)
				return
			}
			defer ctx.Close()
			want := fmt.Sprintf("alibi_context_set_num_threads: num_threads = %d is outside [0, 1024]", -threads)
			for i := 0; i < 2000; i++ {
				err := ctx.SetNumThreads(-threads)
				if e, ok := err.(*Error); !ok || e.Message != want {
					t.Errorf("error %v, expected %s", err, want)
					return
				}
				runtime.Gosched()
			}
		}(g)
	}
	wg.Wait()
}

func TestArrayForwardNamesTheArgumentThatDoesNotFit(t *testing.T) {
	tq, tk := int(cuQ[3]), int(cuK[3])
	q, kv, out, lse := make([]float32, tq*hq*dim), make([]float32, tk*hkv*dim), make([]float32, tq*hq*dim), make([]float32, hq*tq)
	kvRowShort, outRowShort, lseRowShort := kv[:(tk-1)*hkv*dim], out[:(tq-1)*hq*dim], lse[:hq*(tq-1)]
	q16, kv16 := make([]uint16, len(q)), make([]uint16, len(kv))
	heads := Heads{hq, hkv, dim}
	ctx, mask := cpuVarlenMask(t)
	assertNames(t, "k", ctx.ForwardFloat32(q, kvRowShort, kv, heads, mask, nil, out, lse))
	assertNames(t, "k", ctx.ForwardFloat32(q, kv[1:], kv, heads, mask, nil, out, lse))
	assertNames(t, "v", ctx.ForwardFloat32(q, kv, kvRowShort, heads, mask, nil, out, lse))
	assertNames(t, "q", ctx.ForwardFloat32(q[:(tq-1)*hq*dim], kv, kv, heads, mask, nil, outRowShort, lse))
	assertNames(t, "out", ctx.ForwardFloat32(q, kv, kv, heads, mask, nil, outRowShort, lse))
	assertNames(t, "lse", ctx.ForwardFloat32(q, kv, kv, heads, mask, nil, out, lseRowShort))
	assertNames(t, "lse", ctx.ForwardFloat32(q, kv, kv, heads, mask, nil, out, lse[1:]))
	assertFails(t, StatusNullPointer, "Context.ForwardFloat32: k is nil",
		ctx.ForwardFloat32(q, nil, kv, heads, mask, nil, out, lse))
	assertFails(t, StatusNullPointer, "Context.ForwardUint16: out is nil",
		ctx.ForwardUint16(BF16, q16, kv16, kv16, heads, mask, nil, nil, nil))
	assertFails(t, StatusInvalidArgument, "alibi_binding_forward_f32: heads_q = 0, heads_kv = 2, head_dim = 16; each must be >= 1",
		ctx.ForwardFloat32(q, kv, kv, Heads{0, hkv, dim}, mask, nil, out, lse))
	assertFails(t, StatusInvalidArgument, "alibi_binding_forward_f32: heads_q = 4, heads_kv = 2, head_dim = 0; each must be >= 1",
		ctx.ForwardFloat32(q, kv, kv, Heads{hq, hkv, 0}, mask, nil, out, lse))
	assertFails(t, StatusDTypeMismatch, "alibi_binding_forward_u16: dtype = 0 is not ALIBI_DTYPE_F16 or ALIBI_DTYPE_BF16 (16-bit data)",
		ctx.ForwardUint16(F32, q16, kv16, kv16, heads, mask, nil, q16, lse))
}

var sq, sk, sv = random(tokens*hq*dim, 14), random(tokens*hkv*dim, 15), random(tokens*hkv*dim, 16)

// partial is an attention result over `tokens` queries.
type partial struct{ out, lse []float32 }

func newPartial() partial {
	return partial{make([]float32, tokens*hq*dim), make([]float32, hq*tokens)}
}

// forwardOver is the forward of sq, sk, sv over the keys of slices [from, to).
func forwardOver(t *testing.T, ctx *Context, from, to int) partial {
	t.Helper()
	p := newPartial()
	must(t, ctx.ForwardFloat32(sq, sk, sv, Heads{hq, hkv, dim}, sliceMask(t, ctx, from, to), nil, p.out, p.lse))
	return p
}

func (p partial) assertCloseTo(t *testing.T, expected partial, tol float64) {
	t.Helper()
	assertClose(t, "out", widen(expected.out), p.out, tol)
	assertClose(t, "lse", widen(expected.lse), p.lse, tol)
}

func widen(x []float32) []float64 {
	y := make([]float64, len(x))
	for i, f := range x {
		y[i] = float64(f)
	}
	return y
}

func TestMergingTheTwoKeySidesEqualsOneForward(t *testing.T) {
	ctx := cpuContext(t)
	all, a, b, merged := forwardOver(t, ctx, 0, 3), forwardOver(t, ctx, 0, 2), forwardOver(t, ctx, 2, 3), newPartial()
	must(t, ctx.MergeFloat32(a.out, a.lse, b.out, b.lse, hq, dim, merged.out, merged.lse))
	merged.assertCloseTo(t, all, 1e-5)
	must(t, ctx.MergeFloat32(a.out, a.lse, b.out, b.lse, hq, dim, a.out, a.lse))
	a.assertCloseTo(t, all, 1e-5)
}

func TestTensorMergeEqualsOneForward(t *testing.T) {
	ctx := cpuContext(t)
	all, a, b, merged := forwardOver(t, ctx, 0, 3), forwardOver(t, ctx, 0, 2), forwardOver(t, ctx, 2, 3), newPartial()
	outA, lseA := f32Tensor(t, ctx, a.out, tokens, hq, dim), f32Tensor(t, ctx, a.lse, hq, tokens)
	outB, lseB := f32Tensor(t, ctx, b.out, tokens, hq, dim), f32Tensor(t, ctx, b.lse, hq, tokens)
	out := f32Tensor(t, ctx, nil, tokens, hq, dim)
	must(t, ctx.Merge(outA, lseA, outB, lseB, out, nil))
	must(t, out.CopyToFloat32(merged.out))
	assertClose(t, "out", widen(all.out), merged.out, 1e-5)
	must(t, ctx.Merge(outA, lseA, outB, lseB, outA, lseA))
	must(t, outA.CopyToFloat32(merged.out))
	must(t, lseA.CopyToFloat32(merged.lse))
	merged.assertCloseTo(t, all, 1e-5)
}

func TestBF16MergeOfTheTwoKeySidesEqualsOneForward(t *testing.T) {
	q, k, v := bf16(sq), bf16(sk), bf16(sv)
	ctx := cpuContext(t)
	var outs [3][]uint16
	var lses [3][]float32
	for s, side := range [3][2]int{{0, 3}, {0, 2}, {2, 3}} {
		outs[s], lses[s] = make([]uint16, len(q)), make([]float32, hq*tokens)
		must(t, ctx.ForwardUint16(BF16, q, k, v, Heads{hq, hkv, dim}, sliceMask(t, ctx, side[0], side[1]), nil,
			outs[s], lses[s]))
	}
	must(t, ctx.MergeUint16(BF16, outs[1], lses[1], outs[2], lses[2], hq, dim, outs[1], nil))
	assertClose(t, "out", widen(floats(outs[0])), floats(outs[1]), 1e-2)
}

func TestASideWhoseLseIsMinusInfinityContributesNothing(t *testing.T) {
	ctx := cpuContext(t)
	a, none, merged := forwardOver(t, ctx, 0, 3), newPartial(), newPartial()
	for i := range none.out {
		none.out[i] = float32(math.NaN())
	}
	for i := range none.lse {
		none.lse[i] = float32(math.Inf(-1))
	}
	must(t, ctx.MergeFloat32(none.out, none.lse, a.out, a.lse, hq, dim, merged.out, merged.lse))
	merged.assertCloseTo(t, a, 0)
}

func TestArrayMergeNamesTheArgumentThatDoesNotFit(t *testing.T) {
	a, b, out := newPartial(), newPartial(), newPartial()
	out16 := make([]uint16, len(out.out))
	ctx := cpuContext(t)
	assertFails(t, StatusShapeMismatch, "alibi_attention_merge: lse_b.shape[1] = 11, expected 12 (out_a's tokens)",
		ctx.MergeFloat32(a.out, a.lse, b.out, b.lse[:hq*(tokens-1)], hq, dim, out.out, out.lse))
	assertFails(t, StatusShapeMismatch, "alibi_binding_merge_f32: lse_b has 47 elements, not a multiple of 4 = heads 4",
		ctx.MergeFloat32(a.out, a.lse, b.out, b.lse[1:], hq, dim, out.out, out.lse))
	assertFails(t, StatusShapeMismatch, "alibi_attention_merge: out.shape[0] = 11, expected 12 (out_a's shape)",
		ctx.MergeFloat32(a.out, a.lse, b.out, b.lse, hq, dim, out.out[:(tokens-1)*hq*dim], nil))
	assertFails(t, StatusNullPointer, "Context.MergeFloat32: outB is nil",
		ctx.MergeFloat32(a.out, a.lse, nil, b.lse, hq, dim, out.out, out.lse))
	assertFails(t, StatusNullPointer, "Context.MergeUint16: out is nil",
		ctx.MergeUint16(F16, out16, a.lse, out16, b.lse, hq, dim, nil, nil))
	assertFails(t, StatusInvalidArgument, "alibi_binding_merge_f32: heads = 0, head_dim = 16; each must be >= 1",
		ctx.MergeFloat32(a.out, a.lse, b.out, b.lse, 0, dim, out.out, out.lse))
	assertFails(t, StatusDTypeMismatch, "alibi_binding_merge_u16: dtype = 0 is not ALIBI_DTYPE_F16 or ALIBI_DTYPE_BF16 (16-bit data)",
		ctx.MergeUint16(F32, out16, a.lse, out16, b.lse, hq, dim, out16, nil))
}

func TestTensorMergeOfAClosedTensorNamesIt(t *testing.T) {
	ctx := cpuContext(t)
	outA, lseA := f32Tensor(t, ctx, nil, tokens, hq, dim), f32Tensor(t, ctx, nil, hq, tokens)
	outB, lseB := f32Tensor(t, ctx, nil, tokens, hq, dim), f32Tensor(t, ctx, nil, hq, tokens)
	closed := f32Tensor(t, ctx, nil, tokens, hq, dim)
	closed.Close()
	assertFails(t, StatusNullPointer, "Context.Merge: outB (Tensor) is closed", ctx.Merge(outA, lseA, closed, lseB, outA, nil))
	assertFails(t, StatusNullPointer, "Context.Merge: lseA (Tensor) is nil", ctx.Merge(outA, nil, outB, lseB, outA, nil))
	assertFails(t, StatusNullPointer, "Context.Merge: lse (Tensor) is closed", ctx.Merge(outA, lseA, outB, lseB, outA, closed))
}

func TestClosingTwiceIsHarmless(t *testing.T) {
	ctx, err := NewCPUContext()
	must(t, err)
	x, err := NewTensor(ctx, F32, 2, 3)
	must(t, err)
	mask, err := NewVarlenMask(ctx, []int32{0, 2}, []int32{0, 2}, false)
	must(t, err)
	ctx.Close()
	x.Close()
	x.Close()
	mask.Close()
	mask.Close()
	ctx.Close()
	var nilContext *Context
	var nilTensor *Tensor
	var nilMask *Mask
	nilContext.Close()
	nilTensor.Close()
	nilMask.Close()
	_, err = x.DType()
	assertFails(t, StatusNullPointer, "Tensor.DType: Tensor is closed", err)
}

func TestTenThousandCyclesKeepMemoryStable(t *testing.T) {
	const n, h, d = 32, 2, 32 // 8 KiB per tensor: a leak of one per cycle is 80 MiB
	qkv, out, lse := random(n*h*d, 13), make([]float32, n*h*d), make([]float32, h*n)
	cycles(t, 500, qkv, out, lse, h, d)
	before := statusField(t, "VmRSS")
	cycles(t, 10000, qkv, out, lse, h, d)
	runtime.GC()
	if grown := statusField(t, "VmRSS") - before; grown > 16*1024 {
		t.Fatalf("resident memory grew by %d KiB", grown)
	}
}

func cycles(t *testing.T, count int, qkv, out, lse []float32, h, d int) {
	n := int64(len(qkv) / (h * d))
	cu := []int32{0, int32(n)}
	for i := 0; i < count; i++ {
		ctx, err := NewCPUContext()
		must(t, err)
		must(t, ctx.SetNumThreads(1)) // no worker threads to start and join each cycle
		mask, err := NewVarlenMask(ctx, cu, cu, true)
		must(t, err)
		q, err := NewTensor(ctx, F32, n, int64(h), int64(d))
		must(t, err)
		o, err := NewTensor(ctx, F32, n, int64(h), int64(d))
		must(t, err)
		must(t, q.CopyFromFloat32(qkv))
		must(t, ctx.Forward(q, q, q, mask, NewAttentionParams(), o, nil))
		must(t, ctx.ForwardFloat32(qkv, qkv, qkv, Heads{h, h, d}, mask, nil, out, lse))
		o.Close()
		q.Close()
		mask.Close()
		ctx.Close()
	}
}

// bf16 rounds to the nearest even bfloat16 (finite inputs).
func bf16(x []float32) []uint16 {
	y := make([]uint16, len(x))
	for i, f := range x {
		bits := math.Float32bits(f)
		y[i] = uint16((bits + 0x7FFF + (bits>>16)&1) >> 16)
	}
	return y
}

func floats(x []uint16) []float32 {
	y := make([]float32, len(x))
	for i, b := range x {
		y[i] = math.Float32frombits(uint32(b) << 16)
	}
	return y
}
