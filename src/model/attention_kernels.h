#pragma once
// Row loops of the fused causal attention (causal_attention.h): the masked softmax of one score
// row and its backward. Plain C++ without LibTorch, compiled with -O3 -ffast-math (expf
// vectorised through glibc's libmvec) and cloned for AVX-512 and AVX2, like the gelu loops
// (activation_kernels.h). -ffast-math assumes finite values, so masked scores are never -inf:
// they are left out of the max and their exponentials are multiplied by 0.
#include <cstdint>

namespace engram::model::kernels {

// Softmax in place over the allowed entries of s[0, n), 0 at the others and in s[n, zero_to).
// allowed(j) = keep == nullptr || keep[j] != 0 || j == self (a query always sees itself, so no
// row is empty).
void masked_softmax_row(float* s, int64_t n, int64_t zero_to, const uint8_t* keep, int64_t self);

// Softmax backward in place: dp[j] <- p[j] (dp[j] - sum_k p[k] dp[k]) for j in [0, n).
void softmax_backward_row(const float* p, float* dp, int64_t n);

}  // namespace engram::model::kernels
