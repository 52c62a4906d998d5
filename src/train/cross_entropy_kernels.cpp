#include "train/cross_entropy_kernels.h"

#include <cmath>
#include <cstring>

namespace engram::train::kernels {
namespace {

inline float bf16_to_float(uint16_t bits) {
  const uint32_t wide = static_cast<uint32_t>(bits) << 16;
  float f;
  std::memcpy(&f, &wide, sizeof f);
  return f;
}

// Round to nearest, ties to even; the values here are finite (probabilities times a share).
inline uint16_t float_to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  bits += 0x7FFFu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

}  // namespace

// Three sweeps over one row (in L1/L2): the max; exp(x - max) into grad with its sum; the scaling
// by share / sum. -ffast-math assumes finite values: x - max <= 0, so exp cannot overflow.
__attribute__((target_clones("avx512f", "avx2", "default")))
float cross_entropy_row(const float* x, int64_t V, int64_t label, float share, float* grad) {
  float max = x[0];
  for (int64_t j = 1; j < V; ++j) max = std::fmax(max, x[j]);
  float sum = 0.0f;
  for (int64_t j = 0; j < V; ++j) {
    grad[j] = std::exp(x[j] - max);
    sum += grad[j];
  }
  const float scale = share / sum;
  for (int64_t j = 0; j < V; ++j) grad[j] *= scale;
  grad[label] -= share;
  return max + std::log(sum) - x[label];
}

__attribute__((target_clones("avx512f", "avx2", "default")))
float cross_entropy_row_bf16(const uint16_t* x, int64_t V, int64_t label, float share, uint16_t* grad,
                             float* x_scratch, float* grad_scratch) {
  for (int64_t j = 0; j < V; ++j) x_scratch[j] = bf16_to_float(x[j]);
  const float loss = cross_entropy_row(x_scratch, V, label, share, grad_scratch);
  for (int64_t j = 0; j < V; ++j) grad[j] = float_to_bf16(grad_scratch[j]);
  return loss;
}

}  // namespace engram::train::kernels
