package alibi

import (
	"errors"
	"math"
	"testing"
)

// Context.Backward in each form, on the causal varlen GQA batch of the forward tests (prefill,
// chunked prefill, decode): against backwardReference's double-precision gradients, and the slice
// forms against the tensor form (the C API's alibi_attention_backward itself).

var sequences = len(cuQ) - 1

// varlenCausal is the causal varlen mask of cuQ and cuK: positions, visibility, each query's sequence.
type varlenCausal struct {
	tq, tk                 int
	qpos, kpos, seqQ, seqK []int
}

func newVarlenCausal() varlenCausal {
	m := varlenCausal{tq: int(cuQ[len(cuQ)-1]), tk: int(cuK[len(cuK)-1])}
	m.qpos, m.seqQ, m.kpos, m.seqK = make([]int, m.tq), make([]int, m.tq), make([]int, m.tk), make([]int, m.tk)
	for b := 0; b < sequences; b++ {
		lq, lk := int(cuQ[b+1]-cuQ[b]), int(cuK[b+1]-cuK[b])
		for r := 0; r < lq; r++ {
			m.seqQ[int(cuQ[b])+r], m.qpos[int(cuQ[b])+r] = b, r+lk-lq
		}
		for c := 0; c < lk; c++ {
			m.seqK[int(cuK[b])+c], m.kpos[int(cuK[b])+c] = b, c
		}
	}
	return m
}

func (m varlenCausal) visible(i, j int) bool { return m.seqQ[i] == m.seqK[j] && m.kpos[j] <= m.qpos[i] }

// gradients are a backward call's results; dslopes is (sequences, hq) in the reference.
type gradients struct{ dq, dk, dv, dslopes []float64 }

// sharedDslopes sums dslopes over sequences: the gradient of slopes all sequences share.
func (g gradients) sharedDslopes() []float64 {
	shared := make([]float64, hq)
	for i, x := range g.dslopes {
		shared[i%hq] += x
	}
	return shared
}

// backwardReference is the gradient of causal varlen attention with slopes[b*hq+h] for sequence b,
// head h, given dout: P = exp(s - lse) recomputed from the scores and a double forward, Di = dout_i
// . out_i, dS = P (dout_i . v_j - Di); dv = P^T dout, dq = scale dS k, dk = scale dS^T q (GQA: kv
// heads sum over their query heads), dslopes = -sum dS |qpos - kpos|.
func backwardReference(q, k, v, dout []float32, slopes []float64) gradients {
	m := newVarlenCausal()
	slopeOfQuery := func(i, h int) float64 { return slopes[m.seqQ[i]*hq+h] }
	out, lse := referenceWithSlopes(q, k, v, m.tq, m.tk, m.visible, m.qpos, m.kpos, slopeOfQuery)
	g := gradients{make([]float64, len(q)), make([]float64, len(k)), make([]float64, len(v)), make([]float64, sequences*hq)}
	scale := 1 / math.Sqrt(dim)
	for h := 0; h < hq; h++ {
		kh := h / (hq / hkv)
		for i := 0; i < m.tq; i++ {
			rowLse := lse[h*m.tq+i]
			if math.IsInf(rowLse, -1) {
				continue
			}
			qi, di := (i*hq+h)*dim, 0.0
			for e := 0; e < dim; e++ {
				di += float64(dout[qi+e]) * out[qi+e]
			}
			for j := 0; j < m.tk; j++ {
				if !m.visible(i, j) {
					continue
				}
				kj, dot, dp := (j*hkv+kh)*dim, 0.0, 0.0
				distance := math.Abs(float64(m.qpos[i] - m.kpos[j]))
				for e := 0; e < dim; e++ {
					dot += float64(q[qi+e]) * float64(k[kj+e])
					dp += float64(dout[qi+e]) * float64(v[kj+e])
				}
				p := math.Exp(scale*dot - slopeOfQuery(i, h)*distance - rowLse)
				ds := p * (dp - di)
				for e := 0; e < dim; e++ {
					g.dv[kj+e] += p * float64(dout[qi+e])
					g.dq[qi+e] += scale * ds * float64(k[kj+e])
					g.dk[kj+e] += scale * ds * float64(q[qi+e])
				}
				g.dslopes[m.seqQ[i]*hq+h] -= ds * distance
			}
		}
	}
	return g
}

