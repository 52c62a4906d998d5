#pragma once
// The token-level cross-entropy every training command uses.
#include <ATen/core/Tensor.h>

namespace engram::train {

// Mean next-token cross-entropy of logits [B, T, V] against labels [B, T] (data::collate's
// shifted labels; data::kIgnoreLabel positions skipped), computed in float32 whatever the
// logits' dtype. Same value and gradient as LibTorch's cross_entropy, one memory pass cheaper:
// the backward writes softmax - one-hot directly instead of zero-filling a [N, V] gradient,
// scattering into it and running the log-softmax backward over it.
at::Tensor token_cross_entropy(const at::Tensor& logits, const at::Tensor& labels);

}  // namespace engram::train
