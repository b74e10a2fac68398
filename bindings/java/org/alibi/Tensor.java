package org.alibi;

import java.nio.Buffer;
import java.nio.ByteBuffer;
import java.nio.FloatBuffer;
import java.nio.ShortBuffer;

/**
 * An n-d array on a context's device: owned (create) or wrapping a direct NIO buffer in place
 * (wrap, no copy; the tensor keeps the buffer reachable). f16/bf16 elements are 16-bit patterns
 * (short). Buffers are used from index 0, whatever their position, in native byte order.
 */
public final class Tensor extends NativeHandle {
  private final Buffer wrapped;

  private Tensor(long handle, Buffer wrapped) {
    super(handle);
    this.wrapped = wrapped;
  }

  @Override
  void destroy(long handle) {
    AlibiNative.alibi_tensor_destroy(handle);
  }

  /** An owned, uninitialised, contiguous row-major tensor. */
  public static Tensor create(Context ctx, DType dtype, long... shape) {
    long[] out = new long[1];
    AlibiNative.alibi_tensor_create(handleOf(ctx), dtype, shape.length, shape, out);
    return new Tensor(out[0], null);
  }

  /** Wraps a direct f32 buffer. */
  public static Tensor wrap(Context ctx, FloatBuffer data, long... shape) {
    return wrapBuffer(ctx, DType.F32, data, shape);
  }

  /** Wraps a direct buffer of f16 or bf16 bit patterns. */
  public static Tensor wrap(Context ctx, DType dtype, ShortBuffer data, long... shape) {
    requireDType("Tensor.wrap: a ShortBuffer", dtype, DType.F16, DType.BF16);
    return wrapBuffer(ctx, dtype, data, shape);
  }

  /** Wraps a direct byte buffer holding elements of any dtype. */
  public static Tensor wrap(Context ctx, DType dtype, ByteBuffer data, long... shape) {
    return wrapBuffer(ctx, dtype, data, shape);
  }

  private static Tensor wrapBuffer(Context ctx, DType dtype, Buffer data, long[] shape) {
    requireDirect("Tensor.wrap", data, numel(shape) * elementBytes(dtype));
    long[] out = new long[1];
    AlibiNative.alibi_tensor_wrap(handleOf(ctx), dtype, shape.length, shape, null, data, out);
    return new Tensor(out[0], data);
  }

  public Tensor copyFrom(float[] src) {
    requireDType("Tensor.copyFrom: float[]", dtype(), DType.F32);
    AlibiNative.alibi_binding_copy_from_array(handle(), src);
    return this;
  }

  /** f16 or bf16 bit patterns. */
  public Tensor copyFrom(short[] src) {
    requireDType("Tensor.copyFrom: short[]", dtype(), DType.F16, DType.BF16);
    AlibiNative.alibi_binding_copy_from_array(handle(), src);
    return this;
  }

  public Tensor copyFrom(int[] src) {
    requireDType("Tensor.copyFrom: int[]", dtype(), DType.I32);
    AlibiNative.alibi_binding_copy_from_array(handle(), src);
    return this;
  }

  public Tensor copyFrom(long[] src) {
    requireDType("Tensor.copyFrom: long[]", dtype(), DType.I64);
    AlibiNative.alibi_binding_copy_from_array(handle(), src);
    return this;
  }

  /** Copies numel elements from a direct buffer. */
  public Tensor copyFrom(Buffer src) {
    long bytes = byteSize();
    requireDirect("Tensor.copyFrom", src, bytes);
    AlibiNative.alibi_tensor_copy_from_host(handle(), src, bytes);
    return this;
  }

  public void copyTo(float[] dst) {
    requireDType("Tensor.copyTo: float[]", dtype(), DType.F32);
    AlibiNative.alibi_binding_copy_to_array(handle(), dst);
  }

  public void copyTo(short[] dst) {
    requireDType("Tensor.copyTo: short[]", dtype(), DType.F16, DType.BF16);
    AlibiNative.alibi_binding_copy_to_array(handle(), dst);
  }

  public void copyTo(int[] dst) {
    requireDType("Tensor.copyTo: int[]", dtype(), DType.I32);
    AlibiNative.alibi_binding_copy_to_array(handle(), dst);
  }

  public void copyTo(long[] dst) {
    requireDType("Tensor.copyTo: long[]", dtype(), DType.I64);
    AlibiNative.alibi_binding_copy_to_array(handle(), dst);
  }

  /** Copies numel elements into a direct buffer. */
  public void copyTo(Buffer dst) {
    long bytes = byteSize();
    requireDirect("Tensor.copyTo", dst, bytes);
    AlibiNative.alibi_tensor_copy_to_host(handle(), dst, bytes);
  }

  public DType dtype() {
    int[] out = new int[1];
    AlibiNative.alibi_tensor_get_dtype(handle(), out);
    return DType.swigToEnum(out[0]);
  }

  public long[] shape() {
    int[] ndim = new int[1];
    AlibiNative.alibi_tensor_get_ndim(handle(), ndim);
    long[] shape = new long[ndim[0]];
    AlibiNative.alibi_tensor_get_shape(handle(), shape.length, shape);
    return shape;
  }

  public long numel() {
    return numel(shape());
  }

  /** The wrapped buffer, or null for an owned tensor. */
  public Buffer buffer() {
    return wrapped;
  }

  private long byteSize() {
    return numel() * elementBytes(dtype());
  }

  static long numel(long[] shape) {
    long n = 1;
    for (long size : shape) n *= size;
    return n;
  }

  static int elementBytes(DType dtype) {
    switch (dtype) {
      case F16:
      case BF16:
        return 2;
      case I64:
        return 8;
      default:
        return 4;
    }
  }

  private static int bufferElementBytes(Buffer buffer) {
    if (buffer instanceof ByteBuffer) return 1;
    if (buffer instanceof ShortBuffer || buffer instanceof java.nio.CharBuffer) return 2;
    if (buffer instanceof java.nio.LongBuffer || buffer instanceof java.nio.DoubleBuffer) return 8;
    return 4;
  }

  private static void requireDirect(String where, Buffer buffer, long bytes) {
    if (buffer == null || !buffer.isDirect()) {
      throw new AlibiException(Status.INVALID_ARGUMENT, where + ": the buffer must be direct");
    }
    long capacity = (long) buffer.capacity() * bufferElementBytes(buffer);
    if (capacity < bytes) {
      throw new AlibiException(Status.SHAPE_MISMATCH, where + ": the buffer holds " + capacity
          + " bytes, the tensor needs " + bytes);
    }
  }

  private static void requireDType(String what, DType actual, DType... accepted) {
    for (DType d : accepted) {
      if (d == actual) return;
    }
    throw new AlibiException(Status.DTYPE_MISMATCH,
        what + " does not fit a tensor of dtype " + actual);
  }
}
