#include "model/activation_kernels.h"

#include <cmath>

namespace engram::model::kernels {
namespace {
constexpr float kScale = static_cast<float>(kGeluScale);
constexpr float kCubic = static_cast<float>(kGeluCubic);

// sigmoid(u) as 1 / (1 + exp(-u)), u clamped to +-80 first: -ffast-math assumes no infinities,
// so exp must not overflow (exp(80) = 5.5e34 still fits). The clamp moves sigmoid by < 2e-35.
inline float sigmoid(float u) { return 1.0f / (1.0f + std::exp(-std::fmin(std::fmax(u, -80.0f), 80.0f))); }
}  // namespace

__attribute__((target_clones("avx512f", "avx2", "default")))
void gelu_tanh_forward(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    y[i] = v * sigmoid(kScale * (v + kCubic * v * v * v));
  }
}

// d/dx [x s(u)] = s + x s (1 - s) du/dx, with du/dx = kScale (1 + 3 kCubic x^2).
__attribute__((target_clones("avx512f", "avx2", "default")))
void gelu_tanh_backward(const float* x, const float* dy, float* dx, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    const float v2 = v * v;
    const float s = sigmoid(kScale * (v + kCubic * v2 * v));
    const float du = kScale * (1.0f + 3.0f * kCubic * v2);
    dx[i] = dy[i] * s * (1.0f + v * (1.0f - s) * du);
  }
}

}  // namespace engram::model::kernels
