// model.* options: a preset, the sizes, and per-field overrides of the preset.
#include "config/config.h"
#include "core/error.h"
#include "model/decoder.h"

namespace engram::model {

void declare_model_options(config::Schema& schema) {
  schema.add_string("model.preset", "gpt2",
                    "architecture preset: gpt2 (learned positions, sequential pre-LN blocks, "
                    "LayerNorm, gelu_new, biases, tied head), alibi-parallel (the LongMem "
                    "backbone: ALiBi, parallel blocks, LayerNorm eps 1e-6, no attention biases, "
                    "untied head with bias), llama (RoPE, RMSNorm, SwiGLU, no biases, untied "
                    "head) or custom (the gpt2 layout, meant to be overridden field by field); "
                    "model.positions/block/norm/mlp/bias/tied_head/... set explicitly override it",
                    {"gpt2", "alibi-parallel", "llama", "custom"});
  schema.add_int("model.vocab_size", 0, "vocabulary size; 0 = take the tokenizer's", config::Range::at_least(0));
  schema.add_int("model.d_model", 128, "hidden size (divisible by model.n_heads)", config::Range::at_least(1));
  schema.add_int("model.n_layers", 2, "number of transformer blocks", config::Range::at_least(1));
  schema.add_int("model.n_heads", 4, "attention heads per block", config::Range::at_least(1));
  schema.add_int("model.d_ff", 512, "MLP hidden size", config::Range::at_least(1));
  schema.add_int("model.max_positions", 512,
                 "size of the learned position table (positions: learned); prefix + context "
                 "tokens must fit in it", config::Range::at_least(1));
  schema.add_string("model.positions", "learned",
                    "position encoding, overrides the preset: learned (table), alibi (linear "
                    "attention biases), rope (rotary)",
                    core::enum_choices<DecoderConfig::Positions>());
  schema.add_string("model.block", "sequential",
                    "block layout, overrides the preset: sequential (x += attn(ln1 x); x += "
                    "mlp(ln2 x)) or parallel (x += attn(ln1 x) + mlp(ln1 x))",
                    core::enum_choices<DecoderConfig::Block>());
  schema.add_string("model.norm", "layer", "normalisation, overrides the preset: layer or rms",
                    core::enum_choices<DecoderConfig::Norm>());
  schema.add_string("model.mlp", "gelu_new",
                    "MLP, overrides the preset: gelu (erf), gelu_new (tanh approximation) or "
                    "swiglu (down(silu(gate x) * up x))",
                    core::enum_choices<DecoderConfig::Mlp>());
  schema.add_bool("model.bias", true,
                  "biases in the attention and MLP linears, overrides the preset");
  schema.add_bool("model.tied_head", true,
                  "output logits use the token embedding (h wte^T), overrides the preset");
  schema.add_bool("model.head_bias", false,
                  "untied output head with a bias, overrides the preset");
  schema.add_float("model.norm_eps", 1e-5, "epsilon of the norms, overrides the preset", config::Range::at_least(0));
  schema.add_float("model.rope_theta", 10000.0, "RoPE base (positions: rope)", config::Range::at_least(1));
  schema.add_float("model.dropout", 0.0,
                   "dropout of embeddings, attention probabilities and residual branches "
                   "(training only)", config::Range::below(0, 1));
  schema.add_float("model.init_std", 0.02,
                   "std of the N(0, std) init of linears and embeddings (attn.o and mlp.down: "
                   "std / sqrt(2 n_layers))", config::Range::at_least(0));
}

DecoderConfig decoder_config_from(const config::Config& config) {
  auto is_set = [&](const char* name) { return config.source_of(name) != "default"; };
  DecoderConfig sizes;
  sizes.vocab_size = config.get_int("model.vocab_size");
  sizes.d_model = config.get_int("model.d_model");
  sizes.n_layers = config.get_int("model.n_layers");
  sizes.n_heads = config.get_int("model.n_heads");
  sizes.d_ff = config.get_int("model.d_ff");
  sizes.max_positions = config.get_int("model.max_positions");
  sizes.dropout = config.get_float("model.dropout");
  sizes.init_std = config.get_float("model.init_std");
  sizes.rope_theta = config.get_float("model.rope_theta");
  if (sizes.vocab_size < 0)
    core::fail("model.vocab_size: must be positive (or 0 = the tokenizer's), got {}",
               sizes.vocab_size);

  DecoderConfig c = DecoderConfig::preset(config.get_string("model.preset"), sizes);
  if (is_set("model.positions"))
    c.positions = core::parse_enum<DecoderConfig::Positions>(config.get_string("model.positions"), "model.positions");
  if (is_set("model.block"))
    c.block = core::parse_enum<DecoderConfig::Block>(config.get_string("model.block"), "model.block");
  if (is_set("model.norm")) c.norm = core::parse_enum<DecoderConfig::Norm>(config.get_string("model.norm"), "model.norm");
  if (is_set("model.mlp")) c.mlp = core::parse_enum<DecoderConfig::Mlp>(config.get_string("model.mlp"), "model.mlp");
  if (is_set("model.bias")) {
    c.bias = config.get_bool("model.bias");
    c.mlp_bias = -1;  // an explicit model.bias covers the MLP too
  }
  if (is_set("model.tied_head")) c.tied_head = config.get_bool("model.tied_head");
  if (is_set("model.head_bias")) c.head_bias = config.get_bool("model.head_bias");
  if (is_set("model.norm_eps")) c.norm_eps = config.get_float("model.norm_eps");
  if (c.tied_head) c.head_bias = false;  // only meaningful with an untied head
  if (is_set("model.head_bias") && config.get_bool("model.head_bias") && c.tied_head)
    core::fail("model.head_bias: a head bias needs an untied head (model.tied_head: false)");
  // Validate everything but the vocabulary, which may still come from the tokenizer.
  DecoderConfig check = c;
  if (check.vocab_size == 0) check.vocab_size = 1;
  check.validate();
  return c;
}

}  // namespace engram::model
