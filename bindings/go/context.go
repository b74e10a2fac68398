package alibi

import (
	"runtime"

	"alibi.dev/go/alibi/internal/capi"
)

// Context is a device context: where calls run. Use it from one goroutine at a time. Close it
// when done; one that is not closed is destroyed by the garbage collector (a finalizer).
type Context struct{ h uintptr }

// NewContext creates a context on a device (index 0 for the CPU).
func NewContext(device Device, index int) (*Context, error) {
	var h uintptr
	if err := capi.Alibi_context_create(int(device), index, &h); err != nil {
		return nil, fromC(err)
	}
	c := &Context{h}
	runtime.SetFinalizer(c, (*Context).Close)
	return c, nil
}

// NewCPUContext creates a CPU context.
func NewCPUContext() (*Context, error) { return NewContext(DeviceCPU, 0) }

// Close destroys the context; closing again, or a nil Context, is a no-op. Tensors and masks
// made with it stay usable: they keep its device alive.
func (c *Context) Close() {
	if c == nil || c.h == 0 {
		return
	}
	h := c.h
	c.h = 0
	runtime.SetFinalizer(c, nil)
	capi.Alibi_context_destroy(h)
}

// Device is DeviceCPU or DeviceCUDA (never DeviceAuto).
func (c *Context) Device() (Device, error) {
	a := handles{call: "Context.Device"}
	h := a.context(c, "")
	if a.err != nil {
		return 0, a.err
	}
	defer runtime.KeepAlive(c)
	var d int32
	err := capi.Alibi_context_get_device(h, &d)
	return Device(d), fromC(err)
}

// SetNumThreads sets the CPU worker threads of this context's calls; 0 = one per core.
func (c *Context) SetNumThreads(n int) error {
	a := handles{call: "Context.SetNumThreads"}
	h := a.context(c, "")
	if a.err != nil {
		return a.err
	}
	defer runtime.KeepAlive(c)
	return fromC(capi.Alibi_context_set_num_threads(h, n))
}

// Synchronize waits until the context's work is done.
func (c *Context) Synchronize() error {
	a := handles{call: "Context.Synchronize"}
	h := a.context(c, "")
	if a.err != nil {
		return a.err
	}
	defer runtime.KeepAlive(c)
	return fromC(capi.Alibi_context_synchronize(h))
}

// Forward runs attention over tensors: q (totalQ, Hq, D), k and v (totalK, Hkv, D), out like q,
// lse nil or (Hq, totalQ) f32. params nil: the defaults.
func (c *Context) Forward(q, k, v *Tensor, mask *Mask, params *AttentionParams, out, lse *Tensor) error {
	a := handles{call: "Context.Forward"}
	hc, hq, hk, hv := a.context(c, ""), a.tensor(q, "q"), a.tensor(k, "k"), a.tensor(v, "v")
	hm, hout, hlse := a.mask(mask, "mask"), a.tensor(out, "out"), a.optionalTensor(lse, "lse")
	if a.err != nil {
		return a.err
	}
	defer keepAlive(c, q, k, v, mask, out, lse)
	return withNative(a.call, params, func(p capi.Alibi_attention_params) error {
		return capi.Alibi_attention_forward(hc, hq, hk, hv, hm, p, hout, hlse)
	})
}

// overSlices is the frame of the calls over slices (ForwardFloat32 ... ForwardPagedUint16): the
// context's handle, the required slices present, then native with the params.
func (c *Context) overSlices(call string, params *AttentionParams, required []slice,
	native func(hc uintptr, p capi.Alibi_attention_params) error) error {
	a := handles{call: call}
	hc := a.context(c, "")
	if a.err != nil {
		return a.err
	}
	if err := requireSlices(call, required...); err != nil {
		return err
	}
	defer runtime.KeepAlive(c)
	return withNative(call, params, func(p capi.Alibi_attention_params) error { return native(hc, p) })
}

// overMaskedSlices is overSlices for the calls that take a mask, whose handle native gets too.
func (c *Context) overMaskedSlices(call string, mask *Mask, params *AttentionParams, required []slice,
	native func(hc, hm uintptr, p capi.Alibi_attention_params) error) error {
	a := handles{call: call}
	hm := a.mask(mask, "mask")
	if a.err != nil {
		return a.err
	}
	defer runtime.KeepAlive(mask)
	return c.overSlices(call, params, required, func(hc uintptr, p capi.Alibi_attention_params) error {
		return native(hc, hm, p)
	})
}

