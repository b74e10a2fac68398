/*
 * C# typemaps of the common layer. Raw calls live in AlibiNative (static, C names; a call
 * returning alibi_status returns void and throws AlibiException for a failed status); handles
 * and data pointers are IntPtr, except a created handle, which arrives as its SafeHandle
 * (ContextHandle, TensorHandle, MaskHandle: no moment where it is owned by nobody);
 * out-parameters are C# out parameters, int32/int64/float host arrays C# arrays (pinned by the
 * marshaller, not copied). All of it is internal: the classes of namespace Alibi (Context,
 * Tensor, Mask, AttentionParams) and the enums are the public API.
 */
%include <typemaps.i>

%pragma(csharp) moduleclassmodifiers="internal class"
%typemap(csclassmodifiers) struct alibi_attention_params "internal class"

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

/*
 * XML docs of the public enums (C# -doc): SWIG writes %csattributes text before an enum value and
 * the csclassmodifiers text in front of "enum".
 */
%typemap(csclassmodifiers) enum alibi_status "/// <summary>The outcome of a libalibi call; a failed one is thrown as an AlibiException carrying it.</summary>\npublic enum"
%csattributes ALIBI_STATUS_SUCCESS "/// <summary>The call succeeded.</summary>";
%csattributes ALIBI_STATUS_INVALID_ARGUMENT "/// <summary>A value outside its domain.</summary>";
%csattributes ALIBI_STATUS_NULL_POINTER "/// <summary>A required argument was missing (NULL).</summary>";
%csattributes ALIBI_STATUS_SHAPE_MISMATCH "/// <summary>Tensor or array sizes disagree with each other or the mask.</summary>";
%csattributes ALIBI_STATUS_DTYPE_MISMATCH "/// <summary>Element types disagree or are not accepted.</summary>";
%csattributes ALIBI_STATUS_UNSUPPORTED "/// <summary>Valid, but not supported by this backend.</summary>";
%csattributes ALIBI_STATUS_BACKEND_UNAVAILABLE "/// <summary>The requested device is not available.</summary>";
%csattributes ALIBI_STATUS_OUT_OF_MEMORY "/// <summary>An allocation failed.</summary>";
%csattributes ALIBI_STATUS_DEVICE_ERROR "/// <summary>The device reported an error.</summary>";
%csattributes ALIBI_STATUS_INTERNAL "/// <summary>An unexpected failure inside the library.</summary>";
%csattributes ALIBI_STATUS_COMMUNICATION_ERROR "/// <summary>A collective of the communicator failed (context parallelism).</summary>";
%typemap(csclassmodifiers) enum alibi_dtype "/// <summary>Element types; F16 (IEEE binary16) and BF16 (bfloat16) elements are 16-bit patterns (ushort).</summary>\npublic enum"
%csattributes ALIBI_DTYPE_F32 "/// <summary>32-bit float.</summary>";
%csattributes ALIBI_DTYPE_F16 "/// <summary>IEEE binary16, as its 16-bit pattern.</summary>";
%csattributes ALIBI_DTYPE_BF16 "/// <summary>bfloat16, as its 16-bit pattern.</summary>";
%csattributes ALIBI_DTYPE_I32 "/// <summary>32-bit integer.</summary>";
%csattributes ALIBI_DTYPE_I64 "/// <summary>64-bit integer.</summary>";
%typemap(csclassmodifiers) enum alibi_device "/// <summary>Where a context runs its calls.</summary>\npublic enum"
%csattributes ALIBI_DEVICE_AUTO "/// <summary>CUDA when a GPU and the CUDA backend are available, else the CPU.</summary>";
%csattributes ALIBI_DEVICE_CPU "/// <summary>The CPU.</summary>";
%csattributes ALIBI_DEVICE_CUDA "/// <summary>A CUDA GPU.</summary>";
%typemap(csclassmodifiers) enum alibi_mask_type "/// <summary>Slice types of Mask.Ranges; local row r, column c of a slice of size Sq x Sk.</summary>\npublic enum"
%csattributes ALIBI_MASK_FULL "/// <summary>Every cell visible.</summary>";
%csattributes ALIBI_MASK_CAUSAL "/// <summary>c &lt;= r + (Sk - Sq): causal, bottom-right aligned.</summary>";
%csattributes ALIBI_MASK_INV_CAUSAL "/// <summary>c &gt;= r: inverse causal, top-left aligned.</summary>";
%csattributes ALIBI_MASK_BI_CAUSAL "/// <summary>Both causal and inverse causal.</summary>";

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
%rename(CommunicationError) ALIBI_STATUS_COMMUNICATION_ERROR;
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

/* A handle argument is an IntPtr; the handle a create call returns, its OWNER type. */
%define ALIBI_CS_HANDLE(TYPE, OWNER)
%apply void* VOID_INT_PTR { TYPE };
%typemap(ctype) TYPE* out "void**"
%typemap(imtype) TYPE* out "out OWNER"
%typemap(cstype) TYPE* out "out OWNER"
%typemap(csin) TYPE* out "out $csinput"
%typemap(in) TYPE* out %{ $1 = ($1_ltype)$input; %}
%enddef

ALIBI_CS_HANDLE(alibi_context_t, ContextHandle)
ALIBI_CS_HANDLE(alibi_tensor_t, TensorHandle)
ALIBI_CS_HANDLE(alibi_mask_t, MaskHandle)
ALIBI_CS_HANDLE(void*, global::System.IntPtr)  /* void** out: the data address of alibi_tensor_get_data */

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
 * Memory the caller pinned (a fixed span or array) as a NativeArray: two P/Invoke parameters,
 * its element count, then its address. SWIG appends each parameter's name to its type, so the
 * count's own name is part of these types.
 */
%define ALIBI_CS_COUNTED_ARRAY(CTYPE)
%typemap(ctype) (const CTYPE* ARRAY, size_t COUNT), (CTYPE* ARRAY, size_t COUNT)
  "int64_t count$argnum, CTYPE*"
%typemap(imtype) (const CTYPE* ARRAY, size_t COUNT), (CTYPE* ARRAY, size_t COUNT)
  "long count$argnum, global::System.IntPtr"
%typemap(cstype) (const CTYPE* ARRAY, size_t COUNT), (CTYPE* ARRAY, size_t COUNT) "NativeArray"
%typemap(csin) (const CTYPE* ARRAY, size_t COUNT), (CTYPE* ARRAY, size_t COUNT)
  "$csinput.Count, $csinput.Address"
%typemap(in) (const CTYPE* ARRAY, size_t COUNT), (CTYPE* ARRAY, size_t COUNT)
%{ $1 = ($1_ltype)$input; $2 = (size_t)count$argnum; %}
%enddef

ALIBI_CS_COUNTED_ARRAY(float)
ALIBI_CS_COUNTED_ARRAY(uint16_t)
ALIBI_CS_COUNTED_ARRAY(int32_t)
