package alibi

import (
	"fmt"
	"runtime"
	"unsafe"

	"alibi.dev/go/alibi/internal/capi"
)

// Tensor is an n-d array owned by the library on a context's device. Go memory cannot be
// wrapped (C may not keep Go pointers past a call): Context.ForwardFloat32/ForwardUint16 use
// slices in place instead. Close it when done; one that is not closed is destroyed by the
// garbage collector (a finalizer).
type Tensor struct{ h uintptr }

// NewTensor allocates an uninitialised, contiguous row-major tensor on ctx's device.
func NewTensor(ctx *Context, dtype DType, shape ...int64) (*Tensor, error) {
	a := handles{call: "NewTensor"}
	hc := a.context(ctx, "ctx")
	if a.err != nil {
		return nil, a.err
	}
	defer runtime.KeepAlive(ctx)
	var h uintptr
	if err := capi.Alibi_tensor_create(hc, int(dtype), len(shape), shape, &h); err != nil {
		return nil, fromC(err)
	}
	t := &Tensor{h}
	runtime.SetFinalizer(t, (*Tensor).Close)
	return t, nil
}

// Close destroys the tensor; closing again, or a nil Tensor, is a no-op.
func (t *Tensor) Close() {
	if t == nil || t.h == 0 {
		return
	}
	h := t.h
	t.h = 0
	runtime.SetFinalizer(t, nil)
	capi.Alibi_tensor_destroy(h)
}

// CopyFromFloat32 copies src, one element per element, into an F32 tensor.
func (t *Tensor) CopyFromFloat32(src []float32) error {
	return copyFrom(t, "Tensor.CopyFromFloat32", src, F32)
}

// CopyFromUint16 copies f16 or bf16 bit patterns into an F16 or BF16 tensor.
func (t *Tensor) CopyFromUint16(src []uint16) error {
	return copyFrom(t, "Tensor.CopyFromUint16", src, F16, BF16)
}

// CopyFromInt32 copies src into an I32 tensor.
func (t *Tensor) CopyFromInt32(src []int32) error {
	return copyFrom(t, "Tensor.CopyFromInt32", src, I32)
}

// CopyFromInt64 copies src into an I64 tensor.
func (t *Tensor) CopyFromInt64(src []int64) error {
	return copyFrom(t, "Tensor.CopyFromInt64", src, I64)
}

// CopyToFloat32 copies an F32 tensor into dst, which holds as many elements.
func (t *Tensor) CopyToFloat32(dst []float32) error {
	return copyTo(t, "Tensor.CopyToFloat32", dst, F32)
}

// CopyToUint16 copies an F16 or BF16 tensor's bit patterns into dst.
func (t *Tensor) CopyToUint16(dst []uint16) error {
	return copyTo(t, "Tensor.CopyToUint16", dst, F16, BF16)
}

// CopyToInt32 copies an I32 tensor into dst.
func (t *Tensor) CopyToInt32(dst []int32) error { return copyTo(t, "Tensor.CopyToInt32", dst, I32) }

// CopyToInt64 copies an I64 tensor into dst.
func (t *Tensor) CopyToInt64(dst []int64) error { return copyTo(t, "Tensor.CopyToInt64", dst, I64) }

type element interface {
	float32 | uint16 | int32 | int64
}

func copyFrom[T element](t *Tensor, call string, src []T, accepted ...DType) error {
	h, err := t.handleOfDType(call, "src", src == nil, accepted)
	if err != nil {
		return err
	}
	defer runtime.KeepAlive(t)
	return fromC(capi.Alibi_tensor_copy_from_host(h, bytesOf(src)))
}

func copyTo[T element](t *Tensor, call string, dst []T, accepted ...DType) error {
	h, err := t.handleOfDType(call, "dst", dst == nil, accepted)
	if err != nil {
		return err
	}
	defer runtime.KeepAlive(t)
	return fromC(capi.Alibi_tensor_copy_to_host(h, bytesOf(dst)))
}

// handleOfDType is t's handle for a copy with the slice named slice, or an error: t nil or
// closed, the slice nil, or t's dtype not one of accepted.
func (t *Tensor) handleOfDType(call, slice string, sliceIsNil bool, accepted []DType) (uintptr, error) {
	a := handles{call: call}
	h := a.tensor(t, "")
	if a.err != nil {
		return 0, a.err
	}
	if sliceIsNil {
		return 0, nilError(call, slice)
	}
	dtype, err := t.DType()
	if err != nil {
		return 0, err
	}
	for _, d := range accepted {
		if d == dtype {
			return h, nil
		}
	}
	return 0, newError(StatusDTypeMismatch, fmt.Sprintf("%s: the Tensor's dtype is %d, not one of %v", call, dtype, accepted))
}

// bytesOf views a slice's elements as bytes, without copying (nil for an empty slice).
func bytesOf[T element](x []T) []byte {
	if len(x) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&x[0])), len(x)*int(unsafe.Sizeof(x[0])))
}

// DType is the tensor's element type.
func (t *Tensor) DType() (DType, error) {
	a := handles{call: "Tensor.DType"}
	h := a.tensor(t, "")
	if a.err != nil {
		return 0, a.err
	}
	defer runtime.KeepAlive(t)
	var d int32
	err := capi.Alibi_tensor_get_dtype(h, &d)
	return DType(d), fromC(err)
}

// Shape is the tensor's size in each dimension.
func (t *Tensor) Shape() ([]int64, error) {
	a := handles{call: "Tensor.Shape"}
	h := a.tensor(t, "")
	if a.err != nil {
		return nil, a.err
	}
	defer runtime.KeepAlive(t)
	var ndim int32
	if err := capi.Alibi_tensor_get_ndim(h, &ndim); err != nil {
		return nil, fromC(err)
	}
	shape := make([]int64, ndim)
	return shape, fromC(capi.Alibi_tensor_get_shape(h, len(shape), shape))
}