// Heads gives the layout of packed arrays: q and out (totalQ, Q, Dim), k and v (totalK, KV, Dim).
type Heads struct{ Q, KV, Dim int }

// ForwardFloat32 runs attention over f32 slices, used in place for the call (not copied);
// lse is nil or (heads.Q, totalQ). totalQ and totalK are the mask's: each length is checked
// against them, and an error names the slice that does not fit.
func (c *Context) ForwardFloat32(q, k, v []float32, heads Heads, mask *Mask, params *AttentionParams,
	out, lse []float32) error {
	required := []slice{f32("q", q), f32("k", k), f32("v", v), f32("out", out)}
	return c.overMaskedSlices("Context.ForwardFloat32", mask, params, required, func(hc, hm uintptr, p capi.Alibi_attention_params) error {
		return capi.Alibi_binding_forward_f32(hc, heads.Q, heads.KV, heads.Dim, q, k, v, hm, p, out, lse)
	})
}

// ForwardUint16 is ForwardFloat32 for F16 or BF16 data given as 16-bit patterns.
func (c *Context) ForwardUint16(dtype DType, q, k, v []uint16, heads Heads, mask *Mask,
	params *AttentionParams, out []uint16, lse []float32) error {
	required := []slice{u16("q", q), u16("k", k), u16("v", v), u16("out", out)}
	return c.overMaskedSlices("Context.ForwardUint16", mask, params, required, func(hc, hm uintptr, p capi.Alibi_attention_params) error {
		return capi.Alibi_binding_forward_u16(hc, int(dtype), heads.Q, heads.KV, heads.Dim, q, k, v, hm, p, out, lse)
	})
}

// ForwardPaged runs attention of packed query chunks over a paged KV cache (decode,
// speculative decoding, chunked prefill; alibi_attention_forward_paged in alibi.h): sequence b's
// key t is row t % blockSize of block blockTable[b][t / blockSize] of the caches. q (totalQ, Hq,
// D), kCache and vCache (numBlocks, blockSize, Hkv, D) in q's dtype, blockTable (B, maxBlocks),
// cuSeqlensQ (B+1) and seqlensK (B) I32, out like q, lse nil or (Hq, totalQ) F32. Positions are
// bottom-right aligned per sequence; windowLeft -1 is unbounded. The result equals Forward on the
// gathered keys with the varlen (or sliding window) mask. params nil: the defaults (AttnBias is
// not supported). A bad table (e.g. a block id outside the pool) is StatusInvalidArgument, naming
// the sequence; a failed call writes nothing.
func (c *Context) ForwardPaged(q, kCache, vCache, blockTable, cuSeqlensQ, seqlensK *Tensor, causal bool,
	windowLeft int, params *AttentionParams, out, lse *Tensor) error {
	a := handles{call: "Context.ForwardPaged"}
	hc, hq, hk, hv := a.context(c, ""), a.tensor(q, "q"), a.tensor(kCache, "kCache"), a.tensor(vCache, "vCache")
	htable, hcu, hsk := a.tensor(blockTable, "blockTable"), a.tensor(cuSeqlensQ, "cuSeqlensQ"), a.tensor(seqlensK, "seqlensK")
	hout, hlse := a.tensor(out, "out"), a.optionalTensor(lse, "lse")
	if a.err != nil {
		return a.err
	}
	defer keepAlive(c, q, kCache, vCache, blockTable, cuSeqlensQ, seqlensK, out, lse)
	return withNative(a.call, params, func(p capi.Alibi_attention_params) error {
		return capi.Alibi_attention_forward_paged(hc, hq, hk, hv, htable, hcu, hsk, boolInt(causal), windowLeft, p,
			hout, hlse)
	})
}

