using System;
using System.Runtime.InteropServices;

namespace Alibi {

/// <summary>
/// An n-d array on a context's device: owned (Create) or wrapping caller memory in place (Wrap,
/// no copy). A wrapped managed array stays pinned until the tensor is disposed. f16/bf16
/// elements are 16-bit patterns (ushort).
/// </summary>
public sealed class Tensor : NativeHandle {
  private GCHandle pin;

  private Tensor(IntPtr handle, GCHandle pin) : base(handle) {
    this.pin = pin;
  }

  protected override void Destroy(IntPtr handle) {
    AlibiNative.alibi_tensor_destroy(handle);
    if (pin.IsAllocated) pin.Free();
  }

  /// <summary>An owned, uninitialised, contiguous row-major tensor.</summary>
  public static Tensor Create(Context ctx, DType dtype, params long[] shape) {
    AlibiNative.alibi_tensor_create(HandleOf(ctx), dtype, shape.Length, shape, out IntPtr t);
    GC.KeepAlive(ctx);
    return new Tensor(t, default(GCHandle));
  }

  /// <summary>Wraps memory the caller owns and keeps valid until the tensor is disposed.</summary>
  public static Tensor Wrap(Context ctx, IntPtr data, DType dtype, params long[] shape) {
    AlibiNative.alibi_tensor_wrap(HandleOf(ctx), dtype, shape.Length, shape, null, data, out IntPtr t);
    GC.KeepAlive(ctx);
    return new Tensor(t, default(GCHandle));
  }

  /// <summary>Wraps an f32 array, pinned until the tensor is disposed.</summary>
  public static Tensor Wrap(Context ctx, float[] data, params long[] shape) =>
      WrapArray(ctx, data, DType.F32, shape);

  /// <summary>Wraps an array of f16 or bf16 bit patterns, pinned until the tensor is disposed.</summary>
  public static Tensor Wrap(Context ctx, ushort[] data, DType dtype, params long[] shape) {
    RequireDType("Tensor.Wrap: ushort[]", dtype, DType.F16, DType.BF16);
    return WrapArray(ctx, data, dtype, shape);
  }

  private static Tensor WrapArray(Context ctx, Array data, DType dtype, long[] shape) {
    long needed = Product(shape) * ElementBytes(dtype);
    if (Buffer.ByteLength(data) < needed) {
      throw new AlibiException(Status.ShapeMismatch,
          $"Tensor.Wrap: the array holds {Buffer.ByteLength(data)} bytes, the tensor needs {needed}");
    }
    GCHandle pin = GCHandle.Alloc(data, GCHandleType.Pinned);
    try {
      AlibiNative.alibi_tensor_wrap(HandleOf(ctx), dtype, shape.Length, shape, null,
                                    pin.AddrOfPinnedObject(), out IntPtr t);
      GC.KeepAlive(ctx);
      return new Tensor(t, pin);
    } catch {
      pin.Free();
      throw;
    }
  }

  public Tensor CopyFrom(float[] src) => CopyFromArray("float[]", src, DType.F32);
  /// <summary>f16 or bf16 bit patterns.</summary>
  public Tensor CopyFrom(ushort[] src) => CopyFromArray("ushort[]", src, DType.F16, DType.BF16);
  public Tensor CopyFrom(int[] src) => CopyFromArray("int[]", src, DType.I32);
  public Tensor CopyFrom(long[] src) => CopyFromArray("long[]", src, DType.I64);

  /// <summary>Copies numel elements from native memory of exactly bytes bytes.</summary>
  public Tensor CopyFrom(IntPtr src, ulong bytes) {
    AlibiNative.alibi_tensor_copy_from_host(Handle, src, bytes);
    GC.KeepAlive(this);
    return this;
  }

  public void CopyTo(float[] dst) => CopyToArray("float[]", dst, DType.F32);
  public void CopyTo(ushort[] dst) => CopyToArray("ushort[]", dst, DType.F16, DType.BF16);
  public void CopyTo(int[] dst) => CopyToArray("int[]", dst, DType.I32);
  public void CopyTo(long[] dst) => CopyToArray("long[]", dst, DType.I64);

  /// <summary>Copies numel elements into native memory of exactly bytes bytes.</summary>
  public void CopyTo(IntPtr dst, ulong bytes) {
    AlibiNative.alibi_tensor_copy_to_host(Handle, dst, bytes);
    GC.KeepAlive(this);
  }

  private Tensor CopyFromArray(string what, Array src, params DType[] accepted) {
    RequireDType("Tensor.CopyFrom: " + what, DType, accepted);
    using (Pinned p = new Pinned(src)) CopyFrom(p.Address, (ulong)Buffer.ByteLength(src));
    return this;
  }

  private void CopyToArray(string what, Array dst, params DType[] accepted) {
    RequireDType("Tensor.CopyTo: " + what, DType, accepted);
    using (Pinned p = new Pinned(dst)) CopyTo(p.Address, (ulong)Buffer.ByteLength(dst));
  }

  public DType DType {
    get {
      AlibiNative.alibi_tensor_get_dtype(Handle, out int dtype);
      GC.KeepAlive(this);
      return (DType)dtype;
    }
  }

  public long[] Shape {
    get {
      AlibiNative.alibi_tensor_get_ndim(Handle, out int ndim);
      var shape = new long[ndim];
      AlibiNative.alibi_tensor_get_shape(Handle, ndim, shape);
      GC.KeepAlive(this);
      return shape;
    }
  }

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
