// The command-line reading both benchmarks share: flags, options with a value, case selection.
// Bad arguments print the message and the usage on stderr and exit with status 2; --help prints
// the usage and exits with 0.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace bench_common {

class CommandLine {
 public:
  CommandLine(int argc, char** argv, const char* program, const char* usage)
      : argc_(argc), argv_(argv), program_(program), usage_(usage) {}

  // Moves to the next argument; false after the last.
  bool next() { return ++index_ < argc_; }
  bool is(const char* name) const { return std::strcmp(argv_[index_], name) == 0; }

  // The value following the current option.
  const char* value() {
    if (index_ + 1 >= argc_) fail(std::string(argv_[index_]) + " wants a value");
    return argv_[++index_];
  }

  int positive_value() {
    const std::string option = argv_[index_];
    const char* text = value();
    char* end = nullptr;
    const long number = std::strtol(text, &end, 10);
    if (*text == '\0' || *end != '\0' || number < 1 || number > 100000)
      fail(option + " wants a positive integer, not '" + text + "'");
    return int(number);
  }

  // For an argument no option matched: --help / -h, or an error.
  [[noreturn]] void help_or_fail() const {
    if (is("--help") || is("-h")) {
      std::fputs(usage_, stdout);
      std::exit(0);
    }
    fail(std::string("unknown argument '") + argv_[index_] + "'");
  }

  [[noreturn]] void fail(const std::string& message) const {
    std::fprintf(stderr, "%s: %s\n%s", program_, message.c_str(), usage_);
    std::exit(2);
  }

 private:
  int argc_;
  char** argv_;
  const char* program_;
  const char* usage_;
  int index_ = 0;
};

// --quick keeps the quick cases; --case filters keep names containing any of them.
inline bool selected(const std::string& name, bool quick_case, bool quick_only,
                     const std::vector<std::string>& filters) {
  if (quick_only && !quick_case) return false;
  if (filters.empty()) return true;
  for (const std::string& filter : filters)
    if (name.find(filter) != std::string::npos) return true;
  return false;
}

}  // namespace bench_common
