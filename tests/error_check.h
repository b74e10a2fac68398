// Checking a failed call: its status, and a message that names the function, the argument and
// the bad values (the contract of every entry point, include/alibi/alibi.h).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <string>
#include <vector>

#include "alibi/alibi.h"

namespace test {

inline bool is_identifier_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

// `word` occurs in `text` as a whole identifier (e.g. "q" in "q.shape[0]", not in "seq").
inline bool contains_identifier(const std::string& text, const std::string& word) {
  for (size_t at = text.find(word); at != std::string::npos; at = text.find(word, at + 1)) {
    const size_t end = at + word.size();
    const bool starts = at == 0 || !is_identifier_char(text[at - 1]);
    const bool ends = end == text.size() || !is_identifier_char(text[end]);
    if (starts && ends) return true;
  }
  return false;
}

inline std::string lowercase(std::string s) {
  for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

inline std::vector<std::string> alternatives(const std::string& spec) {
  std::vector<std::string> parts;
  size_t start = 0;
  for (size_t bar = spec.find('|'); bar != std::string::npos; bar = spec.find('|', start)) {
    parts.push_back(spec.substr(start, bar - start));
    start = bar + 1;
  }
  parts.push_back(spec.substr(start));
  return parts;
}

inline bool names_argument(const std::string& message, const std::string& spec) {
  const auto names = alternatives(spec);
  return std::any_of(names.begin(), names.end(),
                     [&](const std::string& name) { return contains_identifier(message, name); });
}

inline bool shows_value(const std::string& message, const std::string& spec) {
  const auto values = alternatives(lowercase(spec));
  const std::string text = lowercase(message);
  return std::any_of(values.begin(), values.end(), [&](const std::string& value) {
    return text.find(value) != std::string::npos;
  });
}

// A failed call: its status, and a message naming the function, the argument (any of the
// '|'-separated names, as a whole identifier) and every bad value (a case-insensitive substring,
// any of its '|'-separated spellings).
inline void expect_error(alibi_status got, alibi_status want, const std::string& function,
                  const std::string& argument, const std::vector<std::string>& values) {
  const std::string message = alibi_last_error_message();  // before any other alibi_* call
  EXPECT_EQ(got, want) << "got \"" << alibi_status_string(got) << "\", want \""
                       << alibi_status_string(want) << "\"; message: " << message;
  EXPECT_TRUE(contains_identifier(message, function)) << "no function name in: " << message;
  EXPECT_TRUE(names_argument(message, argument))
      << "no argument " << argument << " in: " << message;
  for (const auto& value : values)
    EXPECT_TRUE(shows_value(message, value)) << "no value " << value << " in: " << message;
}

#define EXPECT_FAILS(call, status, function, argument, ...)        \
  do {                                                             \
    SCOPED_TRACE(#call);                                           \
    const alibi_status got_ = (call);                              \
    ::test::expect_error(got_, status, function, argument, {__VA_ARGS__}); \
  } while (0)

}  // namespace test
