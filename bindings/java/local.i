/*
 * Java typemaps of the common layer. Raw calls live in AlibiNative (static, C names; a call
 * returning alibi_status returns void and throws AlibiException for a failed status); handles are
 * longs, handle and scalar out-parameters one-element arrays, int32/int64/float host arrays Java
 * arrays, data pointers direct NIO buffers. The classes of org.alibi (Context, Tensor, Mask,
 * AttentionParams) are the idiomatic API over them.
 */
%include <enums.swg>
%include <typemaps.i>

%{
/* Throws org.alibi.AlibiException(status, message); an exception already pending wins. */
static void alibi_java_throw(JNIEnv* jenv, alibi_status status) {
  jstring message;
  jclass type;
  jmethodID init;
  jobject exception;
  if ((*jenv)->ExceptionCheck(jenv)) return;
  message = (*jenv)->NewStringUTF(jenv, alibi_binding_error_message());
  type = message ? (*jenv)->FindClass(jenv, "org/alibi/AlibiException") : NULL;
  init = type ? (*jenv)->GetMethodID(jenv, type, "<init>", "(ILjava/lang/String;)V") : NULL;
  exception = init ? (*jenv)->NewObject(jenv, type, init, (jint)status, message) : NULL;
  if (exception) (*jenv)->Throw(jenv, (jthrowable)exception);
}
%}

/* Enum values and constants are the header's literals, not getters (which would return void). */
%javaconst(1);

/*
 * The throw is in the ret typemap: after freearg has released the call's pinned arrays, since no
 * other JNI call may run while they are pinned.
 */
%typemap(jni) alibi_status "void"
%typemap(jtype) alibi_status "void"
%typemap(jstype) alibi_status "void"
%typemap(javaout) alibi_status { $jnicall; }
%typemap(out) alibi_status ""
%typemap(ret) alibi_status %{ if ($1 != ALIBI_STATUS_SUCCESS) alibi_java_throw(jenv, $1); %}
/* alibi_status_string's argument stays a Status. */
%apply enum SWIGTYPE { alibi_status status };

%rename("%(regex:/^ALIBI_(STATUS|DTYPE|DEVICE|MASK)_(.*)$/\\2/)s", %$isenumitem) "";
%rename("%(lowercamelcase)s", %$ismember) "";

/*
 * The raw layer is package-private: users see org.alibi's classes and the four public enums.
 * NativeLibrary.load finds libalibi_java (alibi.library.path, beside the jar, java.library.path).
 */
%pragma(java) moduleclassmodifiers="final class"
%pragma(java) jniclassclassmodifiers="final class"
%pragma(java) jniclasscode=%{
  static {
    NativeLibrary.load();
  }
%}
/* SWIG writes constants to a public interface; the one constant, the rank limit, is not needed. */
%ignore ALIBI_MAX_DIMS;
%typemap(javaclassmodifiers) struct alibi_attention_params "final class"

/* The public enums keep their C values behind package-private accessors. */
%typemap(javabody) enum SWIGTYPE %{
  final int swigValue() {
    return swigValue;
  }

  static $javaclassname swigToEnum(int swigValue) {
    for ($javaclassname value : $javaclassname.class.getEnumConstants())
      if (value.swigValue == swigValue)
        return value;
    throw new IllegalArgumentException("No enum " + $javaclassname.class + " with value " + swigValue);
  }

  private $javaclassname(int swigValue) {
    this.swigValue = swigValue;
  }

  private final int swigValue;
%}
%typemap(javaclassmodifiers) alibi_status %{/** The status of a failed call, carried by {@link AlibiException#getStatus()}. */
public enum%}
%typemap(javaclassmodifiers) alibi_dtype %{/** Element types of tensors; F16 and BF16 elements are given as their 16-bit patterns. */
public enum%}
%typemap(javaclassmodifiers) alibi_device %{/** Where a {@link Context} runs: CPU or CUDA (AUTO: CUDA when available, else CPU). */
public enum%}
%typemap(javaclassmodifiers) alibi_mask_type %{/** The visibility rule of one slice of a {@link Mask#ranges ranges} mask. */
public enum%}

/* The params struct is freed by close() (try-with-resources around each call): no finalizer. */
%typemap(javafinalize) SWIGTYPE ""

%define ALIBI_JAVA_HANDLE(TYPE)
%typemap(jni) TYPE "jlong"
%typemap(jtype) TYPE "long"
%typemap(jstype) TYPE "long"
%typemap(javain) TYPE "$javainput"
%typemap(javaout) TYPE { return $jnicall; }
%typemap(in) TYPE %{ $1 = (TYPE)(intptr_t)$input; %}
%typemap(out) TYPE %{ $result = (jlong)(intptr_t)$1; %}

