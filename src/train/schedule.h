#pragma once
// Learning-rate schedules: linear warm-up from 0, then constant, linear decay or cosine decay to
// min_ratio x peak at the last step.
#include <cstdint>
#include <utility>

#include "core/enum_names.h"

namespace engram::train {

struct Schedule {
  enum class Kind { Constant, Linear, Cosine };
  Kind kind = Kind::Cosine;
  double peak = 1e-3;
  int64_t warmup_steps = 0;
  int64_t total_steps = 1;
  double min_ratio = 0.1;
  // Learning rate of step `step` (0-based: the rate used by the `step`-th optimizer update).
  double at(int64_t step) const;
};

}  // namespace engram::train

template <>
struct engram::core::EnumNames<engram::train::Schedule::Kind> {
  using Kind = engram::train::Schedule::Kind;
  static constexpr std::pair<Kind, const char*> names[] = {
      {Kind::Constant, "constant"}, {Kind::Linear, "linear"}, {Kind::Cosine, "cosine"}};
};
