#include "model/attention_kernels.h"

#include <cfloat>
#include <cmath>

namespace engram::model::kernels {

__attribute__((target_clones("avx512f", "avx2", "default")))
void masked_softmax_row(float* s, int64_t n, int64_t zero_to, const uint8_t* keep, int64_t self) {
  float sum = 0.0f;
  if (keep == nullptr) {
    float max = s[0];
    for (int64_t j = 1; j < n; ++j) max = std::fmax(max, s[j]);
    for (int64_t j = 0; j < n; ++j) {
      s[j] = std::exp(s[j] - max);
      sum += s[j];
    }
  } else {
    float max = -FLT_MAX;
    for (int64_t j = 0; j < n; ++j) max = std::fmax(max, (keep[j] != 0 || j == self) ? s[j] : -FLT_MAX);
    // A masked score may exceed the max: its exponent is clamped to 0 before it is zeroed.
    for (int64_t j = 0; j < n; ++j) {
      const float on = (keep[j] != 0 || j == self) ? 1.0f : 0.0f;
      s[j] = std::exp(std::fmin(s[j] - max, 0.0f)) * on;
      sum += s[j];
    }
  }
  const float inv = 1.0f / sum;
  for (int64_t j = 0; j < n; ++j) s[j] *= inv;
  for (int64_t j = n; j < zero_to; ++j) s[j] = 0.0f;
}

__attribute__((target_clones("avx512f", "avx2", "default")))
void softmax_backward_row(const float* p, float* dp, int64_t n) {
  float dot = 0.0f;
  for (int64_t j = 0; j < n; ++j) dot += p[j] * dp[j];
  for (int64_t j = 0; j < n; ++j) dp[j] = p[j] * (dp[j] - dot);
}

}  // namespace engram::model::kernels
