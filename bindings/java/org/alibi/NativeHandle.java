package org.alibi;

/**
 * A libalibi handle. close() destroys it once; later closes are no-ops. A closed handle reads
 * as 0 (NULL), which the library rejects with Status.NULL_POINTER.
 */
abstract class NativeHandle implements AutoCloseable {
  private long handle;

  NativeHandle(long handle) {
    this.handle = handle;
  }

  final synchronized long handle() {
    return handle;
  }

  abstract void destroy(long handle);

  @Override
  public final synchronized void close() {
    if (handle != 0) {
      destroy(handle);
      handle = 0;
    }
  }

  static long handleOf(NativeHandle h) {
    return h == null ? 0 : h.handle();
  }

  /** For optional arguments, where 0 would mean "absent": a closed handle is an error. */
  static long optionalHandleOf(NativeHandle h, String what) {
    long handle = handleOf(h);
    if (h != null && handle == 0) {
      throw new AlibiException(Status.NULL_POINTER, what + " is closed");
    }
    return handle;
  }
}