func formulaSlopes() []float64 {
	slopes := make([]float64, sequences*hq)
	for i := range slopes {
		slopes[i] = slopeOf(i%hq, hq)
	}
	return slopes
}

// backwardProblem holds a forward's inputs and results, a dout, and NaN-poisoned gradients.
type backwardProblem struct {
	q, k, v, dout, out, lse []float32
	dq, dk, dv, dslopes     []float32
}

func newBackwardProblem(t *testing.T, ctx *Context, mask *Mask, params *AttentionParams, slopeGradients int) *backwardProblem {
	t.Helper()
	m := newVarlenCausal()
	p := &backwardProblem{
		q: random(m.tq*hq*dim, 21), k: random(m.tk*hkv*dim, 22), v: random(m.tk*hkv*dim, 23),
		dout: random(m.tq*hq*dim, 24), out: make([]float32, m.tq*hq*dim), lse: make([]float32, hq*m.tq),
		dq: poisoned(m.tq * hq * dim), dk: poisoned(m.tk * hkv * dim), dv: poisoned(m.tk * hkv * dim),
		dslopes: poisoned(slopeGradients),
	}
	must(t, ctx.ForwardFloat32(p.q, p.k, p.v, Heads{hq, hkv, dim}, mask, params, p.out, p.lse))
	return p
}

func (p *backwardProblem) backward(ctx *Context, mask *Mask, params *AttentionParams) error {
	return ctx.BackwardFloat32(p.q, p.k, p.v, Heads{hq, hkv, dim}, mask, params, p.out, p.lse, p.dout,
		p.dq, p.dk, p.dv, p.dslopes)
}

func (p *backwardProblem) assertGradients(t *testing.T, expected gradients, expectedDslopes []float64) {
	t.Helper()
	assertClose(t, "dq", expected.dq, p.dq, 1e-4)
	assertClose(t, "dk", expected.dk, p.dk, 1e-4)
	assertClose(t, "dv", expected.dv, p.dv, 1e-4)
	assertClose(t, "dslopes", expectedDslopes, p.dslopes, 1e-4)
}

func poisoned(n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(math.NaN())
	}
	return x
}

func TestVarlenCausalGQABackwardMatchesTheDoubleReference(t *testing.T) {
	ctx, mask := cpuVarlenMask(t)
	p := newBackwardProblem(t, ctx, mask, nil, hq)
	must(t, p.backward(ctx, mask, nil))
	expected := backwardReference(p.q, p.k, p.v, p.dout, formulaSlopes())
	p.assertGradients(t, expected, expected.sharedDslopes())
}

func TestPerSequenceSlopesHaveOneGradientPerSequenceAndHead(t *testing.T) {
	params := NewAttentionParams()
	params.SlopesPerBatch = true
	params.Slopes = make([]float32, sequences*hq)
	exact := make([]float64, len(params.Slopes))
	for i := range params.Slopes {
		params.Slopes[i] = 0.05 * float32(i+1)
		exact[i] = float64(params.Slopes[i])
	}
	ctx, mask := cpuVarlenMask(t)
	p := newBackwardProblem(t, ctx, mask, params, sequences*hq)
	must(t, p.backward(ctx, mask, params))
	expected := backwardReference(p.q, p.k, p.v, p.dout, exact)
	p.assertGradients(t, expected, expected.dslopes)
	assertNames(t, "dslopes", ctx.BackwardFloat32(p.q, p.k, p.v, Heads{hq, hkv, dim}, mask, params, p.out, p.lse,
		p.dout, nil, nil, nil, make([]float32, (sequences-1)*hq)))
}

