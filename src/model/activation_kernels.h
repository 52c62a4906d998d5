#pragma once
// Fused float32 loops for gelu_tanh (activation.h): one pass over memory each way instead of the
// ~10 tensor passes of the op-by-op form. Plain C++ without LibTorch so that this file alone is
// compiled with -O3 -ffast-math, which lets GCC vectorise expf through glibc's libmvec; each loop
// is also cloned for AVX-512 and AVX2 and picked at load time by the CPU it runs on.
#include <cstdint>

namespace engram::model::kernels {

// gelu_new as x sigmoid(kGeluScale (x + kGeluCubic x^3)): the constants of both forms, these
// loops and the tensor-op form (activation.cpp).
constexpr double kGeluScale = 1.5957691216057308;  // 2 sqrt(2/pi)
constexpr double kGeluCubic = 0.044715;

// y[i] = x[i] * sigmoid(2 sqrt(2/pi) (x[i] + 0.044715 x[i]^3)) for i in [0, n).
void gelu_tanh_forward(const float* x, float* y, int64_t n);

// dx[i] = dy[i] * d/dx gelu_tanh(x[i]) for i in [0, n).
void gelu_tanh_backward(const float* x, const float* dy, float* dx, int64_t n);

}  // namespace engram::model::kernels
