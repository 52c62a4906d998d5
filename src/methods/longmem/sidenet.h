#pragma once
// LongMem's residual SideNet (specs/longmem.md 1.2 and 1.4) over a frozen engram decoder.
//
// With r backbone layers per side layer (`reduction`, the reference's --layer-reduction-factor 2),
// side layer i is a copy of backbone block r i + r - 1 (for r = 2: blocks 1, 3, 5, ...), its final
// norm a copy of the backbone's ln_f, and it reads the backbone's hidden states H (H[0] the
// embeddings, H[L] after ln_f) through the cross-network residual:
//   y = ln1(x);  a = attn(y);  m = mlp(y) (parallel blocks) or mlp(ln2(x + a)) (sequential)
//   x <- x + (H[r(i+1)] - H[r i]) + a + m,      x_0 = H[0]
//   logits = backbone head(side ln_f(x))       (embedding and head shared and frozen)
// The last residual uses H[L], the backbone's ln_f output, as the reference does (pitfall 7: kept
// for fidelity; the side ln_f normalises the sum anyway).
//
// One side layer, memory_layer / r, is the memory layer: its attention also reads the chunks
// the memory returns for its un-scaled query (fusion.h: two softmaxes, per-head gate sigma(g),
// g = 0 at the start), the memory holding the frozen backbone's k / v of layer memory_layer. With
// memory_layer = r j + r - 1 the memory layer is initialised from the very block whose keys it
// reads (the reference: block 17, side layer 8), so its queries start in the keys' space.
// Positions: ALiBi's bias in every side layer's local attention (as the backbone's); with rotary
// positions the local attention rotates q and k, while the memory query and the memory keys are
// the un-rotated projections (position-free, as ALiBi keys are).
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/pimpl.h>

#include "model/decoder.h"

namespace engram::longmem {

class ChunkMemory;

struct SideNetConfig {
  int64_t reduction = 2;     // backbone layers per side layer
  int64_t memory_layer = -1;  // backbone layer m whose k / v fill the memory; -1: the default below
  int64_t retrieve_tokens = 64;  // memory tokens each query reads per head (chunks x chunk size)
  double dropout = 0.1;      // residual and local-attention dropout in training
  bool memory = true;        // false: a SideNet without the memory path (the capacity-matched control)
  // The gate is stored as g / gate_scale: Adam moves a parameter by about lr per step whatever its
  // scale, so g moves gate_scale times faster than the weights (the reference's 100k steps move it
  // far; a few hundred at the same lr barely do). 1: the reference.
  double gate_scale = 1.0;

  int64_t side_layers(int64_t backbone_layers) const { return backbone_layers / reduction; }
  int64_t memory_side_layer() const { return memory_layer / reduction; }
  // Checks against the backbone (core::UserError naming longmem.*) and resolves memory_layer -1 to
  // the last layer r j + r - 1 at or below 0.7 L (24 layers, r 2: 17, the reference's; 2 layers,
  // r 1: 1).
  SideNetConfig resolved(const model::DecoderConfig& backbone) const;
};

// What the backbone gives the SideNet for one segment (computed under no_grad).
struct BackboneStates {
  std::vector<at::Tensor> hidden;  // H[0..L], [B, T, d]
  at::Tensor memory_k, memory_v;   // layer m's k / v projections (un-rotated), [B, T, d]
  at::Tensor logits;               // the backbone's own logits [B, T, V]
};

// Runs the frozen backbone on `input_ids` [B, T] and keeps what the SideNet reads.
BackboneStates run_backbone(model::Decoder& backbone, const at::Tensor& input_ids, int64_t memory_layer);

struct SideOutput {
  at::Tensor logits;     // [B, T, V]
  at::Tensor chunk_ids;  // [B, T, H, chunks] of the memory layer's retrieval (-1: none), or undefined
};

class SideLayerImpl;
class SideNormImpl;
class SideNetImpl : public torch::nn::Module {
 public:
  // A SideNet for `backbone` (config resolved against it), initialised from its blocks.
  SideNetImpl(model::Decoder backbone, const SideNetConfig& config);
  // Logits of the SideNet for the backbone's states; the memory layer reads `memory` when it is
  // given and holds chunks (retrieve only: writing is the caller's, after this call).
  SideOutput forward(const BackboneStates& states, const ChunkMemory* memory);
  const SideNetConfig& config() const { return config_; }
  // The trainable parameters by name (layers.{i}.*, ln_f.*, layers.{m}.gate).
  std::vector<std::pair<std::string, at::Tensor>> named_weights() const;
  at::Tensor gate() const;  // g [H] of the memory layer (sigma(g): the memory's share per head), or undefined

 private:
  void copy_from_backbone();
  SideNetConfig config_;
  model::Decoder backbone_;  // frozen; its head makes the logits
  torch::nn::ModuleList layers_{nullptr};
  std::vector<std::shared_ptr<SideLayerImpl>> layer_list_;
  std::shared_ptr<SideNormImpl> ln_f_;
};
TORCH_MODULE(SideNet);

}  // namespace engram::longmem
