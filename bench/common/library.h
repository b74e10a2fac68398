// One build of libalibi.so in a dlmopen namespace of its own, so that two builds (same soname,
// same symbols) run side by side in one process; its entry points resolved by name. Failures
// print "PROGRAM: ..." on stderr and exit with status 1.
#pragma once

#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>

#include "alibi/alibi.h"

namespace bench_common {

class Library {
 public:
  Library(const char* program, const char* path)
      : program_(program), handle_(dlmopen(LM_ID_NEWLM, path, RTLD_NOW | RTLD_LOCAL)) {
    if (handle_ == nullptr) {
      std::fprintf(stderr, "%s: cannot load %s: %s\n", program_, path, dlerror());
      std::exit(1);
    }
    resolve("alibi_last_error_message", last_error_message_);
  }

  // The entry point `name`, or nullptr where this build lacks it.
  template <typename F>
  F find(const char* name) const {
    return reinterpret_cast<F>(dlsym(handle_, name));
  }

  template <typename F>
  void resolve(const char* name, F& function) const {
    function = find<F>(name);
    if (function == nullptr) {
      std::fprintf(stderr, "%s: %s not found: %s\n", program_, name, dlerror());
      std::exit(1);
    }
  }

  // `what` is the call that returned `status`; the message is this build's last error.
  void check(alibi_status status, const char* what) const {
    if (status == ALIBI_STATUS_SUCCESS) return;
    std::fprintf(stderr, "%s: %s failed: %s\n", program_, what, last_error_message_());
    std::exit(1);
  }

 private:
  const char* program_;
  void* handle_;
  decltype(&alibi_last_error_message) last_error_message_ = nullptr;
};

}  // namespace bench_common
