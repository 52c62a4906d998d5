#pragma once
// Batched matrix products a [..., m, k] x b [..., k, n] -> [..., m, n] for attention: scores q k^T
// and weights x v, in every model (decoder, T5, MAC aggregator).
//
// Why not at::matmul: LibTorch 1.13's CPU bmm runs a batch as a loop of at::mm-like calls, each with
// three select()s and dispatcher and resize overhead of ~30 us, so MAC's 64 heads x (8 x 8 x 32)
// products took 2 ms per call, 60x their arithmetic (train.profile_steps showed bmm as a third of
// a MAC step). Here each batch entry is one cblas_sgemm straight on the tensors' memory (views such
// as k.transpose(-1, -2) need no copy: BLAS's transpose flags read them), entries split across
// LibTorch's threads. Float32 CPU tensors with the same batch dims take this path, under autograd
// (backward: the same products on transposed views); anything else (CUDA, bf16 or autocast,
// broadcast batch dims) goes to at::matmul.
#include <ATen/core/Tensor.h>

namespace engram::model {

at::Tensor batched_matmul(const at::Tensor& a, const at::Tensor& b);

}  // namespace engram::model
