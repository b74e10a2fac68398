#include "core/abi/error.h"

#include <cstdarg>
#include <cstdio>

namespace alibi {

void fail(alibi_status status, const char* format, ...) {
  char buffer[1024];
  va_list args;
  va_start(args, format);
  std::vsnprintf(buffer, sizeof buffer, format, args);
  va_end(args);
  throw Error(status, buffer);
}

void check(const Status& status) {
  if (!status.ok()) throw Error(status.code, status.message);
}

}  // namespace alibi
