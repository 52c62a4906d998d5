#pragma once
// A decoder-only transformer LM covering GPT-2, the LongMem backbone (ALiBi, parallel blocks,
// untied head with bias) and LLaMA (RoPE, RMSNorm, SwiGLU, no biases), with the hooks the three
// methods need:
//   - MAC: per-layer prefix keys/values, visible to every query, positions shifted by the prefix;
//   - LongMem: all hidden states, and the q/k/v of one layer;
//   - generation: a KV cache;
//   - SELF-PARAM: LoRA on named linear layers, with merge/unmerge (model/linear.h).
// Attention and MLP use batched matmuls over [B, H, T, head_dim]; no per-head or per-token loops.
//
// Parameter names (used by checkpoints and the HF name maps):
//   wte.weight                      token embedding [V, d]
//   wpe.weight                      learned positions [max_positions, d] (positions = learned)
//   blocks.{i}.ln1.{weight,bias}    norm before attention (and before the MLP in parallel blocks)
//   blocks.{i}.attn.{q,k,v,o}.{weight,bias}
//   blocks.{i}.ln2.{weight,bias}    norm before the MLP (sequential blocks only)
//   blocks.{i}.mlp.{up,down}.{weight,bias}, blocks.{i}.mlp.gate.weight (swiglu)
//   ln_f.{weight,bias}              final norm
//   head.{weight,bias}              untied output head (tied: logits use wte.weight)
// Biases exist only where the config asks for them; RMSNorm has no bias. Linear weights are
// [out, in] (torch layout; GPT-2's Conv1D weights are transposed on import).
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include "core/enum_names.h"

namespace engram::config {
class Config;
class Schema;
}

namespace engram::model {

struct DecoderConfig {
  int64_t vocab_size = 2048;
  int64_t d_model = 128;
  int64_t n_layers = 2;
  int64_t n_heads = 4;
  int64_t d_ff = 512;             // MLP hidden size
  int64_t max_positions = 1024;   // size of the learned position table; rope/alibi: no table
  enum class Positions { Learned, Alibi, Rope };
  enum class Block { Sequential, Parallel };  // x += attn(ln1 x); x += mlp(ln2 x) | x += attn(ln1 x) + mlp(ln1 x)
  enum class Norm { Layer, Rms };
  enum class Mlp { Gelu, GeluNew, SwiGlu };  // gelu (erf) | gelu_new (tanh approximation) | swiglu
  Positions positions = Positions::Learned;
  Block block = Block::Sequential;
  Norm norm = Norm::Layer;
  Mlp mlp = Mlp::GeluNew;
  bool bias = true;                   // biases of q/k/v/o and of the MLP linears
  int mlp_bias = -1;                  // MLP biases: -1 = as `bias`, 0 = none, 1 = with biases
                                      // (alibi-parallel: no attention biases, MLP biases)
  bool tied_head = true;              // logits = h wte^T
  bool head_bias = false;             // untied head with a bias (LongMem backbone)
  double norm_eps = 1e-5;
  double rope_theta = 10000.0;
  double dropout = 0.0;               // embedding, attention and residual dropout (train mode only)
  double init_std = 0.02;             // GPT-2 init N(0, init_std); o and down scaled by 1/sqrt(2L)