// ForwardPagedFloat32 is ForwardPaged over f32 slices, used in place for the call (not copied):
// q and out hold (totalQ, heads.Q, heads.Dim), kCache and vCache (numBlocks, blockSize, heads.KV,
// heads.Dim), blockTable (B, maxBlocks) row-major, cuSeqlensQ (B+1), seqlensK (B); lse nil or
// (heads.Q, totalQ). B is len(seqlensK); every other length is checked against the sizes given,
// and an error names the slice that does not fit. B = 0 (an empty batch: q, out, blockTable and
// seqlensK empty but not nil, cuSeqlensQ {0}) succeeds, as the C call does.
func (c *Context) ForwardPagedFloat32(q, kCache, vCache []float32, heads Heads, blockSize int,
	blockTable, cuSeqlensQ, seqlensK []int32, causal bool, windowLeft int, params *AttentionParams,
	out, lse []float32) error {
	required := []slice{f32("q", q), f32("kCache", kCache), f32("vCache", vCache), i32("blockTable", blockTable),
		i32("cuSeqlensQ", cuSeqlensQ), i32("seqlensK", seqlensK), f32("out", out)}
	return c.overSlices("Context.ForwardPagedFloat32", params, required, func(hc uintptr, p capi.Alibi_attention_params) error {
		return capi.Alibi_binding_forward_paged_f32(hc, heads.Q, heads.KV, heads.Dim, blockSize, q, kCache, vCache,
			blockTable, cuSeqlensQ, seqlensK, boolInt(causal), windowLeft, p, out, lse)
	})
}

// ForwardPagedUint16 is ForwardPagedFloat32 for F16 or BF16 q, caches and out given as 16-bit
// patterns (lse stays f32).
func (c *Context) ForwardPagedUint16(dtype DType, q, kCache, vCache []uint16, heads Heads, blockSize int,
	blockTable, cuSeqlensQ, seqlensK []int32, causal bool, windowLeft int, params *AttentionParams,
	out []uint16, lse []float32) error {
	required := []slice{u16("q", q), u16("kCache", kCache), u16("vCache", vCache), i32("blockTable", blockTable),
		i32("cuSeqlensQ", cuSeqlensQ), i32("seqlensK", seqlensK), u16("out", out)}
	return c.overSlices("Context.ForwardPagedUint16", params, required, func(hc uintptr, p capi.Alibi_attention_params) error {
		return capi.Alibi_binding_forward_paged_u16(hc, int(dtype), heads.Q, heads.KV, heads.Dim, blockSize, q,
			kCache, vCache, blockTable, cuSeqlensQ, seqlensK, boolInt(causal), windowLeft, p, out, lse)
	})
}

// Backward computes the gradients of one Forward call's inputs (training, with trainable
// slopes). q, k, v, mask and params are the forward's, out and lse (required, (Hq, totalQ) f32) its
// results, dout (like q) the gradient of the loss with respect to out. dq (like q), dk and dv (like
// k), each in q's dtype or F32, and dslopes (F32 (Hq), or (sequences, Hq) with per-sequence
// slopes) are overwritten, never accumulated into; a nil one is not computed. With GQA a kv head's
// dk and dv sum over the query heads that read it; params.AttnBias takes part in the scores and
// gets no gradient. A failed call writes nothing.
func (c *Context) Backward(q, k, v *Tensor, mask *Mask, params *AttentionParams, out, lse, dout, dq, dk, dv,
	dslopes *Tensor) error {
	a := handles{call: "Context.Backward"}
	hc, hq, hk, hv := a.context(c, ""), a.tensor(q, "q"), a.tensor(k, "k"), a.tensor(v, "v")
	hm, hout, hlse, hdout := a.mask(mask, "mask"), a.tensor(out, "out"), a.tensor(lse, "lse"), a.tensor(dout, "dout")
	hdq, hdk, hdv := a.optionalTensor(dq, "dq"), a.optionalTensor(dk, "dk"), a.optionalTensor(dv, "dv")
	hds := a.optionalTensor(dslopes, "dslopes")
	if a.err != nil {
		return a.err
	}
	defer keepAlive(c, q, k, v, mask, out, lse, dout, dq, dk, dv, dslopes)
	return withNative(a.call, params, func(p capi.Alibi_attention_params) error {
		return capi.Alibi_attention_backward(hc, hq, hk, hv, hm, p, hout, hlse, hdout, hdq, hdk, hdv, hds)
	})
}

// BackwardFloat32 is Backward over f32 slices, used in place for the call as ForwardFloat32's:
// q, k, v, heads, mask and params the forward's, out and lse (required) its results, dout the
// gradient of out. dq (like q), dk and dv (like k) and dslopes ((heads.Q), or (sequences, heads.Q)
// with per-sequence slopes) are overwritten; a nil one is not computed. Each length is checked
// against the mask's totals, and an error names the slice that does not fit.
func (c *Context) BackwardFloat32(q, k, v []float32, heads Heads, mask *Mask, params *AttentionParams,
	out, lse, dout, dq, dk, dv, dslopes []float32) error {
	required := []slice{f32("q", q), f32("k", k), f32("v", v), f32("out", out), f32("lse", lse), f32("dout", dout)}
	return c.overMaskedSlices("Context.BackwardFloat32", mask, params, required, func(hc, hm uintptr, p capi.Alibi_attention_params) error {
		return capi.Alibi_binding_backward_f32(hc, heads.Q, heads.KV, heads.Dim, q, k, v, hm, p, out, lse, dout,
			dq, dk, dv, dslopes)
	})
}

