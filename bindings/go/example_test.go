package alibi_test

import (
	"errors"
	"fmt"

	"alibi.dev/go/alibi"
)

// Attention over one causal sequence of 4 tokens, 2 heads of dimension 8, f32 slices used in
// place: with every value 1, every output is 1. A k slice that does not fit the mask is an
// *Error (its message names k).
func Example() {
	const tokens, heads, dim = 4, 2, 8
	ctx, err := alibi.NewCPUContext()
	if err != nil {
		panic(err)
	}
	defer ctx.Close()
	mask, err := alibi.NewVarlenMask(ctx, []int32{0, tokens}, []int32{0, tokens}, true)
	if err != nil {
		panic(err)
	}
	defer mask.Close()
	q := make([]float32, tokens*heads*dim)
	v := make([]float32, tokens*heads*dim)
	for i := range v {
		v[i] = 1
	}
	out := make([]float32, len(q))
	err = ctx.ForwardFloat32(q, q, v, alibi.Heads{Q: heads, KV: heads, Dim: dim}, mask, nil, out, nil)
	fmt.Println(out[0], out[len(out)-1], err)

	err = ctx.ForwardFloat32(q, q[:dim], v, alibi.Heads{Q: heads, KV: heads, Dim: dim}, mask, nil, out, nil)
	var e *alibi.Error
	fmt.Println(errors.As(err, &e), e.Status)
	// Output:
	// 1 1 <nil>
	// true shape mismatch
}
