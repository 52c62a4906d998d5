#pragma once
// Two kinds of failure:
//  - UserError: the user gave something wrong (config, data, files, flags). The message names the
//    file, line or key and what was expected; the program exits with code 2.
//  - InternalError: a broken invariant inside engram (ENGRAM_CHECK). Exit code 1, with file:line.
#include <stdexcept>
#include <string>

#include <fmt/format.h>

namespace engram::core {

constexpr int kExitUserError = 2;
constexpr int kExitInternalError = 1;

class UserError : public std::runtime_error {
 public:
  explicit UserError(const std::string& message) : std::runtime_error(message) {}
  int exit_code() const { return kExitUserError; }
};

class InternalError : public std::logic_error {
 public:
  explicit InternalError(const std::string& message) : std::logic_error(message) {}
};

// Throws UserError with a fmt-formatted message.
template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) {
  throw UserError(fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace engram::core

// Internal invariant: throws InternalError naming the expression and the source location.
#define ENGRAM_CHECK(cond, ...)                                                                 \
  do {                                                                                          \
    if (!(cond))                                                                                \
      throw ::engram::core::InternalError(fmt::format("check failed: {} at {}:{}: {}", #cond,   \
                                                      __FILE__, __LINE__,                       \
                                                      fmt::format(__VA_ARGS__)));               \
  } while (0)
