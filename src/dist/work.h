#pragma once
// Handle of an asynchronous collective. Results may be read only after wait() returns.
#include <chrono>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>

namespace engram::dist {

// A collective did not finish within its deadline. The watchdog of a multi-process backend
// aborts the whole job instead; this is thrown where the caller can still act (Thread backend,
// wait(timeout) with an explicit timeout).
class TimeoutError : public std::runtime_error {
 public:
  explicit TimeoutError(const std::string& message) : std::runtime_error(message) {}
};

// Two ranks issued different collectives at the same sequence number (detected where the
// backend can see it: the Thread backend).
class MismatchError : public std::runtime_error {
 public:
  explicit MismatchError(const std::string& message) : std::runtime_error(message) {}
};

class Work {
 public:
  virtual ~Work() = default;
  // True once the operation has finished (successfully or not).
  virtual bool is_completed() = 0;
  // Blocks until the operation has finished and its results are in place; rethrows its error.
  // With a timeout: throws TimeoutError if it has not finished by then (the operation itself
  // goes on, and the watchdog still watches it).
  virtual void wait(std::optional<std::chrono::milliseconds> timeout = std::nullopt) = 0;
};
using WorkPtr = std::shared_ptr<Work>;

// A Work that was complete when it was made (Local backend, synchronous Thread backend).
class CompletedWork final : public Work {
 public:
  bool is_completed() override { return true; }
  void wait(std::optional<std::chrono::milliseconds>) override {}
};

}  // namespace engram::dist
