#pragma once
// Causal softmax attention fused into one CPU op, for the decoder's attention without ALiBi or
// attention dropout (decoder_blocks.cpp falls back to the op-by-op form otherwise).
//
// Why: the op-by-op form writes and reads the [B, H, T, S] scores ~10 times per layer (matmul,
// scale + bias add, softmax, their backwards, dtype copies under autocast): on the quickstart's
// pretraining step (16 x 4 heads x 320 x 320) these passes cost more than the layer's matmuls
// (train.profile_steps). Here each (batch, head) entry is one task that walks its query rows in
// blocks of 64: the scores of a block are one cblas_sgemm over only the keys the block can see
// (causal: ~60% of the products at T = 320), the masked softmax runs on them while they are in
// cache, and one more sgemm multiplies them into the output. The probabilities are kept for the
// backward, which goes block by block the same way (flash-attention's algebra, without the
// recomputation: at these sizes the [T, S] probabilities fit in memory).
#include <ATen/core/Tensor.h>

namespace engram::model {

// q [B, H, T, hd], k and v [B, H, S, hd] (S >= T; any float dtype: computed in float32) -> the
// attention output [B, T, H, hd] in float32 (heads side by side: a view away from [B, T, H*hd]).
// Query i sits at key index i + S - T (the S - T keys before the new tokens are prefix slots and
// cached tokens) and sees the keys up to itself. key_real [B, S] (uint8 or bool; undefined = all
// real): a 0 hides that key from every query but itself (padding). cos, sin (optional) [1 or B,
// 1, T, hd]: rotary tables (decoder_blocks.cpp's rope_with) applied to q and to the last T keys while
// they are packed into float32, so the rotation costs no tensor passes of its own. Differentiable
// in q, k and v.
at::Tensor causal_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& key_real,
                            double scale, const at::Tensor& cos = {}, const at::Tensor& sin = {});

}  // namespace engram::model
