using System;
using System.Runtime.InteropServices;

namespace Alibi {

/// <summary>
/// An n-d array on a context's device: owned (Create) or wrapping caller memory in place (Wrap,
/// no copy). A wrapped managed array stays pinned until the tensor is disposed. f16/bf16
/// elements are 16-bit patterns (ushort). Dispose it when done (a tensor never disposed is
/// released by the runtime once unreachable); Dispose is idempotent.
/// </summary>
public sealed class Tensor : IDisposable, IHandleOwner {
  private readonly TensorHandle handle;

  private Tensor(TensorHandle handle) {
    this.handle = handle;
  }

  AlibiHandle IHandleOwner.NativeHandle => handle;

  internal IntPtr Handle => handle.Get(null);

  /// <summary>Releases the tensor (and unpins a wrapped array); later calls on it throw ObjectDisposedException.</summary>
  public void Dispose() => handle.Dispose();

  /// <summary>An owned, uninitialised, contiguous row-major tensor.</summary>
  /// <exception cref="ArgumentNullException">ctx or shape is null.</exception>
  /// <exception cref="ObjectDisposedException">ctx is disposed.</exception>
  /// <exception cref="AlibiException">The library rejected the shape or dtype.</exception>
  public static Tensor Create(Context ctx, DType dtype, params long[] shape) {
    IntPtr hctx = Args.Required(ctx, nameof(ctx));
    Args.NotNull(shape, nameof(shape));
    AlibiNative.alibi_tensor_create(hctx, dtype, shape.Length, shape, out TensorHandle t);
    GC.KeepAlive(ctx);
    return new Tensor(t);
  }

  /// <summary>Wraps memory the caller owns and keeps valid until the tensor is disposed.</summary>
  /// <exception cref="ArgumentNullException">ctx or shape is null.</exception>
  /// <exception cref="ObjectDisposedException">ctx is disposed.</exception>
  /// <exception cref="AlibiException">The library rejected the arguments (data IntPtr.Zero: Status.NullPointer).</exception>
  public static Tensor Wrap(Context ctx, IntPtr data, DType dtype, params long[] shape) {
    IntPtr hctx = Args.Required(ctx, nameof(ctx));
    Args.NotNull(shape, nameof(shape));
    AlibiNative.alibi_tensor_wrap(hctx, dtype, shape.Length, shape, null, data, out TensorHandle t);
    GC.KeepAlive(ctx);
    return new Tensor(t);
  }

  /// <summary>Wraps an f32 array, pinned until the tensor is disposed.</summary>
  /// <exception cref="ArgumentNullException">ctx, data or shape is null.</exception>
  /// <exception cref="ObjectDisposedException">ctx is disposed.</exception>
  /// <exception cref="AlibiException">The array is smaller than the shape (Status.ShapeMismatch).</exception>
  public static Tensor Wrap(Context ctx, float[] data, params long[] shape) =>
      WrapArray(ctx, data, DType.F32, shape);

  /// <summary>Wraps an array of f16 or bf16 bit patterns, pinned until the tensor is disposed.</summary>
  /// <exception cref="ArgumentNullException">ctx, data or shape is null.</exception>
  /// <exception cref="ObjectDisposedException">ctx is disposed.</exception>
  /// <exception cref="AlibiException">dtype is not 16-bit, or the array is smaller than the shape.</exception>
  public static Tensor Wrap(Context ctx, ushort[] data, DType dtype, params long[] shape) {
    RequireDType("Tensor.Wrap: ushort[]", dtype, DType.F16, DType.BF16);
    return WrapArray(ctx, data, dtype, shape);
  }

  private static Tensor WrapArray(Context ctx, Array data, DType dtype, long[] shape) {
    IntPtr hctx = Args.Required(ctx, nameof(ctx));
    Args.NotNull(data, nameof(data));
    Args.NotNull(shape, nameof(shape));
    long needed = Product(shape) * ElementBytes(dtype);
    if (Buffer.ByteLength(data) < needed) {
      throw new AlibiException(Status.ShapeMismatch,
          $"Tensor.Wrap: the array holds {Buffer.ByteLength(data)} bytes, the tensor needs {needed}");
    }
    GCHandle pin = GCHandle.Alloc(data, GCHandleType.Pinned);
    TensorHandle t;
    try {
      AlibiNative.alibi_tensor_wrap(hctx, dtype, shape.Length, shape, null, pin.AddrOfPinnedObject(), out t);
    } catch {
      pin.Free();
      throw;
    }
    t.Pin = pin;
    GC.KeepAlive(ctx);
    return new Tensor(t);
  }