// The tensor form is the C API's call; the slice form wraps the same memory, so they agree bitwise.
func TestTensorBackwardEqualsTheSliceFormBitwise(t *testing.T) {
	ctx, mask := cpuVarlenMask(t)
	p := newBackwardProblem(t, ctx, mask, nil, hq)
	must(t, p.backward(ctx, mask, nil))
	tq, tk := int64(cuQ[sequences]), int64(cuK[sequences])
	tdq, tdk, tdv, tds := f32Tensor(t, ctx, nil, tq, hq, dim), f32Tensor(t, ctx, nil, tk, hkv, dim),
		f32Tensor(t, ctx, nil, tk, hkv, dim), f32Tensor(t, ctx, nil, hq)
	must(t, ctx.Backward(f32Tensor(t, ctx, p.q, tq, hq, dim), f32Tensor(t, ctx, p.k, tk, hkv, dim),
		f32Tensor(t, ctx, p.v, tk, hkv, dim), mask, nil, f32Tensor(t, ctx, p.out, tq, hq, dim),
		f32Tensor(t, ctx, p.lse, hq, tq), f32Tensor(t, ctx, p.dout, tq, hq, dim), tdq, tdk, tdv, tds))
	for _, c := range []struct {
		name     string
		tensor   *Tensor
		expected []float32
	}{{"dq", tdq, p.dq}, {"dk", tdk, p.dk}, {"dv", tdv, p.dv}, {"dslopes", tds, p.dslopes}} {
		actual := make([]float32, len(c.expected))
		must(t, c.tensor.CopyToFloat32(actual))
		assertClose(t, c.name, widen(c.expected), actual, 0)
	}
}

func TestNilGradientsAreNotComputed(t *testing.T) {
	ctx, mask := cpuVarlenMask(t)
	p := newBackwardProblem(t, ctx, mask, nil, hq)
	must(t, p.backward(ctx, mask, nil))
	dv, dslopes := make([]float32, len(p.dv)), make([]float32, hq)
	must(t, ctx.BackwardFloat32(p.q, p.k, p.v, Heads{hq, hkv, dim}, mask, nil, p.out, p.lse, p.dout, nil, nil, dv, dslopes))
	assertClose(t, "dv", widen(p.dv), dv, 0)
	assertClose(t, "dslopes", widen(p.dslopes), dslopes, 0)
}

func TestBF16BackwardMatchesTheDoubleReference(t *testing.T) {
	ctx, mask := cpuVarlenMask(t)
	p := newBackwardProblem(t, ctx, mask, nil, hq)
	q, k, v, dout := bf16(p.q), bf16(p.k), bf16(p.v), bf16(p.dout)
	out, lse := make([]uint16, len(q)), make([]float32, len(p.lse))
	must(t, ctx.ForwardUint16(BF16, q, k, v, Heads{hq, hkv, dim}, mask, nil, out, lse))
	const bf16NaN = 0x7FC0
	dq, dk, dv, dslopes := make([]uint16, len(q)), make([]uint16, len(k)), make([]uint16, len(v)), poisoned(hq)
	for _, g := range [][]uint16{dq, dk, dv} {
		for i := range g {
			g[i] = bf16NaN
		}
	}
	must(t, ctx.BackwardUint16(BF16, q, k, v, Heads{hq, hkv, dim}, mask, nil, out, lse, dout, dq, dk, dv, dslopes))
	expected := backwardReference(floats(q), floats(k), floats(v), floats(dout), formulaSlopes())
	assertClose(t, "dq", expected.dq, floats(dq), 2e-2)
	assertClose(t, "dk", expected.dk, floats(dk), 2e-2)
	assertClose(t, "dv", expected.dv, floats(dv), 2e-2)
	assertClose(t, "dslopes", expected.sharedDslopes(), dslopes, 2e-2)
}

