using System;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Alibi {

/// <summary>
/// A libalibi handle owned by the runtime: Dispose destroys it once, and a handle never disposed
/// is destroyed by the runtime's critical finalization. Tensors and masks keep their device alive
/// in the library, so handles may be released in any order.
/// </summary>
internal abstract class AlibiHandle : SafeHandleZeroOrMinusOneIsInvalid {
  protected AlibiHandle() : base(true) {}

  /// <summary>"Context", "Tensor" or "Mask": the ObjectName of ObjectDisposedException.</summary>
  protected abstract string ObjectName { get; }

  /// <summary>The raw handle for a call; role names the argument in the message (null: the object itself).</summary>
  internal IntPtr Get(string role) {
    if (IsClosed) {
      string message = role == null ? $"The {ObjectName} is disposed." : $"{role} is a disposed {ObjectName}.";
      throw new ObjectDisposedException(ObjectName, message);
    }
    return handle;
  }
}

internal sealed class ContextHandle : AlibiHandle {
  protected override string ObjectName => "Context";

  protected override bool ReleaseHandle() {
    AlibiNative.alibi_context_destroy(handle);
    return true;
  }
}

internal sealed class MaskHandle : AlibiHandle {
  protected override string ObjectName => "Mask";

  protected override bool ReleaseHandle() {
    AlibiNative.alibi_mask_destroy(handle);
    return true;
  }
}

internal sealed class TensorHandle : AlibiHandle {
  /// <summary>The managed array a wrapping tensor views, pinned until the tensor is destroyed.</summary>
  internal GCHandle Pin;

  protected override string ObjectName => "Tensor";

  protected override bool ReleaseHandle() {
    AlibiNative.alibi_tensor_destroy(handle);
    if (Pin.IsAllocated) Pin.Free();
    return true;
  }
}

/// <summary>A public object that owns an AlibiHandle.</summary>
internal interface IHandleOwner {
  AlibiHandle NativeHandle { get; }
}

/// <summary>Argument checks shared by the public classes, made before any native call.</summary>
internal static class Args {
  internal static T NotNull<T>(T value, string name) where T : class {
    if (value == null) throw new ArgumentNullException(name);
    return value;
  }

  /// <summary>The handle of a required argument.</summary>
  internal static IntPtr Required(IHandleOwner owner, string name) =>
      NotNull(owner, name).NativeHandle.Get(name);

  /// <summary>The handle of an optional argument: null is NULL (absent), a disposed object an error.</summary>
  internal static IntPtr Optional(IHandleOwner owner, string name) =>
      owner == null ? IntPtr.Zero : owner.NativeHandle.Get(name);
}

/// <summary>Pinned memory as the library's array helpers take it: address and element count.</summary>
internal unsafe struct NativeArray {
  internal readonly IntPtr Address;
  internal readonly long Count;

  internal NativeArray(void* address, int count) {
    Address = (IntPtr)address;
    Count = count;
  }

  /// <summary>An optional array: empty is absent (NULL).</summary>
  internal static NativeArray Optional(void* address, int count) =>
      count == 0 ? default(NativeArray) : new NativeArray(address, count);
}

/// <summary>A managed array pinned in place while in scope (no copy).</summary>
internal struct Pinned : IDisposable {
  private GCHandle pin;

  public Pinned(Array array) {
    pin = GCHandle.Alloc(array, GCHandleType.Pinned);
  }

  public IntPtr Address => pin.AddrOfPinnedObject();

  public void Dispose() {
    pin.Free();
  }
}

}
