package alibi

import "runtime"

// handles collects the C handles of one call's objects, keeping the first error: a nil or
// closed object, named as the call's argument (name "" for the method's receiver).
type handles struct {
	call string
	err  error
}

func (a *handles) check(kind, name string, isNil bool, h uintptr) uintptr {
	switch {
	case a.err != nil:
	case isNil:
		a.err = nilError(a.call, describe(kind, name))
	case h == 0:
		a.err = closedError(a.call, kind, name)
	}
	return h
}

func (a *handles) context(c *Context, name string) uintptr {
	if c == nil {
		return a.check("Context", name, true, 0)
	}
	return a.check("Context", name, false, c.h)
}

func (a *handles) tensor(t *Tensor, name string) uintptr {
	if t == nil {
		return a.check("Tensor", name, true, 0)
	}
	return a.check("Tensor", name, false, t.h)
}

// optionalTensor is 0 for a nil tensor; a closed one is an error.
func (a *handles) optionalTensor(t *Tensor, name string) uintptr {
	if t == nil {
		return 0
	}
	return a.tensor(t, name)
}

func (a *handles) mask(m *Mask, name string) uintptr {
	if m == nil {
		return a.check("Mask", name, true, 0)
	}
	return a.check("Mask", name, false, m.h)
}

// keepAlive keeps objects reachable until it runs (deferred: until the call returns), so no
// finalizer destroys a handle while C uses it.
func keepAlive(objects ...any) {
	for _, o := range objects {
		runtime.KeepAlive(o)
	}
}

// slice is one required slice argument of a call over slices: []float32, []uint16 or []int32.
type slice struct {
	name   string
	absent bool
}

func f32(name string, s []float32) slice { return slice{name, s == nil} }
func u16(name string, s []uint16) slice  { return slice{name, s == nil} }
func i32(name string, s []int32) slice   { return slice{name, s == nil} }

// requireSlices returns an error naming the first absent (nil) slice.
func requireSlices(call string, slices ...slice) error {
	for _, s := range slices {
		if s.absent {
			return nilError(call, s.name)
		}
	}
	return nil
}
