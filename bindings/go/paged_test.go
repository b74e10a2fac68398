package alibi

import (
	"math"
	"strings"
	"testing"
)

// Context.ForwardPaged on a small GQA cache of blocks of 3 tokens, shuffled in a pool of 8: a
// decode row over 7 keys and a chunk of 4 queries over 10 keys. The slice form against the C
// API's alibi_attention_forward_paged (the tensor form, bitwise) and its alibi_attention_forward
// on the gathered keys with the causal varlen mask.

const blockSize, numBlocks, maxBlocks, keyRow = 3, 8, 4, hkv * dim

var pagedCuQ, seqlensK = []int32{0, 1, 5}, []int32{7, 10}

// Sequence 0 uses 3 blocks (-1: past them, not read), sequence 1 all 4; block 4 is unused.
var blockTable = []int32{5, 0, 7, -1, 2, 6, 1, 3}

var pagedTq, pagedTk = int(pagedCuQ[2]), int(seqlensK[0] + seqlensK[1])

type pagedProblem struct{ q, kCache, vCache []float32 }

func newPagedProblem() pagedProblem {
	return pagedProblem{random(pagedTq*hq*dim, 31), random(numBlocks*blockSize*keyRow, 32),
		random(numBlocks*blockSize*keyRow, 33)}
}

// gathered is the keys of each sequence, in order, one after another: what the table names.
func gathered(cache []float32) []float32 {
	keys := make([]float32, 0, pagedTk*keyRow)
	for b, lk := range seqlensK {
		for t := 0; t < int(lk); t++ {
			row := int(blockTable[b*maxBlocks+t/blockSize])*blockSize + t%blockSize
			keys = append(keys, cache[row*keyRow:(row+1)*keyRow]...)
		}
	}
	return keys
}

func (p pagedProblem) forwardPaged(ctx *Context, table []int32, out, lse []float32) error {
	return ctx.ForwardPagedFloat32(p.q, p.kCache, p.vCache, Heads{hq, hkv, dim}, blockSize, table, pagedCuQ,
		seqlensK, true, -1, nil, out, lse)
}

func i32Tensor(t *testing.T, ctx *Context, data []int32, shape ...int64) *Tensor {
	t.Helper()
	x, err := NewTensor(ctx, I32, shape...)
	must(t, err)
	t.Cleanup(x.Close)
	must(t, x.CopyFromInt32(data))
	return x
}

func TestPagedForwardEqualsTheCCallsOnTheSameData(t *testing.T) {
	ctx := cpuContext(t)
	p := newPagedProblem()
	out, lse := poisoned(len(p.q)), poisoned(hq*pagedTq)
	must(t, p.forwardPaged(ctx, blockTable, out, lse))

	cOut, cLse := f32Tensor(t, ctx, nil, int64(pagedTq), hq, dim), f32Tensor(t, ctx, nil, hq, int64(pagedTq))
	must(t, ctx.ForwardPaged(f32Tensor(t, ctx, p.q, int64(pagedTq), hq, dim),
		f32Tensor(t, ctx, p.kCache, numBlocks, blockSize, hkv, dim),
		f32Tensor(t, ctx, p.vCache, numBlocks, blockSize, hkv, dim), i32Tensor(t, ctx, blockTable, 2, maxBlocks),
		i32Tensor(t, ctx, pagedCuQ, 3), i32Tensor(t, ctx, seqlensK, 2), true, -1, nil, cOut, cLse))
	expectedOut, expectedLse := make([]float32, len(out)), make([]float32, len(lse))
	must(t, cOut.CopyToFloat32(expectedOut))
	must(t, cLse.CopyToFloat32(expectedLse))
	assertClose(t, "out", widen(expectedOut), out, 0)
	assertClose(t, "lse", widen(expectedLse), lse, 0)

	mask, err := NewVarlenMask(ctx, pagedCuQ, []int32{0, seqlensK[0], int32(pagedTk)}, true)
	must(t, err)
	defer mask.Close()
	contiguousOut, contiguousLse := make([]float32, len(out)), make([]float32, len(lse))
	must(t, ctx.ForwardFloat32(p.q, gathered(p.kCache), gathered(p.vCache), Heads{hq, hkv, dim}, mask, nil,
		contiguousOut, contiguousLse))
	assertClose(t, "out", widen(contiguousOut), out, 1e-5)
	assertClose(t, "lse", widen(contiguousLse), lse, 1e-5)
}

func TestABlockOutsideThePoolIsAnInvalidArgumentNamingTheSequence(t *testing.T) {
	ctx := cpuContext(t)
	p := newPagedProblem()
	table := append([]int32(nil), blockTable...)
	table[maxBlocks+2] = numBlocks
	out := poisoned(len(p.q))
	err := p.forwardPaged(ctx, table, out, nil)
	e, ok := err.(*Error)
	if !ok || e.Status != StatusInvalidArgument ||
		!strings.Contains(e.Message, "sequence 1: block_table[1][2] = 8 is outside [0, num_blocks = 8)") {
		t.Fatalf("error %v, expected an invalid argument naming sequence 1's block 8", err)
	}
	for i, x := range out {
		if !math.IsNaN(float64(x)) {
			t.Fatalf("a failed paged forward wrote out[%d] = %v", i, x)
		}
	}
}

// An empty batch succeeds in every form, as alibi_attention_forward_paged does with B = 0.
func TestNoSequencesSucceedAsTheCCall(t *testing.T) {
	ctx := cpuContext(t)
	p := newPagedProblem()
	none, cuQ, heads := []int32{}, []int32{0}, Heads{hq, hkv, dim}
	empty, k := f32Tensor(t, ctx, nil, 0, hq, dim), f32Tensor(t, ctx, p.kCache, numBlocks, blockSize, hkv, dim)
	must(t, ctx.ForwardPaged(empty, k, k, i32Tensor(t, ctx, none, 0, maxBlocks), i32Tensor(t, ctx, cuQ, 1),
		i32Tensor(t, ctx, none, 0), true, -1, nil, empty, nil))
	must(t, ctx.ForwardPagedFloat32([]float32{}, p.kCache, p.vCache, heads, blockSize, none, cuQ, none, true, -1,
		nil, []float32{}, []float32{}))
	cache := make([]uint16, len(p.kCache))
	must(t, ctx.ForwardPagedUint16(BF16, []uint16{}, cache, cache, heads, blockSize, none, cuQ, none, false, 2, nil,
		[]uint16{}, nil))
	assertFails(t, StatusShapeMismatch,
		"alibi_binding_forward_paged_f32: block_table has 2 elements, expected 0 = seqlens_k's length 0",
		ctx.ForwardPagedFloat32([]float32{}, p.kCache, p.vCache, heads, blockSize, []int32{5, 0}, cuQ, none, true, -1,
			nil, []float32{}, nil))
}
