// Failures inside the library. Code anywhere (validation, kernels, CUDA calls) throws
// alibi::Error, usually through fail(); guarded() catches it where a status is due: at the C ABI
// (core/abi/c_api.cpp) and at the backend interface (core/kernel/backend.h), where the message
// travels in BackendError, a plain C struct, so no C++ object crosses into or out of the
// separately built CUDA library.
#pragma once

#include <cstdarg>
#include <cstdio>
#include <exception>
#include <new>
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

// printf-style: throws an Error whose message names the argument and the bad value.
[[noreturn]] inline void fail(alibi_status status, const char* format, ...)
    __attribute__((format(printf, 2, 3)));

inline void fail(alibi_status status, const char* format, ...) {
  char buffer[1024];
  va_list args;
  va_start(args, format);
  std::vsnprintf(buffer, sizeof buffer, format, args);
  va_end(args);
  throw Error(status, buffer);
}

// The message of a failed backend call (its status is the call's return value).
struct BackendError {
  char message[1024];
};

inline void set_message(BackendError* error, const char* message) {
  std::snprintf(error->message, sizeof error->message, "%s", message);
}

// Runs body; an exception becomes the status returned, with its message in *error.
template <class Body>
alibi_status guarded(BackendError* error, Body&& body) noexcept {
  try {
    body();
    return ALIBI_STATUS_SUCCESS;
  } catch (const Error& e) {
    set_message(error, e.message().c_str());
    return e.status();
  } catch (const std::bad_alloc&) {
    set_message(error, "out of host memory");
    return ALIBI_STATUS_OUT_OF_MEMORY;
  } catch (const std::exception& e) {
    set_message(error, (std::string("internal error: ") + e.what()).c_str());
    return ALIBI_STATUS_INTERNAL;
  } catch (...) {
    set_message(error, "internal error");
    return ALIBI_STATUS_INTERNAL;
  }
}

// Throws the Error a failed backend call reported.
inline void check(alibi_status status, const BackendError& error) {
  if (status != ALIBI_STATUS_SUCCESS) throw Error(status, error.message);
}

}  // namespace alibi
