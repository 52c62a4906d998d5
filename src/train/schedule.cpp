#include "train/schedule.h"

#include <algorithm>
#include <cmath>


namespace engram::train {

double Schedule::at(int64_t step) const {
  if (warmup_steps > 0 && step < warmup_steps) return peak * static_cast<double>(step + 1) / warmup_steps;
  if (kind == Kind::Constant) return peak;
  const int64_t decay_steps = std::max<int64_t>(1, total_steps - warmup_steps - 1);
  const double progress = std::clamp(static_cast<double>(step - warmup_steps) / decay_steps, 0.0, 1.0);
  const double floor = peak * min_ratio;
  if (kind == Kind::Linear) return peak - (peak - floor) * progress;
  return floor + (peak - floor) * 0.5 * (1.0 + std::cos(M_PI * progress));  // cosine
}

}  // namespace engram::train