func TestFailedBackwardNamesTheArgumentAndWritesNothing(t *testing.T) {
	ctx, mask := cpuVarlenMask(t)
	p := newBackwardProblem(t, ctx, mask, nil, hq)
	heads := Heads{hq, hkv, dim}
	assertNames(t, "dk", ctx.BackwardFloat32(p.q, p.k, p.v, heads, mask, nil, p.out, p.lse, p.dout,
		p.dq, poisoned(len(p.dk)-hkv*dim), p.dv, p.dslopes))
	assertNames(t, "dslopes", ctx.BackwardFloat32(p.q, p.k, p.v, heads, mask, nil, p.out, p.lse, p.dout,
		p.dq, p.dk, p.dv, poisoned(hq+1)))
	assertNames(t, "dout", ctx.BackwardFloat32(p.q, p.k, p.v, heads, mask, nil, p.out, p.lse, p.dout[dim:],
		p.dq, p.dk, p.dv, p.dslopes))
	assertFails(t, StatusShapeMismatch, "alibi_binding_backward_f32: dq has 575 elements, expected 576 = "+
		"the mask's total_q 9 x heads_q 4 x head_dim 16",
		ctx.BackwardFloat32(p.q, p.k, p.v, heads, mask, nil, p.out, p.lse, p.dout, p.dq[1:], p.dk, p.dv, p.dslopes))
	assertFails(t, StatusNullPointer, "Context.BackwardFloat32: lse is nil",
		ctx.BackwardFloat32(p.q, p.k, p.v, heads, mask, nil, p.out, nil, p.dout, p.dq, p.dk, p.dv, p.dslopes))
	assertFails(t, StatusNullPointer, "Context.BackwardUint16: dout is nil",
		ctx.BackwardUint16(BF16, bf16(p.q), bf16(p.k), bf16(p.v), heads, mask, nil, bf16(p.out), p.lse, nil,
			nil, nil, nil, p.dslopes))
	q16, kv16 := make([]uint16, len(p.q)), make([]uint16, len(p.k))
	assertFails(t, StatusDTypeMismatch, "alibi_binding_backward_u16: dtype = 0 is not ALIBI_DTYPE_F16 or ALIBI_DTYPE_BF16 (16-bit data)",
		ctx.BackwardUint16(F32, q16, kv16, kv16, heads, mask, nil, q16, p.lse, q16, nil, nil, nil, p.dslopes))
	for name, g := range map[string][]float32{"dq": p.dq, "dk": p.dk, "dv": p.dv, "dslopes": p.dslopes} {
		for i, x := range g {
			if !math.IsNaN(float64(x)) {
				t.Fatalf("a failed backward wrote %s[%d] = %g", name, i, x)
			}
		}
	}
}

func TestBackwardWithAClosedOrNilObjectNamesIt(t *testing.T) {
	ctx, mask := cpuVarlenMask(t)
	tq, tk := int64(cuQ[sequences]), int64(cuK[sequences])
	q, kv, lse := f32Tensor(t, ctx, nil, tq, hq, dim), f32Tensor(t, ctx, nil, tk, hkv, dim), f32Tensor(t, ctx, nil, hq, tq)
	closed := f32Tensor(t, ctx, nil, tk, hkv, dim)
	closed.Close()
	err := ctx.Backward(q, kv, kv, mask, nil, q, lse, q, nil, closed, nil, nil)
	assertFails(t, StatusNullPointer, "Context.Backward: dk (Tensor) is closed", err)
	if !errors.Is(err, ErrClosed) {
		t.Fatalf("%v is not ErrClosed", err)
	}
	assertFails(t, StatusNullPointer, "Context.Backward: dout (Tensor) is nil",
		ctx.Backward(q, kv, kv, mask, nil, q, lse, nil, q, kv, kv, nil))
	assertFails(t, StatusNullPointer, "Context.Backward: lse (Tensor) is nil",
		ctx.Backward(q, kv, kv, mask, nil, q, nil, q, q, nil, nil, nil))
	closedMask, err := NewVarlenMask(ctx, cuQ, cuK, true)
	must(t, err)
	closedMask.Close()
	x := make([]float32, 1)
	assertFails(t, StatusNullPointer, "Context.BackwardFloat32: mask (Mask) is closed",
		ctx.BackwardFloat32(x, x, x, Heads{hq, hkv, dim}, closedMask, nil, x, x, x, nil, nil, nil, nil))
	ctx.Close()
	assertFails(t, StatusNullPointer, "Context.BackwardFloat32: Context is closed",
		ctx.BackwardFloat32(x, x, x, Heads{hq, hkv, dim}, mask, nil, x, x, x, nil, nil, nil, nil))
}