  /// <summary>Copies all elements from src (exactly Numel of them) into an F32 tensor; returns this tensor.</summary>
  /// <exception cref="ArgumentNullException">src is null.</exception>
  /// <exception cref="ObjectDisposedException">The tensor is disposed.</exception>
  /// <exception cref="AlibiException">The dtype or the length does not fit.</exception>
  public Tensor CopyFrom(float[] src) => CopyFromArray("float[]", src, DType.F32);
  /// <summary>As CopyFrom(float[]), for an F16 or BF16 tensor (16-bit patterns).</summary>
  public Tensor CopyFrom(ushort[] src) => CopyFromArray("ushort[]", src, DType.F16, DType.BF16);
  /// <summary>As CopyFrom(float[]), for an I32 tensor.</summary>
  public Tensor CopyFrom(int[] src) => CopyFromArray("int[]", src, DType.I32);
  /// <summary>As CopyFrom(float[]), for an I64 tensor.</summary>
  public Tensor CopyFrom(long[] src) => CopyFromArray("long[]", src, DType.I64);

  /// <summary>Copies numel elements from native memory of exactly bytes bytes.</summary>
  public Tensor CopyFrom(IntPtr src, ulong bytes) {
    AlibiNative.alibi_tensor_copy_from_host(Handle, src, bytes);
    GC.KeepAlive(this);
    return this;
  }

  /// <summary>Copies all elements of an F32 tensor into dst (exactly Numel of them).</summary>
  /// <exception cref="ArgumentNullException">dst is null.</exception>
  /// <exception cref="ObjectDisposedException">The tensor is disposed.</exception>
  /// <exception cref="AlibiException">The dtype or the length does not fit.</exception>
  public void CopyTo(float[] dst) => CopyToArray("float[]", dst, DType.F32);
  /// <summary>As CopyTo(float[]), for an F16 or BF16 tensor (16-bit patterns).</summary>
  public void CopyTo(ushort[] dst) => CopyToArray("ushort[]", dst, DType.F16, DType.BF16);
  /// <summary>As CopyTo(float[]), for an I32 tensor.</summary>
  public void CopyTo(int[] dst) => CopyToArray("int[]", dst, DType.I32);
  /// <summary>As CopyTo(float[]), for an I64 tensor.</summary>
  public void CopyTo(long[] dst) => CopyToArray("long[]", dst, DType.I64);

  /// <summary>Copies numel elements into native memory of exactly bytes bytes.</summary>
  public void CopyTo(IntPtr dst, ulong bytes) {
    AlibiNative.alibi_tensor_copy_to_host(Handle, dst, bytes);
    GC.KeepAlive(this);
  }

  private Tensor CopyFromArray(string what, Array src, params DType[] accepted) {
    Args.NotNull(src, nameof(src));
    RequireDType("Tensor.CopyFrom: " + what, DType, accepted);
    using (Pinned p = new Pinned(src)) CopyFrom(p.Address, (ulong)Buffer.ByteLength(src));
    return this;
  }

  private void CopyToArray(string what, Array dst, params DType[] accepted) {
    Args.NotNull(dst, nameof(dst));
    RequireDType("Tensor.CopyTo: " + what, DType, accepted);
    using (Pinned p = new Pinned(dst)) CopyTo(p.Address, (ulong)Buffer.ByteLength(dst));
  }

  /// <summary>The element type.</summary>
  public DType DType {
    get {
      AlibiNative.alibi_tensor_get_dtype(Handle, out int dtype);
      GC.KeepAlive(this);
      return (DType)dtype;
    }
  }

  /// <summary>The sizes, outermost first.</summary>
  public long[] Shape {
    get {
      AlibiNative.alibi_tensor_get_ndim(Handle, out int ndim);
      var shape = new long[ndim];
      AlibiNative.alibi_tensor_get_shape(Handle, ndim, shape);
      GC.KeepAlive(this);
      return shape;
    }
  }

  /// <summary>The number of elements (the product of Shape).</summary>
  public long Numel => Product(Shape);

  private static long Product(long[] shape) {
    long n = 1;
    foreach (long size in shape) n *= size;
    return n;
  }

  private static int ElementBytes(DType dtype) {
    switch (dtype) {
      case DType.F16:
      case DType.BF16:
        return 2;
      case DType.I64:
        return 8;
      default:
        return 4;
    }
  }

  private static void RequireDType(string what, DType actual, params DType[] accepted) {
    if (Array.IndexOf(accepted, actual) < 0) {
      throw new AlibiException(Status.DTypeMismatch, $"{what} does not fit a tensor of dtype {actual}");
    }
  }
}

}