// BackwardUint16 is BackwardFloat32 for F16 or BF16 data given as 16-bit patterns: q, k, v, out,
// dout and the gradients dq, dk, dv (in q's dtype; Backward over tensors also takes F32
// gradients); lse and dslopes are f32.
func (c *Context) BackwardUint16(dtype DType, q, k, v []uint16, heads Heads, mask *Mask, params *AttentionParams,
	out []uint16, lse []float32, dout, dq, dk, dv []uint16, dslopes []float32) error {
	required := []slice{u16("q", q), u16("k", k), u16("v", v), u16("out", out), f32("lse", lse), u16("dout", dout)}
	return c.overMaskedSlices("Context.BackwardUint16", mask, params, required, func(hc, hm uintptr, p capi.Alibi_attention_params) error {
		return capi.Alibi_binding_backward_u16(hc, int(dtype), heads.Q, heads.KV, heads.Dim, q, k, v, hm, p, out,
			lse, dout, dq, dk, dv, dslopes)
	})
}

// Merge merges two partial results of the same queries over disjoint keys (split-K, prefix
// sharing): outA, outB and out (tokens, heads, headDim) of one dtype, lseA, lseB and lse (heads,
// tokens) f32 as Forward writes them; lse may be nil. out may be outA or outB, lse lseA or lseB
// (in place). A side whose lse is -inf contributes nothing.
func (c *Context) Merge(outA, lseA, outB, lseB, out, lse *Tensor) error {
	a := handles{call: "Context.Merge"}
	hc, hOutA, hLseA := a.context(c, ""), a.tensor(outA, "outA"), a.tensor(lseA, "lseA")
	hOutB, hLseB := a.tensor(outB, "outB"), a.tensor(lseB, "lseB")
	hOut, hLse := a.tensor(out, "out"), a.optionalTensor(lse, "lse")
	if a.err != nil {
		return a.err
	}
	defer keepAlive(c, outA, lseA, outB, lseB, out, lse)
	return fromC(capi.Alibi_attention_merge(hc, hOutA, hLseA, hOutB, hLseB, hOut, hLse))
}

// MergeFloat32 is Merge over f32 slices, used in place for the call as ForwardFloat32's: outA,
// outB and out hold (tokens, heads, headDim), lseA, lseB and lse (heads, tokens); lse may be nil.
// Passing outA (or outB) as out merges in place.
func (c *Context) MergeFloat32(outA, lseA, outB, lseB []float32, heads, headDim int, out, lse []float32) error {
	a := handles{call: "Context.MergeFloat32"}
	hc := a.context(c, "")
	if a.err != nil {
		return a.err
	}
	if err := requireSlices(a.call, f32("outA", outA), f32("lseA", lseA), f32("outB", outB), f32("lseB", lseB),
		f32("out", out)); err != nil {
		return err
	}
	defer runtime.KeepAlive(c)
	return fromC(capi.Alibi_binding_merge_f32(hc, heads, headDim, outA, lseA, outB, lseB, out, lse))
}

// MergeUint16 is MergeFloat32 for F16 or BF16 outputs given as 16-bit patterns (lse stays f32).
func (c *Context) MergeUint16(dtype DType, outA []uint16, lseA []float32, outB []uint16, lseB []float32,
	heads, headDim int, out []uint16, lse []float32) error {
	a := handles{call: "Context.MergeUint16"}
	hc := a.context(c, "")
	if a.err != nil {
		return a.err
	}
	if err := requireSlices(a.call, u16("outA", outA), f32("lseA", lseA), u16("outB", outB), f32("lseB", lseB),
		u16("out", out)); err != nil {
		return err
	}
	defer runtime.KeepAlive(c)
	return fromC(capi.Alibi_binding_merge_u16(hc, int(dtype), heads, headDim, outA, lseA, outB, lseB, out, lse))
}
