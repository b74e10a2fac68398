// Package capi is the raw binding of libalibi's C ABI that SWIG generates from bindings/go/alibi.i
// (alibi.go and its C wrapper alibi_wrap.c, beside this file): one Alibi_* function per C
// function, handles as uintptr. It is internal: package alibi is the API over it.
package capi

// Error is a failed raw call: the alibi_status code and the message read in the C wrapper on the
// call's own OS thread (the goout typemap of local.i builds it).
type Error struct {
	Status  int
	Message string
}

func (e *Error) Error() string { return e.Message }
