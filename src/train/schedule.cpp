#include "train/schedule.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace engram::train {

double Schedule::at(int64_t step) const {
  if (warmup_steps > 0 && step < warmup_steps) return peak * static_cast<double>(step + 1) / warmup_steps;
  if (kind == "constant") return peak;
  const int64_t decay_steps = std::max<int64_t>(1, total_steps - warmup_steps - 1);
  const double progress = std::clamp(static_cast<double>(step - warmup_steps) / decay_steps, 0.0, 1.0);
  const double floor = peak * min_ratio;
  if (kind == "linear") return peak - (peak - floor) * progress;
  if (kind == "cosine") return floor + (peak - floor) * 0.5 * (1.0 + std::cos(M_PI * progress));
  core::fail("train.schedule: '{}' (expected constant, linear or cosine)", kind);
}

}  // namespace engram::train
