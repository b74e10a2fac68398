/*
 * Go typemaps of the common layer, generating the internal package capi (SWIG -package capi):
 * raw calls are its Alibi_* functions (C names; a call returning alibi_status returns error, a
 * *capi.Error for a failed status, never panicking); handles are uintptr, enums int,
 * out-parameters Go pointers, host arrays and data slices passed in place (cgo checks them; the
 * library never keeps them past the call). The public package alibi (the .go files of this
 * folder) is the idiomatic API over them.
 *
 * cgo builds SWIG's C wrapper (alibi_wrap.c, beside the generated Go file) from source and links
 * libalibi through pkg-config: a plain `go build` with PKG_CONFIG_PATH finding alibi.pc.
 */
%insert(cgo_comment_typedefs) %{
#cgo pkg-config: alibi
#cgo CFLAGS: -fno-strict-aliasing
%}

/*
 * A failed status leaves the C wrapper as a string of C memory: the status as its first byte,
 * then the message, read there on the call's own OS thread (a goroutine may change threads
 * between two cgo calls). Success is the empty string, with nothing to free.
 */
%fragment("alibi_go_failure", "header") %{
static _gostring_ alibi_go_failure(alibi_status status) {
  _gostring_ failure = {NULL, 0};
  const char* message;
  size_t length;
  if (status == ALIBI_STATUS_SUCCESS) return failure;
  message = alibi_binding_error_message();
  length = strlen(message);
  failure.p = (char*)malloc(length + 1);
  if (!failure.p) abort();  /* out of C memory is fatal in Go, as for cgo's C.CString */
  failure.p[0] = (char)status;
  memcpy(failure.p + 1, message, length);
  failure.n = (intgo)(length + 1);
  return failure;
}
%}
%typemap(gotype) alibi_status "error"
%typemap(imtype) alibi_status "string"
%typemap(out, fragment="alibi_go_failure") alibi_status %{ $result = alibi_go_failure($1); %}
%typemap(goout, fragment="CopyString") alibi_status
%{ if $1 != "" {
    failure := swigCopyString($1)
    $result = &Error{Status: int(failure[0]), Message: failure[1:]}
  } %}
/* alibi_status_string's argument stays a status code. */
%typemap(gotype) alibi_status status "int"
%typemap(imtype) alibi_status status "int"
%typemap(in) alibi_status status %{ $1 = ($1_ltype)$input; %}

%typemap(gotype) alibi_dtype, alibi_device, alibi_mask_type "int"
%rename("$ignore", %$isenumitem) "";
%rename("%(camelcase)s", %$ismember) "";

%define ALIBI_GO_HANDLE(TYPE)
%typemap(gotype) TYPE "uintptr"
%typemap(in) TYPE %{ $1 = ($1_ltype)$input; %}
%typemap(out) TYPE %{ $result = $1; %}
%typemap(gotype) TYPE* out "*uintptr"
%typemap(in) TYPE* out %{ $1 = ($1_ltype)$input; %}
%enddef

ALIBI_GO_HANDLE(alibi_context_t)
ALIBI_GO_HANDLE(alibi_tensor_t)
ALIBI_GO_HANDLE(alibi_mask_t)
ALIBI_GO_HANDLE(void*)   /* void** out: the data address of alibi_tensor_get_data */

/* int and the enums are 32-bit in C. */
%typemap(gotype) int* out, alibi_dtype* out, alibi_device* out "*int32"
%typemap(in) int* out, alibi_dtype* out, alibi_device* out %{ $1 = ($1_ltype)$input; %}

%define ALIBI_GO_SLICE(CTYPE, GOTYPE)
%typemap(gotype) const CTYPE*, CTYPE* "[]GOTYPE"
%typemap(in) const CTYPE*, CTYPE* %{ $1 = ($1_ltype)$input.array; %}
%enddef

ALIBI_GO_SLICE(int32_t, int32)
ALIBI_GO_SLICE(int64_t, int64)
ALIBI_GO_SLICE(float, float32)

/* A slice as a pointer and its element count (NULL for a nil slice). */
%define ALIBI_GO_COUNTED_SLICE(CTYPE, GOTYPE)
%typemap(gotype) (const CTYPE* ARRAY, size_t COUNT), (CTYPE* ARRAY, size_t COUNT) "[]GOTYPE"
%typemap(in) (const CTYPE* ARRAY, size_t COUNT), (CTYPE* ARRAY, size_t COUNT)
%{ $1 = ($1_ltype)$input.array; $2 = (size_t)$input.len; %}
%enddef

ALIBI_GO_COUNTED_SLICE(float, float32)
ALIBI_GO_COUNTED_SLICE(uint16_t, uint16)
ALIBI_GO_COUNTED_SLICE(int32_t, int32)

/* Byte copies take a byte slice; its length is the byte count. */
%typemap(gotype) (const void* src, size_t bytes), (void* dst, size_t bytes) "[]byte"
%typemap(in) (const void* src, size_t bytes), (void* dst, size_t bytes)
%{ $1 = $input.array; $2 = (size_t)$input.len; %}

/* Addresses of C memory (Go memory may not be kept by C past a call). */
%typemap(gotype) void* data, void* cuda_stream "uintptr"
%typemap(in) void* data, void* cuda_stream %{ $1 = (void*)$input; %}
