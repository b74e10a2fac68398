package org.alibi;

import java.nio.Buffer;
import java.nio.ByteBuffer;
import java.nio.FloatBuffer;
import java.nio.ShortBuffer;
import java.util.Objects;

/**
 * An n-d array on a context's device: owned (create) or wrapping a direct NIO buffer in place
 * (wrap, no copy; the tensor keeps the buffer reachable while it lives). f16/bf16 elements are
 * 16-bit patterns (short). Buffers are used from index 0, whatever their position, in native byte
 * order. Close it (try-with-resources) to release it at once; an unclosed tensor is released by
 * the garbage collector.
 */
public final class Tensor extends NativeHandle {
  private final Buffer wrapped;

  private Tensor(long handle, Buffer wrapped) {
    super(handle, AlibiNative::alibi_tensor_destroy, wrapped);
    this.wrapped = wrapped;
  }

  /**
   * An owned, uninitialised, contiguous row-major tensor.
   *
   * @param ctx the context whose device holds it
   * @param dtype the element type
   * @param shape its sizes, outermost first
   * @return the tensor
   */
  public static Tensor create(Context ctx, DType dtype, long... shape) {
    long context = handleOf(ctx, "ctx");
    Objects.requireNonNull(dtype, "dtype");
    Objects.requireNonNull(shape, "shape");
    long[] out = new long[1];
    try {
      AlibiNative.alibi_tensor_create(context, dtype, shape.length, shape, out);
    } finally {
      keepAlive(ctx);
    }
    return new Tensor(out[0], null);
  }

  /**
   * Wraps a direct f32 buffer.
   *
   * @param ctx a CPU context
   * @param data the elements, from index 0
   * @param shape its sizes, outermost first
   * @return the tensor, keeping data reachable
   */
  public static Tensor wrap(Context ctx, FloatBuffer data, long... shape) {
    return wrapBuffer(ctx, DType.F32, data, shape);
  }

  /**
   * Wraps a direct buffer of f16 or bf16 bit patterns.
   *
   * @param ctx a CPU context
   * @param dtype F16 or BF16
   * @param data the elements, from index 0
   * @param shape its sizes, outermost first
   * @return the tensor, keeping data reachable
   */
  public static Tensor wrap(Context ctx, DType dtype, ShortBuffer data, long... shape) {
    Objects.requireNonNull(dtype, "dtype");
    requireDType("Tensor.wrap: a ShortBuffer", dtype, DType.F16, DType.BF16);
    return wrapBuffer(ctx, dtype, data, shape);
  }

  /**
   * Wraps a direct byte buffer holding elements of any dtype.
   *
   * @param ctx a CPU context
   * @param dtype the element type
   * @param data the elements, from index 0
   * @param shape its sizes, outermost first
   * @return the tensor, keeping data reachable
   */
  public static Tensor wrap(Context ctx, DType dtype, ByteBuffer data, long... shape) {
    return wrapBuffer(ctx, dtype, data, shape);
  }

  private static Tensor wrapBuffer(Context ctx, DType dtype, Buffer data, long[] shape) {
    long context = handleOf(ctx, "ctx");
    Objects.requireNonNull(dtype, "dtype");
    Objects.requireNonNull(data, "data");
    Objects.requireNonNull(shape, "shape");
    requireDirect("Tensor.wrap", data, numel(shape) * elementBytes(dtype));
    long[] out = new long[1];
    try {
      AlibiNative.alibi_tensor_wrap(context, dtype, shape.length, shape, null, data, out);
    } finally {
      keepAlive(ctx);
    }
    return new Tensor(out[0], data);
  }

  /**
   * Copies f32 elements in (the array's length must be numel).
   *
   * @param src the elements, row-major
   * @return this tensor
   */
  public Tensor copyFrom(float[] src) {
    Objects.requireNonNull(src, "src");
    requireDType("Tensor.copyFrom: float[]", dtype(), DType.F32);
    try {
      AlibiNative.alibi_binding_copy_from_array(handle(), src);
    } finally {
      keepAlive(this);
    }
    return this;
  }

  /**
   * Copies f16 or bf16 bit patterns elements in (the array's length must be numel).
   *
   * @param src the elements, row-major
   * @return this tensor
   */
  public Tensor copyFrom(short[] src) {
    Objects.requireNonNull(src, "src");
    requireDType("Tensor.copyFrom: short[]", dtype(), DType.F16, DType.BF16);
    try {
      AlibiNative.alibi_binding_copy_from_array(handle(), src);
    } finally {
      keepAlive(this);
    }
    return this;
  }

