#pragma once
// Fused loops of the token cross-entropy (cross_entropy.h): per row of logits, the loss and its
// gradient in one sweep over the row, which stays in cache, instead of LibTorch's log_softmax,
// gather, exp and scatter passes over the whole [N, V] tensor (and, from bf16 logits, two dtype
// copies of it). On the quickstart's [5120, 2048] logits those passes took ~140 ms of a ~370 ms
// pretraining step (train.profile_steps). Plain C++ without LibTorch, so that this file alone is
// compiled with -O3 -ffast-math (expf vectorised through glibc's libmvec), cloned for AVX-512 and
// AVX2 like the gelu loops (model/activation_kernels.h).
#include <cstdint>

namespace engram::train::kernels {

// Row x[0, V) of logits, its label in [0, V) and its share of the mean loss: returns
// -log softmax(x)[label] and writes grad = share * (softmax(x) - one_hot(label)).
float cross_entropy_row(const float* x, int64_t V, int64_t label, float share, float* grad);

// bf16 logits and gradient (as raw bits; the loss in float32): the row goes through float32
// scratch rows of V floats each (x_scratch, grad_scratch), and the gradient is rounded to the
// nearest bf16 (ties to even), as LibTorch's conversion does.
float cross_entropy_row_bf16(const uint16_t* x, int64_t V, int64_t label, float share, uint16_t* grad,
                             float* x_scratch, float* grad_scratch);

}  // namespace engram::train::kernels
