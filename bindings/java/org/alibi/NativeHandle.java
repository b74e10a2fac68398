package org.alibi;

import java.lang.ref.Cleaner;
import java.lang.ref.Reference;
import java.util.Objects;
import java.util.function.LongConsumer;

/**
 * A libalibi handle, destroyed exactly once: by close(), or by a shared Cleaner once the object
 * is unreachable. The library lets handles be destroyed in any order (a tensor or mask keeps its
 * device alive), so the Cleaner may run them as it likes.
 */
abstract class NativeHandle implements AutoCloseable {
  private static final Cleaner CLEANER = Cleaner.create();

  /** What the Cleaner runs. It must not reference the NativeHandle, or that could never be collected. */
  private static final class Releaser implements Runnable {
    private final LongConsumer destroy;
    // Memory the handle points into (a wrapped buffer): reachable until the handle is destroyed.
    private final Object memory;
    private long handle;

    Releaser(long handle, LongConsumer destroy, Object memory) {
      this.handle = handle;
      this.destroy = destroy;
      this.memory = memory;
    }

    synchronized long handle() {
      return handle;
    }

    @Override
    public synchronized void run() {
      long released = handle;
      handle = 0;
      destroy.accept(released);
      Reference.reachabilityFence(memory);
    }
  }

  private final Releaser releaser;
  private final Cleaner.Cleanable cleanable;

  /** destroy must not capture this object (a static method reference). */
  NativeHandle(long handle, LongConsumer destroy, Object memory) {
    releaser = new Releaser(handle, destroy, memory);
    cleanable = CLEANER.register(this, releaser);
  }

  /** The live handle; a closed object throws IllegalStateException naming its class. */
  final long handle() {
    long handle = releaser.handle();
    if (handle == 0) throw new IllegalStateException(kind() + " is closed");
    return handle;
  }

  /**
   * Destroys the native object now rather than when the garbage collector finds it unreachable.
   * Idempotent and thread-safe: later calls do nothing. Using the object afterwards throws
   * IllegalStateException.
   */
  @Override
  public final void close() {
    cleanable.clean();
  }

  /**
   * Whether close() has run.
   *
   * @return true once closed
   */
  public final boolean isClosed() {
    return releaser.handle() == 0;
  }

  private String kind() {
    return getClass().getSimpleName();
  }

  /** The handle of a required argument: NullPointerException or IllegalStateException naming it. */
  static long handleOf(NativeHandle h, String argument) {
    Objects.requireNonNull(h, argument);
    long handle = h.releaser.handle();
    if (handle == 0) throw new IllegalStateException(h.kind() + " is closed (argument " + argument + ")");
    return handle;
  }

  /** As handleOf, for an optional argument: null gives 0 (NULL, absent). */
  static long optionalHandleOf(NativeHandle h, String argument) {
    return h == null ? 0 : handleOf(h, argument);
  }

  /**
   * Keeps the objects reachable up to this call: a native call must end before the Cleaner can
   * destroy a handle it uses (call it in a finally block after the call).
   */
  static void keepAlive(Object... objects) {
    Reference.reachabilityFence(objects);
  }
}