  int64_t head_dim() const { return d_model / n_heads; }
  bool has_mlp_bias() const { return mlp_bias < 0 ? bias : mlp_bias != 0; }
  // gpt2 (HF-compatible: learned positions, sequential, layer norm, gelu_new, biases, tied head,
  // eps 1e-5), alibi-parallel (the LongMem backbone: alibi, parallel, layer norm eps 1e-6,
  // gelu_new, no attention biases but MLP biases, untied head with bias), llama (rope, sequential,
  // rms eps 1e-5 (HF: 1e-6 for llama-2), swiglu, no biases, untied head). Sizes keep their values.
  // (Two overloads rather than `sizes = {}`: a default argument of the enclosing class type does
  // not compile with default member initializers.)
  static DecoderConfig preset(const std::string& name, DecoderConfig sizes);
  static DecoderConfig preset(const std::string& name);
  // Bad values (d_model not divisible by n_heads, unknown option names, ...) -> core::UserError
  // naming the `model.*` option.
  void validate() const;
  // The weights the sizes need at the least (embeddings, attention and MLP matrices; norms and
  // biases left out), as a double so that absurd sizes cannot overflow. Loaders compare it with
  // the values a file holds before they build anything: a config that lies about its sizes is
  // refused instead of allocating what it claims.
  double min_weight_count() const;
  // check_sizes_fit with min_weight_count() and these sizes.
  void check_fits(int64_t values, const std::string& sizes_from, const std::string& weights_file) const;
};

// UserError when `needed` (what the sizes `sizes` read from `sizes_from` need) is more than twice
// the `values` that `weights_file` holds: building the model would allocate far more than the file
// can fill. A smaller mismatch is left to the tensor-by-tensor checks, whose messages are precise.
void check_sizes_fit(double needed, int64_t values, const std::string& sizes, const std::string& sizes_from,
                     const std::string& weights_file);

// model.* options (preset, sizes, overrides) and the config they describe.
void declare_model_options(config::Schema& schema);
// The preset named by model.preset with the sizes and every explicitly set override applied.
// model.vocab_size 0 ("take the tokenizer's") is returned as 0: set vocab_size before building.
DecoderConfig decoder_config_from(const config::Config& config);

// ALiBi slopes [H] (float32): 2^(-8h/H), h = 1..H, for H a power of two; otherwise the standard
// recipe (the slopes of the closest smaller power of two, then every other slope of twice that).
at::Tensor alibi_slopes(int64_t n_heads);
// Rotary embedding (HF LLaMA rotate-half convention) of x [B, H, T, hd] at positions [B or 1, T]
// (int64): x cos(p w) + rotate_half(x) sin(p w), w_i = theta^(-2i/hd).
at::Tensor apply_rope(const at::Tensor& x, const at::Tensor& positions, double theta);

// Per-layer prefix keys/values (MAC's P-tuning v2 modulation): keys[l], values[l] are
// [B, H, P, head_dim]. Every query attends to all P prefix slots (no causal mask over them), and
// the positions of the real tokens start at P (as HF does with past_key_values). Prefix keys get
// no rotary embedding (as in MAC's LLaMA path).
struct Prefix {
  std::vector<at::Tensor> keys, values;
  int64_t length() const;  // P, 0 when empty
};

// Keys and values of the tokens seen so far, per layer [B, H, T_past, head_dim] (rotary already
// applied). forward() appends the new tokens' keys and values.
struct KVCache {
  std::vector<at::Tensor> keys, values;
  int64_t length() const;  // T_past, 0 when empty
  // Keeps rows `index` (beam search reorders hypotheses).
  void select_rows(const at::Tensor& index);
};

struct ForwardOptions {
  // [B, T_past + T] of 1 (real token) / 0 (padding), covering cached and new tokens (not the
  // prefix). Padding keys are masked out, and positions count real tokens only:
  // position = P + (number of real tokens before it), so left-padded prompts get the same
  // positions as unpadded ones. Undefined: every token is real.
  at::Tensor attention_mask;
  const Prefix* prefix = nullptr;
  KVCache* cache = nullptr;           // when given: attend over it, then append the new tokens
  bool output_hidden_states = false;  // H[0..L]: H[j<L] is the input of block j, H[L] is after ln_f
  int capture_qkv_layer = -1;         // when >= 0: q, k, v (projections of ln1(H[j]), [B, T, d])
  // When >= 0 (with output_hidden_states): stop as soon as H[j] exists; later blocks, ln_f and
  // the head do not run and logits stay undefined (a reader of early states pays for those only).
  int stop_at_hidden_state = -1;
};

struct DecoderOutput {
  at::Tensor logits;                       // [B, T, V]
  std::vector<at::Tensor> hidden_states;   // when asked, L + 1 tensors [B, T, d]
  at::Tensor q, k, v;                      // when asked
  at::Tensor alibi_bias;                   // alibi: the [H] slopes (for side networks that reuse them)
};

class DecoderImpl : public torch::nn::Module {
 public:
  explicit DecoderImpl(DecoderConfig config);
  // input_ids: [B, T] int64.
  DecoderOutput forward(const at::Tensor& input_ids, const ForwardOptions& options = {});
  // A prefix made of P virtual tokens per layer: states[l] [B, P, d] is a residual-stream state
  // at layer l; its keys and values are layer l's own (ln1, then the k / v projections, rotary
  // at positions 0..P-1), so the prefix looks to each layer like context tokens it can read.
  Prefix prefix_from_states(const std::vector<at::Tensor>& states);
  const DecoderConfig& config() const { return config_; }
  int64_t num_parameters(bool trainable_only = false) const;

