/*
 * C# typemaps of the common layer. Raw calls live in AlibiNative (static, C names; a call
 * returning alibi_status returns void and throws AlibiException for a failed status); handles
 * and data pointers are IntPtr, out-parameters C# out parameters, int32/int64/float host arrays
 * C# arrays (pinned by the marshaller, not copied). The classes of namespace Alibi (Context,
 * Tensor, Mask, AttentionParams) are the idiomatic API over them.
 */
%include <typemaps.i>

/*
 * A failed status: the C wrapper hands it with its message to a C# callback, which leaves an
 * AlibiException pending in SWIG's SWIGPendingException; the C# method throws it on return.
 */
%insert(runtime) %{
typedef void (SWIGSTDCALL* alibi_csharp_throw_callback)(int status, const char* message);
static alibi_csharp_throw_callback alibi_csharp_throw = NULL;

SWIGEXPORT void SWIGSTDCALL alibi_csharp_register_throw(alibi_csharp_throw_callback callback) {
  alibi_csharp_throw = callback;
}
%}

%pragma(csharp) imclasscode=%{
  protected class AlibiExceptionHelper {
    public delegate void ThrowDelegate(Status status, string message);
    static ThrowDelegate throwDelegate = new ThrowDelegate(SetPending);

    [global::System.Runtime.InteropServices.DllImport("$dllimport", EntryPoint="alibi_csharp_register_throw")]
    public static extern void Register(ThrowDelegate callback);

    static void SetPending(Status status, string message) {
      SWIGPendingException.Set(new AlibiException(status, message));
    }

    static AlibiExceptionHelper() {
      Register(throwDelegate);
    }
  }
  protected static AlibiExceptionHelper alibiExceptionHelper = new AlibiExceptionHelper();
%}

%typemap(ctype) alibi_status "void"
%typemap(imtype) alibi_status "void"
%typemap(cstype) alibi_status "void"
%typemap(csout, excode=SWIGEXCODE) alibi_status { $imcall;$excode }
%typemap(out, canthrow=1) alibi_status
%{ if ($1 != ALIBI_STATUS_SUCCESS) alibi_csharp_throw((int)$1, alibi_binding_error_message()); %}
/* alibi_status_string's argument stays a Status. */
%apply enum SWIGTYPE { alibi_status status };

%rename(Success) ALIBI_STATUS_SUCCESS;
%rename(InvalidArgument) ALIBI_STATUS_INVALID_ARGUMENT;
%rename(NullPointer) ALIBI_STATUS_NULL_POINTER;
%rename(ShapeMismatch) ALIBI_STATUS_SHAPE_MISMATCH;
%rename(DTypeMismatch) ALIBI_STATUS_DTYPE_MISMATCH;
%rename(Unsupported) ALIBI_STATUS_UNSUPPORTED;
%rename(BackendUnavailable) ALIBI_STATUS_BACKEND_UNAVAILABLE;
%rename(OutOfMemory) ALIBI_STATUS_OUT_OF_MEMORY;
%rename(DeviceError) ALIBI_STATUS_DEVICE_ERROR;
%rename(Internal) ALIBI_STATUS_INTERNAL;
%rename(F32) ALIBI_DTYPE_F32;
%rename(F16) ALIBI_DTYPE_F16;
%rename(BF16) ALIBI_DTYPE_BF16;
%rename(I32) ALIBI_DTYPE_I32;
%rename(I64) ALIBI_DTYPE_I64;
%rename(Auto) ALIBI_DEVICE_AUTO;
%rename(Cpu) ALIBI_DEVICE_CPU;
%rename(Cuda) ALIBI_DEVICE_CUDA;
%rename(Full) ALIBI_MASK_FULL;
%rename(Causal) ALIBI_MASK_CAUSAL;
%rename(InverseCausal) ALIBI_MASK_INV_CAUSAL;
%rename(BiCausal) ALIBI_MASK_BI_CAUSAL;
%rename("%(camelcase)s", %$ismember) "";

%define ALIBI_CS_HANDLE(TYPE)
%apply void* VOID_INT_PTR { TYPE };
%typemap(ctype) TYPE* out "void**"
%typemap(imtype) TYPE* out "out global::System.IntPtr"
%typemap(cstype) TYPE* out "out global::System.IntPtr"
%typemap(csin) TYPE* out "out $csinput"
%typemap(in) TYPE* out %{ $1 = ($1_ltype)$input; %}
%enddef

ALIBI_CS_HANDLE(alibi_context_t)
ALIBI_CS_HANDLE(alibi_tensor_t)
ALIBI_CS_HANDLE(alibi_mask_t)
ALIBI_CS_HANDLE(void*)   /* void** out: the data address of alibi_tensor_get_data */

%apply int* OUTPUT { int* out, alibi_dtype* out, alibi_device* out };

/* 64-bit byte counts (SWIG's C# default for size_t is a 32-bit uint). */
%apply unsigned long long { size_t };

/* Host arrays: blittable, so the marshaller pins them and passes their address. */
%define ALIBI_CS_ARRAY(CTYPE, CSTYPE)
%typemap(ctype) const CTYPE*, CTYPE* "CTYPE*"
%typemap(imtype, inattributes="[global::System.Runtime.InteropServices.In]") const CTYPE* "CSTYPE[]"
%typemap(imtype, inattributes="[global::System.Runtime.InteropServices.In, global::System.Runtime.InteropServices.Out]") CTYPE* "CSTYPE[]"
%typemap(cstype) const CTYPE*, CTYPE* "CSTYPE[]"
%typemap(csin) const CTYPE*, CTYPE* "$csinput"
%typemap(in) const CTYPE*, CTYPE* %{ $1 = ($1_ltype)$input; %}
%enddef

ALIBI_CS_ARRAY(int32_t, int)
ALIBI_CS_ARRAY(int64_t, long)
ALIBI_CS_ARRAY(float, float)

/* Data: addresses of caller memory (pinned arrays, native buffers). */
%apply void* VOID_INT_PTR { void* data, const void* src, void* dst, void* cuda_stream };

/*
 * A C# array as a pointer and its element count: two P/Invoke parameters, the count from the
 * array's Length (0 for null), then the array, pinned by the marshaller. SWIG appends each
 * parameter's name to its type, so the count's own name is part of these types.
 */
%define ALIBI_CS_COUNTED_ARRAY(CTYPE, CSTYPE)
%typemap(ctype) (const CTYPE* ARRAY, size_t COUNT), (CTYPE* ARRAY, size_t COUNT)
  "int64_t count$argnum, CTYPE*"
%typemap(imtype) (const CTYPE* ARRAY, size_t COUNT)
  "long count$argnum, [global::System.Runtime.InteropServices.In] CSTYPE[]"
%typemap(imtype) (CTYPE* ARRAY, size_t COUNT)
  "long count$argnum, [global::System.Runtime.InteropServices.In, global::System.Runtime.InteropServices.Out] CSTYPE[]"
%typemap(cstype) (const CTYPE* ARRAY, size_t COUNT), (CTYPE* ARRAY, size_t COUNT) "CSTYPE[]"
%typemap(csin) (const CTYPE* ARRAY, size_t COUNT), (CTYPE* ARRAY, size_t COUNT)
  "$csinput?.Length ?? 0, $csinput"
%typemap(in) (const CTYPE* ARRAY, size_t COUNT), (CTYPE* ARRAY, size_t COUNT)
%{ $1 = ($1_ltype)$input; $2 = (size_t)count$argnum; %}
%enddef

ALIBI_CS_COUNTED_ARRAY(float, float)
ALIBI_CS_COUNTED_ARRAY(uint16_t, ushort)
