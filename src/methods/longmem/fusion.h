#pragma once
// LongMem's memory-fusion attention (specs/longmem.md 1.4, the reference's
// JointMultiheadAttentionWeightedSum): per head, local causal attention and attention over the
// retrieved memory tokens, each with its own softmax, mixed by a learned gate:
//   o_h = (1 - s_h) softmax(q k^T / sqrt(d) + bias + causal) v + s_h softmax(q K_mem^T / sqrt(d)) V_mem
// with s_h = sigmoid(g_h) (g starts at 0: s = 0.5). The memory softmax of query t runs over its own
// retrieved tokens only, without a position bias and without dropout; masked slots take no weight.
// A query with no valid memory slot (an empty memory) gets the local attention alone, as the
// reference's layer does before anything was written. The memory keys and values are the frozen
// backbone's, used as they are (not re-projected). Orientation: s weighs the memory (the paper's
// equation writes the gate on the local side; the two differ only in the sign of g).
#include <ATen/core/Tensor.h>

namespace engram::longmem {

struct FusedAttentionInputs {
  at::Tensor q, k, v;          // [B, H, T, d], q not yet scaled
  at::Tensor memory_q;         // [B, H, T, d]: the query the memory part uses, or undefined: q (rotary
                               // positions: q rotated for the local part, un-rotated for the memory)
  at::Tensor bias;             // additive scores [H or 1, T, T] (ALiBi), or undefined
  at::Tensor memory_keys;      // [B, H, T, K, d], or undefined: no memory
  at::Tensor memory_values;    // [B, H, T, K, d]
  at::Tensor memory_valid;     // [B, H, T, K] bool
  at::Tensor gate;             // [H]: g, trainable
  double local_dropout = 0.0;  // on the local attention weights, in training
  bool training = false;
};

// [B, H, T, d]: every head's fused output, before the output projection.
at::Tensor fused_memory_attention(const FusedAttentionInputs& in);

}  // namespace engram::longmem
