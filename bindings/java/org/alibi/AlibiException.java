package org.alibi;

/** A failed libalibi call: the status and the library's message naming the call and argument. */
public class AlibiException extends RuntimeException {
  private static final long serialVersionUID = 1L;

  private final Status status;
  private final String detail;

  public AlibiException(Status status, String detail) {
    super(AlibiNative.alibi_status_string(status) + ": " + detail);
    this.status = status;
    this.detail = detail;
  }

  /** Called by the JNI wrapper of a raw call whose status is not SUCCESS (bindings/java/local.i). */
  private AlibiException(int status, String detail) {
    this(Status.swigToEnum(status), detail);
  }

  public Status getStatus() {
    return status;
  }

  /** The library's message, e.g. "alibi_mask_create_varlen: cu_seqlens_q[2] = 3 ...". */
  public String getDetail() {
    return detail;
  }
}
