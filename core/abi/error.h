// Errors inside the library: validation throws alibi::Error; the C shim turns it into a status
// and the thread's last-error message.
#pragma once

#include <string>
#include <utility>

#include "alibi/alibi.h"

namespace alibi {

class Error {
 public:
  Error(alibi_status status, std::string message) : status_(status), message_(std::move(message)) {}
  alibi_status status() const { return status_; }
  const std::string& message() const { return message_; }

 private:
  alibi_status status_;
  std::string message_;
};

// printf-style constructor of an Error; messages name the argument and the bad value.
[[noreturn]] void fail(alibi_status status, const char* format, ...)
    __attribute__((format(printf, 2, 3)));

// A backend's answer: a status plus a message. Backends may live in other shared libraries,
// so they return this rather than throwing across the boundary.
struct Status {
  alibi_status code = ALIBI_STATUS_SUCCESS;
  std::string message;
  bool ok() const { return code == ALIBI_STATUS_SUCCESS; }
  static Status success() { return {}; }
};

// Throws the Error a failed backend Status describes.
void check(const Status& status);

}  // namespace alibi
