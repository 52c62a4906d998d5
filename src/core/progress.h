#pragma once
// One console progress line for long loops: "label 120/1000 (12.0%) 35.2 it/s ETA 0:25 | extra".
// Prints on rank 0 only, at most once per `interval_s` and always at the end.
#include <cstdint>
#include <string>

#include "core/timer.h"

namespace engram::core {

class Progress {
 public:
  Progress(std::string label, int64_t total, bool enabled, double interval_s = 2.0,
           std::string unit = "it");
  // Reports `done` items finished; `extra` is appended (loss, lr, ...).
  void update(int64_t done, const std::string& extra = "");
  // A resumed loop: `done` items were finished before this run, so the rate and ETA count only
  // the items done since.
  void resume_from(int64_t done) { resumed_ = done; }
  // The line that update() would print now; exposed for tests.
  std::string line(int64_t done, const std::string& extra = "") const;

 private:
  std::string label_;
  int64_t total_;
  bool enabled_;
  double interval_s_;
  std::string unit_;
  Stopwatch clock_;
  double last_print_ = -1e300;
  int64_t resumed_ = 0;
};

// "1:02:03" or "2:03"; "?" for a negative or non-finite duration.
std::string format_duration(double seconds);

}  // namespace engram::core
