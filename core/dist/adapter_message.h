// The communicator adapters' own per-thread message (alibi_mpi_last_error_message,
// alibi_nccl_last_error_message): through libalibi's public API they cannot set its message.
// Each adapter library gets its own copy.
#pragma once

#include <cstdarg>
#include <cstdio>
#include <string>

namespace alibi::adapter {

inline thread_local std::string last_error;

// Records "<where>: <printf message>" as this thread's message.
__attribute__((format(printf, 2, 3))) inline void record(const char* where, const char* format,
                                                        ...) {
  char buffer[1024];
  va_list args;
  va_start(args, format);
  std::vsnprintf(buffer, sizeof buffer, format, args);
  va_end(args);
  last_error = std::string(where) + ": " + buffer;
}

}  // namespace alibi::adapter
