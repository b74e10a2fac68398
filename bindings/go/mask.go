package alibi

import "fmt"

// Mask says which (query, key) cells are visible, plus the ALiBi position of every token.
// Host slices are copied; a mask may be used with any context of its device, concurrently.
type Mask struct {
	h              uintptr
	totalQ, totalK int64
}

// NewVarlenMask makes one slice per sequence b: queries [cuQ[b], cuQ[b+1]) and keys
// [cuK[b], cuK[b+1]), causal (bottom-right aligned) or full; positions bottom-right aligned.
func NewVarlenMask(ctx *Context, cuQ, cuK []int32, causal bool) (*Mask, error) {
	batch, err := batchOf("NewVarlenMask", cuQ, cuK)
	if err != nil {
		return nil, err
	}
	var h uintptr
	if err := Alibi_mask_create_varlen(ctx.handle(), batch, cuQ, cuK, boolInt(causal), &h); err != nil {
		return nil, err
	}
	return &Mask{h, int64(cuQ[batch]), int64(cuK[batch])}, nil
}

// NewRangesMask makes explicit slices over one packed stream: slice s covers queries
// [qRanges[2s], qRanges[2s+1]) and keys [kRanges[2s], kRanges[2s+1]) with types[s];
// positions are the token indices.
func NewRangesMask(ctx *Context, qRanges, kRanges []int32, types []MaskType, totalQ, totalK int64) (*Mask, error) {
	if len(qRanges) != 2*len(types) || len(kRanges) != 2*len(types) {
		return nil, newError(StatusShapeMismatch, fmt.Sprintf(
			"NewRangesMask: %d types need 2 * %d query and key bounds, got %d and %d",
			len(types), len(types), len(qRanges), len(kRanges)))
	}
	codes := make([]int32, len(types))
	for s, t := range types {
		codes[s] = int32(t)
	}
	var h uintptr
	err := Alibi_mask_create_ranges(ctx.handle(), len(types), qRanges, kRanges, codes, totalQ, totalK, &h)
	if err != nil {
		return nil, err
	}
	return &Mask{h, totalQ, totalK}, nil
}

// NewSlidingWindowMask makes a sliding window per sequence (left, right; -1 = unbounded),
// positions as for NewVarlenMask.
func NewSlidingWindowMask(ctx *Context, cuQ, cuK []int32, left, right int) (*Mask, error) {
	batch, err := batchOf("NewSlidingWindowMask", cuQ, cuK)
	if err != nil {
		return nil, err
	}
	var h uintptr
	if err := Alibi_mask_create_sliding_window(ctx.handle(), batch, cuQ, cuK, left, right, &h); err != nil {
		return nil, err
	}
	return &Mask{h, int64(cuQ[batch]), int64(cuK[batch])}, nil
}

// Close destroys the mask; closing again is a no-op.
func (m *Mask) Close() {
	if m != nil && m.h != 0 {
		Alibi_mask_destroy(m.h)
		m.h = 0
	}
}

func (m *Mask) handle() uintptr {
	if m == nil {
		return 0
	}
	return m.h
}

// SetPositions replaces the positions (totalQ and totalK of them); a nil slice keeps that side.
func (m *Mask) SetPositions(q, k []int32) error {
	if m != nil {
		if err := checkPositions("q", q, m.totalQ); err != nil {
			return err
		}
		if err := checkPositions("k", k, m.totalK); err != nil {
			return err
		}
	}
	return Alibi_mask_set_positions(m.handle(), q, k)
}

func (m *Mask) NumSlices() (int, error) {
	var n int32
	err := Alibi_mask_get_num_slices(m.handle(), &n)
	return int(n), err
}

func batchOf(where string, cuQ, cuK []int32) (int, error) {
	if len(cuQ) == 0 || len(cuQ) != len(cuK) {
		return 0, newError(StatusShapeMismatch, where+": cuQ and cuK need the same length batch + 1 >= 1")
	}
	return len(cuQ) - 1, nil
}

func checkPositions(name string, positions []int32, expected int64) error {
	if positions != nil && int64(len(positions)) != expected {
		return newError(StatusShapeMismatch, fmt.Sprintf(
			"Mask.SetPositions: %s has %d entries, expected %d", name, len(positions), expected))
	}
	return nil
}
