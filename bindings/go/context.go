package alibi

import "unsafe"

// Context is a device context: where calls run. Use it from one goroutine at a time.
type Context struct{ h uintptr }

// NewContext creates a context on a device (index 0 for the CPU).
func NewContext(device Device, index int) (*Context, error) {
	var h uintptr
	if err := Alibi_context_create(device, index, &h); err != nil {
		return nil, err
	}
	return &Context{h}, nil
}

// NewCPUContext creates a CPU context.
func NewCPUContext() (*Context, error) { return NewContext(DeviceCPU, 0) }

// Close destroys the context; closing again is a no-op.
func (c *Context) Close() {
	if c != nil && c.h != 0 {
		Alibi_context_destroy(c.h)
		c.h = 0
	}
}

func (c *Context) handle() uintptr {
	if c == nil {
		return 0
	}
	return c.h
}

// Device is DeviceCPU or DeviceCUDA (never DeviceAuto).
func (c *Context) Device() (Device, error) {
	var d int32
	err := Alibi_context_get_device(c.handle(), &d)
	return Device(d), err
}

// SetNumThreads sets the CPU worker threads of this context's calls; 0 = one per core.
func (c *Context) SetNumThreads(n int) error {
	return Alibi_context_set_num_threads(c.handle(), n)
}

// Synchronize waits until the context's work is done.
func (c *Context) Synchronize() error {
	return Alibi_context_synchronize(c.handle())
}

// Forward runs attention over tensors: q (totalQ, Hq, D), k and v (totalK, Hkv, D), out like q,
// lse nil or (Hq, totalQ) f32. params nil: the defaults.
func (c *Context) Forward(q, k, v *Tensor, mask *Mask, params *AttentionParams, out, lse *Tensor) error {
	if lse != nil && lse.h == 0 {
		return newError(StatusNullPointer, "Forward: lse is closed")
	}
	return withNative(params, func(p Alibi_attention_params) error {
		return Alibi_attention_forward(c.handle(), q.handle(), k.handle(), v.handle(), mask.handle(), p,
			out.handle(), lse.handle())
	})
}

// Heads gives the layout of packed arrays: q and out (totalQ, Q, Dim), k and v (totalK, KV, Dim).
type Heads struct{ Q, KV, Dim int }

// ForwardFloat32 runs attention over f32 slices, used in place for the call (not copied);
// lse is nil or (heads.Q, totalQ). totalQ and totalK follow from the lengths, which the
// library checks against each other and the mask.
func (c *Context) ForwardFloat32(q, k, v []float32, heads Heads, mask *Mask, params *AttentionParams,
	out, lse []float32) error {
	return withNative(params, func(p Alibi_attention_params) error {
		return Alibi_binding_forward_f32(c.handle(), heads.Q, heads.KV, heads.Dim, q, k, v, mask.handle(), p,
			out, lse)
	})
}

// ForwardUint16 is ForwardFloat32 for F16 or BF16 data given as 16-bit patterns.
func (c *Context) ForwardUint16(dtype DType, q, k, v []uint16, heads Heads, mask *Mask,
	params *AttentionParams, out []uint16, lse []float32) error {
	return withNative(params, func(p Alibi_attention_params) error {
		return Alibi_binding_forward_u16(c.handle(), dtype, heads.Q, heads.KV, heads.Dim, q, k, v,
			mask.handle(), p, out, lse)
	})
}

// Merge merges two partial results of the same queries over disjoint keys (split-K, prefix
// sharing): outA, outB and out (tokens, heads, headDim) of one dtype, lseA, lseB and lse (heads,
// tokens) f32 as Forward writes them; lse may be nil. out may be outA or outB, lse lseA or lseB
// (in place). A side whose lse is -inf contributes nothing.
func (c *Context) Merge(outA, lseA, outB, lseB, out, lse *Tensor) error {
	if lse != nil && lse.h == 0 {
		return newError(StatusNullPointer, "Merge: lse is closed")
	}
	return Alibi_attention_merge(c.handle(), outA.handle(), lseA.handle(), outB.handle(), lseB.handle(),
		out.handle(), lse.handle())
}

// MergeFloat32 is Merge over f32 slices, used in place for the call as ForwardFloat32's: outA,
// outB and out hold (tokens, heads, headDim), lseA, lseB and lse (heads, tokens); lse may be nil.
// Passing outA (or outB) as out merges in place.
func (c *Context) MergeFloat32(outA, lseA, outB, lseB []float32, heads, headDim int, out, lse []float32) error {
	return Alibi_binding_merge_f32(c.handle(), heads, headDim, outA, lseA, outB, lseB, out, lse)
}

// MergeUint16 is MergeFloat32 for F16 or BF16 outputs given as 16-bit patterns (lse stays f32).
func (c *Context) MergeUint16(dtype DType, outA []uint16, lseA []float32, outB []uint16, lseB []float32,
	heads, headDim int, out []uint16, lse []float32) error {
	return Alibi_binding_merge_u16(c.handle(), dtype, heads, headDim, outA, lseA, outB, lseB, out, lse)
}

// bytesOf views a slice's elements as bytes, without copying (nil for an empty slice).
func bytesOf[T float32 | uint16 | int32 | int64](x []T) []byte {
	if len(x) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&x[0])), len(x)*int(unsafe.Sizeof(x[0])))
}