  /**
   * Copies i32 elements in (the array's length must be numel).
   *
   * @param src the elements, row-major
   * @return this tensor
   */
  public Tensor copyFrom(int[] src) {
    Objects.requireNonNull(src, "src");
    requireDType("Tensor.copyFrom: int[]", dtype(), DType.I32);
    try {
      AlibiNative.alibi_binding_copy_from_array(handle(), src);
    } finally {
      keepAlive(this);
    }
    return this;
  }

  /**
   * Copies i64 elements in (the array's length must be numel).
   *
   * @param src the elements, row-major
   * @return this tensor
   */
  public Tensor copyFrom(long[] src) {
    Objects.requireNonNull(src, "src");
    requireDType("Tensor.copyFrom: long[]", dtype(), DType.I64);
    try {
      AlibiNative.alibi_binding_copy_from_array(handle(), src);
    } finally {
      keepAlive(this);
    }
    return this;
  }

  /**
   * Copies numel elements in from a direct buffer, from index 0.
   *
   * @param src a direct buffer in native byte order
   * @return this tensor
   */
  public Tensor copyFrom(Buffer src) {
    Objects.requireNonNull(src, "src");
    long bytes = byteSize();
    requireDirect("Tensor.copyFrom", src, bytes);
    try {
      AlibiNative.alibi_tensor_copy_from_host(handle(), src, bytes);
    } finally {
      keepAlive(this, src);
    }
    return this;
  }

  /**
   * Copies the f32 elements out (the array's length must be numel).
   *
   * @param dst written, row-major
   */
  public void copyTo(float[] dst) {
    Objects.requireNonNull(dst, "dst");
    requireDType("Tensor.copyTo: float[]", dtype(), DType.F32);
    try {
      AlibiNative.alibi_binding_copy_to_array(handle(), dst);
    } finally {
      keepAlive(this);
    }
  }

  /**
   * Copies the f16 or bf16 bit patterns elements out (the array's length must be numel).
   *
   * @param dst written, row-major
   */
  public void copyTo(short[] dst) {
    Objects.requireNonNull(dst, "dst");
    requireDType("Tensor.copyTo: short[]", dtype(), DType.F16, DType.BF16);
    try {
      AlibiNative.alibi_binding_copy_to_array(handle(), dst);
    } finally {
      keepAlive(this);
    }
  }

  /**
   * Copies the i32 elements out (the array's length must be numel).
   *
   * @param dst written, row-major
   */
  public void copyTo(int[] dst) {
    Objects.requireNonNull(dst, "dst");
    requireDType("Tensor.copyTo: int[]", dtype(), DType.I32);
    try {
      AlibiNative.alibi_binding_copy_to_array(handle(), dst);
    } finally {
      keepAlive(this);
    }
  }

  /**
   * Copies the i64 elements out (the array's length must be numel).
   *
   * @param dst written, row-major
   */
  public void copyTo(long[] dst) {
    Objects.requireNonNull(dst, "dst");
    requireDType("Tensor.copyTo: long[]", dtype(), DType.I64);
    try {
      AlibiNative.alibi_binding_copy_to_array(handle(), dst);
    } finally {
      keepAlive(this);
    }
  }

  /**
   * Copies numel elements out into a direct buffer, from index 0.
   *
   * @param dst a direct buffer in native byte order
   */
  public void copyTo(Buffer dst) {
    Objects.requireNonNull(dst, "dst");
    long bytes = byteSize();
    requireDirect("Tensor.copyTo", dst, bytes);
    try {
      AlibiNative.alibi_tensor_copy_to_host(handle(), dst, bytes);
    } finally {
      keepAlive(this, dst);
    }
  }

  /**
   * The element type.
   *
   * @return the dtype
   */
  public DType dtype() {
    int[] out = new int[1];
    try {
      AlibiNative.alibi_tensor_get_dtype(handle(), out);
    } finally {
      keepAlive(this);
    }
    return DType.swigToEnum(out[0]);
  }

  /**
   * The sizes, outermost first.
   *
   * @return a new array of ndim sizes
   */
  public long[] shape() {
    int[] ndim = new int[1];
    long[] shape;
    try {
      AlibiNative.alibi_tensor_get_ndim(handle(), ndim);
      shape = new long[ndim[0]];
      AlibiNative.alibi_tensor_get_shape(handle(), shape.length, shape);
    } finally {
      keepAlive(this);
    }
    return shape;
  }

  /**
   * The element count.
   *
   * @return the product of the shape
   */
  public long numel() {
    return numel(shape());
  }

  /**
   * The wrapped buffer.
   *
   * @return the buffer given to wrap, or null for an owned tensor
   */
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
    if (!buffer.isDirect()) {
      throw new IllegalArgumentException(where + ": the buffer must be direct");
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
