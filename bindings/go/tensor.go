package alibi

import "fmt"

// Tensor is an n-d array owned by the library on a context's device. Go memory cannot be
// wrapped (C may not keep Go pointers past a call): Context.ForwardFloat32/ForwardUint16 use
// slices in place instead.
type Tensor struct{ h uintptr }

// NewTensor allocates an uninitialised, contiguous row-major tensor.
func NewTensor(ctx *Context, dtype DType, shape ...int64) (*Tensor, error) {
	var h uintptr
	if err := Alibi_tensor_create(ctx.handle(), dtype, len(shape), shape, &h); err != nil {
		return nil, err
	}
	return &Tensor{h}, nil
}

// Close destroys the tensor; closing again is a no-op.
func (t *Tensor) Close() {
	if t != nil && t.h != 0 {
		Alibi_tensor_destroy(t.h)
		t.h = 0
	}
}

func (t *Tensor) handle() uintptr {
	if t == nil {
		return 0
	}
	return t.h
}

func (t *Tensor) CopyFromFloat32(src []float32) error {
	return t.copyFrom("[]float32", bytesOf(src), F32)
}

// CopyFromUint16 copies f16 or bf16 bit patterns.
func (t *Tensor) CopyFromUint16(src []uint16) error {
	return t.copyFrom("[]uint16", bytesOf(src), F16, BF16)
}
func (t *Tensor) CopyFromInt32(src []int32) error { return t.copyFrom("[]int32", bytesOf(src), I32) }
func (t *Tensor) CopyFromInt64(src []int64) error { return t.copyFrom("[]int64", bytesOf(src), I64) }

func (t *Tensor) CopyToFloat32(dst []float32) error { return t.copyTo("[]float32", bytesOf(dst), F32) }
func (t *Tensor) CopyToUint16(dst []uint16) error {
	return t.copyTo("[]uint16", bytesOf(dst), F16, BF16)
}
func (t *Tensor) CopyToInt32(dst []int32) error { return t.copyTo("[]int32", bytesOf(dst), I32) }
func (t *Tensor) CopyToInt64(dst []int64) error { return t.copyTo("[]int64", bytesOf(dst), I64) }

func (t *Tensor) copyFrom(what string, src []byte, accepted ...DType) error {
	if err := t.requireDType("CopyFrom: "+what, accepted); err != nil {
		return err
	}
	return Alibi_tensor_copy_from_host(t.handle(), src)
}

func (t *Tensor) copyTo(what string, dst []byte, accepted ...DType) error {
	if err := t.requireDType("CopyTo: "+what, accepted); err != nil {
		return err
	}
	return Alibi_tensor_copy_to_host(t.handle(), dst)
}

func (t *Tensor) requireDType(what string, accepted []DType) error {
	dtype, err := t.DType()
	if err != nil {
		return err
	}
	for _, d := range accepted {
		if d == dtype {
			return nil
		}
	}
	return newError(StatusDTypeMismatch, fmt.Sprintf("Tensor.%s does not fit a tensor of dtype %d", what, dtype))
}

func (t *Tensor) DType() (DType, error) {
	var d int32
	err := Alibi_tensor_get_dtype(t.handle(), &d)
	return DType(d), err
}

func (t *Tensor) Shape() ([]int64, error) {
	var ndim int32
	if err := Alibi_tensor_get_ndim(t.handle(), &ndim); err != nil {
		return nil, err
	}
	shape := make([]int64, ndim)
	err := Alibi_tensor_get_shape(t.handle(), len(shape), shape)
	return shape, err
}
