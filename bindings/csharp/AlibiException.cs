using System;

namespace Alibi {

/// <summary>A failed libalibi call: the status and the library's message naming the call and argument.</summary>
public class AlibiException : Exception {
  /// <summary>Why the call failed.</summary>
  public Status Status { get; }

  /// <summary>The library's message, e.g. "alibi_mask_create_varlen: cu_seqlens_q[2] = 3 ...".</summary>
  public string Detail { get; }

  /// <summary>An exception with status and the library's message; Message is "status text: detail".</summary>
  public AlibiException(Status status, string detail)
      : base(AlibiNative.alibi_status_string(status) + ": " + detail) {
    Status = status;
    Detail = detail;
  }
}

}
