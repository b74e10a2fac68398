// Package alibi is the Go binding of libalibi: attention with linear biases (ALiBi) over packed
// variable-length batches, on the CPU or CUDA, from Go slices used in place.
//
// A Context says where calls run; a Mask says which (query, key) cells are visible and where each
// token sits; Context.ForwardFloat32 runs attention over []float32 slices (ForwardUint16 over
// f16/bf16 bit patterns), and Context.Forward over library-owned Tensors. For training,
// Context.BackwardFloat32, BackwardUint16 and Backward give the gradients of q, k, v and the
// ALiBi slopes (nil gradients are not computed). For serving, Context.ForwardPagedFloat32,
// ForwardPagedUint16 and ForwardPaged read keys and values from a paged KV cache (blocks of a
// shared pool named by a block table per sequence).
//
// # Building
//
// The package is cgo: it compiles its C wrapper and links libalibi through pkg-config
// ("#cgo pkg-config: alibi"), so PKG_CONFIG_PATH must find alibi.pc (<prefix>/lib/pkgconfig for
// an installation outside the system's directories). At run time libalibi.so.0 is found as any
// shared library: the system's directories, LD_LIBRARY_PATH, or an rpath linked in with
// go build -ldflags=-r=<prefix>/lib.
//
// # Lifecycle
//
// Close a Context, Tensor or Mask when done with it; Close is idempotent. One that is never closed
// is destroyed by the garbage collector (runtime.SetFinalizer), so forgetting Close leaks nothing
// for long. Tensors and masks keep their device alive: closing a Context before them is safe.
// A Context is used by one goroutine at a time; a Mask may be shared.
//
// # Errors
//
// Every error is an *Error: a Status and a message naming the call and the argument at fault.
// A nil *Context, *Mask or required slice gives StatusNullPointer naming it; a closed object gives
// an error for which errors.Is(err, ErrClosed) holds; slice lengths that do not fit the mask's
// totals give StatusShapeMismatch naming the slice. Nothing panics and nothing is written to the
// outputs of a failed call.
package alibi
