#pragma once
// Private to the decoder's source files (decoder*.cpp): the submodules a Decoder is made of, what
// their attention shares within one forward pass, and the rotary helpers the attention and the
// forward pass both use. Nothing outside src/model/decoder*.cpp includes this.
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/pimpl.h>

#include "model/decoder.h"
#include "model/linear.h"

namespace engram::model {
namespace detail {

// Rotary tables cos, sin [Bp, 1, T, hd] (dtype of `opts`) of positions [Bp, T] (decoder_positions.cpp).
std::pair<at::Tensor, at::Tensor> rope_tables(const at::Tensor& positions, int64_t hd, double theta,
                                              const at::TensorOptions& opts);
// x cos + rotate_half(x) sin, with the tables of rope_tables.
at::Tensor rope_with(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);

// LayerNorm (weight, bias) or RMSNorm (weight only, computed in float32).
class NormImpl : public torch::nn::Module {
 public:
  NormImpl(int64_t d, bool rms, double eps);
  at::Tensor forward(const at::Tensor& x);  // [..., d]
  at::Tensor weight, bias;

 private:
  int64_t d_;
  bool rms_;
  double eps_;
};
TORCH_MODULE(Norm);

// What the decoder computes once per forward and every layer shares.
struct AttnContext {
  at::Tensor bias;           // additive [Bp, Hp, T, S] float (0 / -inf, + ALiBi), or undefined
  bool fused = false;        // causal_attention (CPU, no ALiBi, no attention dropout) instead of bias
  at::Tensor key_real;       // fused: [B, S] keys padding does not hide, or undefined (none hidden)
  at::Tensor cos, sin;       // rope: [Bp, 1, T, hd]
  at::Tensor prefix_k, prefix_v;  // [B, H, P, hd] of this layer, or undefined
  at::Tensor* cache_k = nullptr;  // [B, H, T_past, hd] of this layer (grown in place)
  at::Tensor* cache_v = nullptr;
  DecoderOutput* capture = nullptr;  // q/k/v of this layer go there
};

class AttentionImpl : public torch::nn::Module {
 public:
  explicit AttentionImpl(const DecoderConfig& c);
  at::Tensor forward(const at::Tensor& h, const AttnContext& ctx);  // h [B, T, d] -> [B, T, d]
  Linear q{nullptr}, k{nullptr}, v{nullptr}, o{nullptr};

 private:
  int64_t n_heads_, hd_;
  double dropout_;
};
TORCH_MODULE(Attention);

class MlpImpl : public torch::nn::Module {
 public:
  explicit MlpImpl(const DecoderConfig& c);
  at::Tensor forward(const at::Tensor& h);  // [B, T, d] -> [B, T, d]
  Linear up{nullptr}, gate{nullptr}, down{nullptr};

 private:
  DecoderConfig::Mlp kind_;
};
TORCH_MODULE(Mlp);

class BlockImpl : public torch::nn::Module {
 public:
  explicit BlockImpl(const DecoderConfig& c);
  at::Tensor forward(const at::Tensor& x, const AttnContext& ctx);  // [B, T, d]
  Norm ln1{nullptr}, ln2{nullptr};
  Attention attn{nullptr};
  Mlp mlp{nullptr};

 private:
  at::Tensor drop(const at::Tensor& t);
  bool parallel_;
  double dropout_;
};
TORCH_MODULE(Block);

// block.forward(x, ctx) without keeping the block's activations: they are recomputed in backward
// (activation checkpointing, decoder_checkpoint.cpp). Uses ctx's bias, fused, key_real, cos and
// sin only (no prefix, cache or capture).
at::Tensor checkpointed_block(BlockImpl& block, const at::Tensor& x, const AttnContext& ctx);

}  // namespace detail

struct DecoderImpl::Parts {
  torch::nn::Embedding wte{nullptr}, wpe{nullptr};
  torch::nn::ModuleList blocks{nullptr};
  std::vector<std::shared_ptr<detail::BlockImpl>> block_list;
  detail::Norm ln_f{nullptr};
  Linear head{nullptr};
  at::Tensor slopes;  // alibi [H]
};

}  // namespace engram::model
