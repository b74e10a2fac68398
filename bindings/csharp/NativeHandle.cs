using System;
using System.Runtime.InteropServices;
using System.Threading;

namespace Alibi {

/// <summary>
/// A libalibi handle. Dispose destroys it once (later calls are no-ops); the finalizer is the
/// safety net for a handle never disposed. A disposed handle reads as IntPtr.Zero (NULL), which
/// the library rejects with Status.NullPointer.
/// </summary>
public abstract class NativeHandle : IDisposable {
  private IntPtr handle;

  protected NativeHandle(IntPtr handle) {
    this.handle = handle;
  }

  internal IntPtr Handle => Volatile.Read(ref handle);

  protected abstract void Destroy(IntPtr handle);

  public void Dispose() {
    Release();
    GC.SuppressFinalize(this);
  }

  ~NativeHandle() {
    Release();
  }

  private void Release() {
    IntPtr h = Interlocked.Exchange(ref handle, IntPtr.Zero);
    if (h != IntPtr.Zero) Destroy(h);
  }

  internal static IntPtr HandleOf(NativeHandle h) => h == null ? IntPtr.Zero : h.Handle;

  /// <summary>For optional arguments, where NULL would mean "absent": a disposed handle is an error.</summary>
  internal static IntPtr OptionalHandleOf(NativeHandle h, string what) {
    IntPtr handle = HandleOf(h);
    if (h != null && handle == IntPtr.Zero) {
      throw new AlibiException(Status.NullPointer, what + " is disposed");
    }
    return handle;
  }
}

/// <summary>A managed array pinned in place while in scope (no copy).</summary>
internal struct Pinned : IDisposable {
  private GCHandle pin;

  public Pinned(Array array) {
    pin = array == null ? default(GCHandle) : GCHandle.Alloc(array, GCHandleType.Pinned);
  }

  public IntPtr Address => pin.IsAllocated ? pin.AddrOfPinnedObject() : IntPtr.Zero;

  public void Dispose() {
    if (pin.IsAllocated) pin.Free();
  }
}

}
