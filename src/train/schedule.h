#pragma once
// Learning-rate schedules: linear warm-up from 0, then constant, linear decay or cosine decay to
// min_ratio x peak at the last step.
#include <cstdint>
#include <string>

namespace engram::train {

struct Schedule {
  std::string kind = "cosine";  // constant | linear | cosine
  double peak = 1e-3;
  int64_t warmup_steps = 0;
  int64_t total_steps = 1;
  double min_ratio = 0.1;
  // Learning rate of step `step` (0-based: the rate used by the `step`-th optimizer update).
  double at(int64_t step) const;
};

}  // namespace engram::train