  // LoRA (SELF-PARAM): adds low-rank adapters to every linear whose name ends with one of
  // `targets` ("q", "k", "v", "o", "up", "gate", "down"); A ~ Kaiming-uniform(a = sqrt 5),
  // B = 0, scale alpha / rank. Returns the names of the adapted layers.
  // As PEFT's get_peft_model, every other parameter of the model is frozen (requires_grad =
  // false) so only the adapters train; remove_lora() restores the flags of before the first
  // add_lora(). Calling add_lora() again replaces the adapters with fresh ones (merged ones stay
  // in the weights). Unknown targets or rank <= 0 -> core::UserError.
  std::vector<std::string> add_lora(const std::vector<std::string>& targets, int64_t rank, double alpha,
                                    double dropout);
  void merge_lora();    // W += scale * B A, adapters then inactive
  void unmerge_lora();  // W -= scale * B A, adapters active again
  void remove_lora();   // drops the adapters (merged ones stay merged)

  // Activation checkpointing: in training, each block keeps only its input and recomputes its
  // activations in backward (with the same dropout masks), trading compute for memory. It applies
  // to plain forward passes (no prefix, cache or q/k/v capture); others run normally.
  void set_activation_checkpointing(bool on) { checkpointing_ = on; }
  // On the CPU, attention without ALiBi or attention dropout runs as one fused op
  // (causal_attention.h); off: the op-by-op form (scores, additive mask, softmax), for comparison
  // (bench_train_step --attention ops). Same values up to float rounding.
  void set_fused_attention(bool on) { fused_attention_ = on; }

 private:
  struct Parts;  // the submodules (registered with this module), defined in decoder.cpp
  DecoderConfig config_;
  std::shared_ptr<Parts> parts_;
  std::vector<std::pair<std::string, bool>> requires_grad_before_lora_;  // restored by remove_lora
  bool checkpointing_ = false;
  bool fused_attention_ = true;
};
TORCH_MODULE(Decoder);

}  // namespace engram::model

// The names of the choices, as model.* options and model files write them.
template <>
struct engram::core::EnumNames<engram::model::DecoderConfig::Positions> {
  using E = engram::model::DecoderConfig::Positions;
  static constexpr std::pair<E, const char*> names[] = {{E::Learned, "learned"}, {E::Alibi, "alibi"}, {E::Rope, "rope"}};
};
template <>
struct engram::core::EnumNames<engram::model::DecoderConfig::Block> {
  using E = engram::model::DecoderConfig::Block;
  static constexpr std::pair<E, const char*> names[] = {{E::Sequential, "sequential"}, {E::Parallel, "parallel"}};
};
template <>
struct engram::core::EnumNames<engram::model::DecoderConfig::Norm> {
  using E = engram::model::DecoderConfig::Norm;
  static constexpr std::pair<E, const char*> names[] = {{E::Layer, "layer"}, {E::Rms, "rms"}};
};
template <>
struct engram::core::EnumNames<engram::model::DecoderConfig::Mlp> {
  using E = engram::model::DecoderConfig::Mlp;
  static constexpr std::pair<E, const char*> names[] = {{E::Gelu, "gelu"}, {E::GeluNew, "gelu_new"}, {E::SwiGlu, "swiglu"}};
};
