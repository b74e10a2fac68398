package org.alibi;

/**
 * A failed libalibi call: the status and the library's message naming the call and the argument
 * (e.g. "shape mismatch: alibi_binding_forward_f32: k has 880 elements, ..."). Misuse found by the
 * Java layer itself throws the standard exceptions instead: NullPointerException for a null
 * argument, IllegalStateException for a closed object, IllegalArgumentException for an unusable
 * buffer.
 */
public class AlibiException extends RuntimeException {
  private static final long serialVersionUID = 1L;

  /** Why the call failed. */
  private final Status status;
  /** The library's message. */
  private final String detail;

  /**
   * An exception for a status and message.
   *
   * @param status why the call failed
   * @param detail the message, naming the call and argument
   */
  public AlibiException(Status status, String detail) {
    super(AlibiNative.alibi_status_string(status) + ": " + detail);
    this.status = status;
    this.detail = detail;
  }

  /** Called by the JNI wrapper of a raw call whose status is not SUCCESS (bindings/java/local.i). */
  private AlibiException(int status, String detail) {
    this(Status.swigToEnum(status), detail);
  }

  /**
   * Why the call failed.
   *
   * @return the library's status
   */
  public Status getStatus() {
    return status;
  }

  /**
   * The library's message, without the status.
   *
   * @return e.g. "alibi_mask_create_varlen: cu_seqlens_q[2] = 3 ..."
   */
  public String getDetail() {
    return detail;
  }
}
