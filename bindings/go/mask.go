package alibi

import (
	"fmt"
	"runtime"

	"alibi.dev/go/alibi/internal/capi"
)

// Mask says which (query, key) cells are visible, plus the ALiBi position of every token.
// Host slices are copied; a mask may be used with any context of its device, concurrently.
// Close it when done; one that is not closed is destroyed by the garbage collector (a finalizer).
type Mask struct {
	h              uintptr
	totalQ, totalK int64
}

// NewVarlenMask makes one slice per sequence b: queries [cuQ[b], cuQ[b+1]) and keys
// [cuK[b], cuK[b+1]), causal (bottom-right aligned) or full; positions bottom-right aligned.
func NewVarlenMask(ctx *Context, cuQ, cuK []int32, causal bool) (*Mask, error) {
	const call = "NewVarlenMask"
	hc, batch, err := contextAndBatch(call, ctx, cuQ, cuK)
	if err != nil {
		return nil, err
	}
	defer runtime.KeepAlive(ctx)
	var h uintptr
	if err := capi.Alibi_mask_create_varlen(hc, batch, cuQ, cuK, boolInt(causal), &h); err != nil {
		return nil, fromC(err)
	}
	return newMask(h, int64(cuQ[batch]), int64(cuK[batch])), nil
}

// NewRangesMask makes explicit slices over one packed stream: slice s covers queries
// [qRanges[2s], qRanges[2s+1]) and keys [kRanges[2s], kRanges[2s+1]) with types[s];
// positions are the token indices.
func NewRangesMask(ctx *Context, qRanges, kRanges []int32, types []MaskType, totalQ, totalK int64) (*Mask, error) {
	a := handles{call: "NewRangesMask"}
	hc := a.context(ctx, "ctx")
	if a.err != nil {
		return nil, a.err
	}
	if len(qRanges) != 2*len(types) || len(kRanges) != 2*len(types) {
		return nil, newError(StatusShapeMismatch, fmt.Sprintf(
			"NewRangesMask: %d types need 2 * %d query and key bounds, got %d and %d",
			len(types), len(types), len(qRanges), len(kRanges)))
	}
	codes := make([]int32, len(types))
	for s, t := range types {
		codes[s] = int32(t)
	}
	defer runtime.KeepAlive(ctx)
	var h uintptr
	err := capi.Alibi_mask_create_ranges(hc, len(types), qRanges, kRanges, codes, totalQ, totalK, &h)
	if err != nil {
		return nil, fromC(err)
	}
	return newMask(h, totalQ, totalK), nil
}

// NewSlidingWindowMask makes a sliding window per sequence (left, right; -1 = unbounded),
// positions as for NewVarlenMask.
func NewSlidingWindowMask(ctx *Context, cuQ, cuK []int32, left, right int) (*Mask, error) {
	const call = "NewSlidingWindowMask"
	hc, batch, err := contextAndBatch(call, ctx, cuQ, cuK)
	if err != nil {
		return nil, err
	}
	defer runtime.KeepAlive(ctx)
	var h uintptr
	if err := capi.Alibi_mask_create_sliding_window(hc, batch, cuQ, cuK, left, right, &h); err != nil {
		return nil, fromC(err)
	}
	return newMask(h, int64(cuQ[batch]), int64(cuK[batch])), nil
}

func newMask(h uintptr, totalQ, totalK int64) *Mask {
	m := &Mask{h, totalQ, totalK}
	runtime.SetFinalizer(m, (*Mask).Close)
	return m
}

// Close destroys the mask; closing again, or a nil Mask, is a no-op.
func (m *Mask) Close() {
	if m == nil || m.h == 0 {
		return
	}
	h := m.h
	m.h = 0
	runtime.SetFinalizer(m, nil)
	capi.Alibi_mask_destroy(h)
}

// SetPositions replaces the positions (totalQ and totalK of them); a nil slice keeps that side.
func (m *Mask) SetPositions(q, k []int32) error {
	a := handles{call: "Mask.SetPositions"}
	h := a.mask(m, "")
	if a.err != nil {
		return a.err
	}
	if err := checkPositions("q", q, m.totalQ); err != nil {
		return err
	}
	if err := checkPositions("k", k, m.totalK); err != nil {
		return err
	}
	defer runtime.KeepAlive(m)
	return fromC(capi.Alibi_mask_set_positions(h, q, k))
}

// NumSlices is the number of mask slices (for a varlen mask: the batch size).
func (m *Mask) NumSlices() (int, error) {
	a := handles{call: "Mask.NumSlices"}
	h := a.mask(m, "")
	if a.err != nil {
		return 0, a.err
	}
	defer runtime.KeepAlive(m)
	var n int32
	err := capi.Alibi_mask_get_num_slices(h, &n)
	return int(n), fromC(err)
}

// contextAndBatch checks the arguments of a per-sequence mask: ctx open, cuQ and cuK of one
// length batch + 1 >= 1.
func contextAndBatch(call string, ctx *Context, cuQ, cuK []int32) (uintptr, int, error) {
	a := handles{call: call}
	hc := a.context(ctx, "ctx")
	if a.err != nil {
		return 0, 0, a.err
	}
	if len(cuQ) == 0 || len(cuQ) != len(cuK) {
		return 0, 0, newError(StatusShapeMismatch, fmt.Sprintf(
			"%s: cuQ (%d entries) and cuK (%d entries) need the same length batch + 1 >= 1", call, len(cuQ), len(cuK)))
	}
	return hc, len(cuQ) - 1, nil
}

func checkPositions(name string, positions []int32, expected int64) error {
	if positions != nil && int64(len(positions)) != expected {
		return newError(StatusShapeMismatch, fmt.Sprintf(
			"Mask.SetPositions: %s has %d entries, expected %d", name, len(positions), expected))
	}
	return nil
}
