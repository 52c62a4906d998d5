#pragma once
// Activations whose LibTorch kernels are slow on CPU.
#include <ATen/ATen.h>

namespace engram::model {

// GPT-2's gelu_new, 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), written as
// x * sigmoid(2 sqrt(2/pi) (x + 0.044715 x^3)) (the same function: tanh(u) = 2 sigmoid(2u) - 1)
// with its own backward. Same values as at::gelu(x, "tanh") to float rounding; why: Debian's
// LibTorch 1.13 runs the tanh variant's kernels 3-6x slower than the erf GELU (16x256x1024 floats
// on 2 threads: 7.0 ms forward and 5.8 ms backward). Float32 runs fused vectorised loops, one pass
// each way (activation_kernels.h); other dtypes a few tensor ops.
at::Tensor gelu_tanh(const at::Tensor& x);

}  // namespace engram::model