%typemap(jni) TYPE* out "jlongArray"
%typemap(jtype) TYPE* out "long[]"
%typemap(jstype) TYPE* out "long[]"
%typemap(javain) TYPE* out "$javainput"
%typemap(in) TYPE* out (TYPE handle = NULL) %{ $1 = $input ? &handle : NULL; %}
%typemap(argout) TYPE* out %{
  if ($input) {
    jlong value = (jlong)(intptr_t)handle$argnum;
    (*jenv)->SetLongArrayRegion(jenv, $input, 0, 1, &value);
  }
%}
%enddef

ALIBI_JAVA_HANDLE(alibi_context_t)
ALIBI_JAVA_HANDLE(alibi_tensor_t)
ALIBI_JAVA_HANDLE(alibi_mask_t)
ALIBI_JAVA_HANDLE(void*)   /* void** out: the data address of alibi_tensor_get_data */

%apply int* OUTPUT { int* out, alibi_dtype* out, alibi_device* out };

/* Small host arrays, copied by the library: const CTYPE* reads the array, CTYPE* writes it back. */
%define ALIBI_JAVA_ARRAY(CTYPE, JTYPE, JNITYPE, JARRAY, Kind)
%typemap(jni) const CTYPE*, CTYPE* "JARRAY"
%typemap(jtype) const CTYPE*, CTYPE* "JTYPE[]"
%typemap(jstype) const CTYPE*, CTYPE* "JTYPE[]"
%typemap(javain) const CTYPE*, CTYPE* "$javainput"
%typemap(in) const CTYPE*, CTYPE*
%{ $1 = $input ? (CTYPE*)(*jenv)->Get##Kind##ArrayElements(jenv, $input, NULL) : NULL; %}
%typemap(freearg) const CTYPE*
%{ if ($1) (*jenv)->Release##Kind##ArrayElements(jenv, $input, (JNITYPE*)$1, JNI_ABORT); %}
%typemap(freearg) CTYPE*
%{ if ($1) (*jenv)->Release##Kind##ArrayElements(jenv, $input, (JNITYPE*)$1, 0); %}
%enddef

ALIBI_JAVA_ARRAY(int32_t, int, jint, jintArray, Int)
ALIBI_JAVA_ARRAY(int64_t, long, jlong, jlongArray, Long)
ALIBI_JAVA_ARRAY(float, float, jfloat, jfloatArray, Float)

/* Data of tensors: direct NIO buffers, used in place (a heap buffer passes NULL). */
%typemap(jni) void* data, const void* src, void* dst "jobject"
%typemap(jtype) void* data, const void* src, void* dst "java.nio.Buffer"
%typemap(jstype) void* data, const void* src, void* dst "java.nio.Buffer"
%typemap(javain) void* data, const void* src, void* dst "$javainput"
%typemap(in) void* data, const void* src, void* dst
%{ $1 = $input ? (*jenv)->GetDirectBufferAddress(jenv, $input) : NULL; %}

%typemap(jni) void* cuda_stream "jlong"
%typemap(jtype) void* cuda_stream "long"
%typemap(jstype) void* cuda_stream "long"
%typemap(javain) void* cuda_stream "$javainput"
%typemap(in) void* cuda_stream %{ $1 = (void*)(intptr_t)$input; %}

/*
 * A Java array as a pointer and its element count, pinned for the call with
 * GetPrimitiveArrayCritical, not copied; null passes NULL and 0. No other JNI call may run while
 * an array is pinned, so the lengths of all arrays are read first (in), then they are pinned
 * (check).
 */
%define ALIBI_JAVA_PINNED(CTYPE, JTYPE, JARRAY)
%typemap(jni) (const CTYPE* ARRAY, size_t COUNT), (CTYPE* ARRAY, size_t COUNT) "JARRAY"
%typemap(jtype) (const CTYPE* ARRAY, size_t COUNT), (CTYPE* ARRAY, size_t COUNT) "JTYPE[]"
%typemap(jstype) (const CTYPE* ARRAY, size_t COUNT), (CTYPE* ARRAY, size_t COUNT) "JTYPE[]"
%typemap(javain) (const CTYPE* ARRAY, size_t COUNT), (CTYPE* ARRAY, size_t COUNT) "$javainput"
%typemap(in, numinputs=1) (const CTYPE* ARRAY, size_t COUNT), (CTYPE* ARRAY, size_t COUNT)
%{ $2 = $input ? (size_t)(*jenv)->GetArrayLength(jenv, $input) : 0; %}
%typemap(check) (const CTYPE* ARRAY, size_t COUNT), (CTYPE* ARRAY, size_t COUNT)
%{ $1 = $input ? ($1_ltype)(*jenv)->GetPrimitiveArrayCritical(jenv, $input, NULL) : NULL; %}
%typemap(freearg) (const CTYPE* ARRAY, size_t COUNT)
%{ if ($1) (*jenv)->ReleasePrimitiveArrayCritical(jenv, $input, (void*)$1, JNI_ABORT); %}
%typemap(freearg) (CTYPE* ARRAY, size_t COUNT)
%{ if ($1) (*jenv)->ReleasePrimitiveArrayCritical(jenv, $input, (void*)$1, 0); %}
%enddef

ALIBI_JAVA_PINNED(float, float, jfloatArray)
ALIBI_JAVA_PINNED(uint16_t, short, jshortArray)
ALIBI_JAVA_PINNED(int32_t, int, jintArray)
ALIBI_JAVA_PINNED(int64_t, long, jlongArray)

/*
 * A direct NIO buffer as a pointer and its element count (the Java side passes a slice: its
 * position..limit), used in place; null passes NULL and 0. The Java side checks directness.
 */
%define ALIBI_JAVA_DIRECT(CTYPE, JBUFFER)
%typemap(jni) (const CTYPE* BUFFER, size_t COUNT), (CTYPE* BUFFER, size_t COUNT) "jobject"
%typemap(jtype) (const CTYPE* BUFFER, size_t COUNT), (CTYPE* BUFFER, size_t COUNT) "java.nio.JBUFFER"
%typemap(jstype) (const CTYPE* BUFFER, size_t COUNT), (CTYPE* BUFFER, size_t COUNT) "java.nio.JBUFFER"
%typemap(javain) (const CTYPE* BUFFER, size_t COUNT), (CTYPE* BUFFER, size_t COUNT) "$javainput"
%typemap(in, numinputs=1) (const CTYPE* BUFFER, size_t COUNT), (CTYPE* BUFFER, size_t COUNT) %{
  $1 = $input ? ($1_ltype)(*jenv)->GetDirectBufferAddress(jenv, $input) : NULL;
  $2 = $1 ? (size_t)(*jenv)->GetDirectBufferCapacity(jenv, $input) : 0;
%}
%enddef

ALIBI_JAVA_DIRECT(float, FloatBuffer)

/* Copies between a tensor and a Java array (Tensor.copyFrom/copyTo); the library checks the length. */
%define ALIBI_JAVA_COPY(CTYPE, SUFFIX)
%rename(alibi_binding_copy_from_array) alibi_binding_copy_from_##SUFFIX;
%rename(alibi_binding_copy_to_array) alibi_binding_copy_to_##SUFFIX;
%javamethodmodifiers alibi_binding_copy_from_##SUFFIX "";
%javamethodmodifiers alibi_binding_copy_to_##SUFFIX "";
%inline %{
alibi_status alibi_binding_copy_from_##SUFFIX(alibi_tensor_t t, const CTYPE* ARRAY, size_t COUNT) {
  return alibi_tensor_copy_from_host(t, ARRAY, COUNT * sizeof(CTYPE));
}
alibi_status alibi_binding_copy_to_##SUFFIX(alibi_tensor_t t, CTYPE* ARRAY, size_t COUNT) {
  return alibi_tensor_copy_to_host(t, ARRAY, COUNT * sizeof(CTYPE));
}
%}
%enddef

ALIBI_JAVA_COPY(float, f32)
ALIBI_JAVA_COPY(uint16_t, u16)
ALIBI_JAVA_COPY(int32_t, i32)
ALIBI_JAVA_COPY(int64_t, i64)

%javamethodmodifiers alibi_binding_forward_f32 "";
%javamethodmodifiers alibi_binding_forward_u16 "";
%javamethodmodifiers alibi_binding_merge_f32 "";
%javamethodmodifiers alibi_binding_merge_u16 "";
%javamethodmodifiers alibi_binding_backward_f32 "";
%javamethodmodifiers alibi_binding_backward_u16 "";
%javamethodmodifiers alibi_binding_forward_paged_f32 "";
%javamethodmodifiers alibi_binding_forward_paged_u16 "";

/* The raw params struct closes like the handles (AttentionParams converts into it per call). */
%typemap(javainterfaces) struct alibi_attention_params "AutoCloseable"
%typemap(javacode) struct alibi_attention_params %{
  @Override
  public void close() {
    delete();
  }
%}
