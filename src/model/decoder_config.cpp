// DecoderConfig: the presets (gpt2, alibi-parallel, llama) and the validation of a config.
#include "model/decoder.h"

#include <algorithm>
#include <string>
#include <vector>

#include "core/error.h"

namespace engram::model {

DecoderConfig DecoderConfig::preset(const std::string& name) { return preset(name, DecoderConfig{}); }

DecoderConfig DecoderConfig::preset(const std::string& name, DecoderConfig sizes) {
  DecoderConfig c = sizes;  // sizes, dropout, init_std and rope_theta keep their values
  if (name == "gpt2" || name == "custom") {
    c.positions = DecoderConfig::Positions::Learned;
    c.block = DecoderConfig::Block::Sequential;
    c.norm = DecoderConfig::Norm::Layer;
    c.mlp = DecoderConfig::Mlp::GeluNew;
    c.bias = true;
    c.mlp_bias = -1;
    c.tied_head = true;
    c.head_bias = false;
    c.norm_eps = 1e-5;
  } else if (name == "alibi-parallel") {
    c.positions = DecoderConfig::Positions::Alibi;
    c.block = DecoderConfig::Block::Parallel;
    c.norm = DecoderConfig::Norm::Layer;
    c.mlp = DecoderConfig::Mlp::GeluNew;
    c.bias = false;  // q/k/v/o without biases
    c.mlp_bias = 1;  // fc_in / fc_out with biases
    c.tied_head = false;
    c.head_bias = true;
    c.norm_eps = 1e-6;
  } else if (name == "llama") {
    c.positions = DecoderConfig::Positions::Rope;
    c.block = DecoderConfig::Block::Sequential;
    c.norm = DecoderConfig::Norm::Rms;
    c.mlp = DecoderConfig::Mlp::SwiGlu;
    c.bias = false;
    c.mlp_bias = -1;
    c.tied_head = false;
    c.head_bias = false;
    c.norm_eps = 1e-5;
  } else {
    core::fail("model.preset: unknown preset '{}' (expected gpt2, alibi-parallel, llama or custom)",
               name);
  }
  return c;
}


double DecoderConfig::min_weight_count() const {
  const double d = d_model, mlp_matrices = mlp == Mlp::SwiGlu ? 3 : 2;
  const double per_layer = 4 * d * d + mlp_matrices * d * static_cast<double>(d_ff);
  const double table = positions == Positions::Learned ? static_cast<double>(max_positions) * d : 0;
  const double head = tied_head ? 0 : static_cast<double>(vocab_size) * d;
  return static_cast<double>(vocab_size) * d + table + static_cast<double>(n_layers) * per_layer + head;
}

void check_sizes_fit(double needed, int64_t values, const std::string& sizes, const std::string& sizes_from,
                     const std::string& weights_file) {
  if (needed <= 2.0 * static_cast<double>(values)) return;
  core::fail("{}: its sizes ({}) need at least {:.4g} weights, but {} holds only {} values: they do not describe "
             "these weights", sizes_from, sizes, needed, weights_file, values);
}

void DecoderConfig::check_fits(int64_t values, const std::string& sizes_from, const std::string& weights_file) const {
  const std::string table = positions == Positions::Learned ? fmt::format(", {} positions", max_positions) : "";
  check_sizes_fit(min_weight_count(), values,
                  fmt::format("vocab {}, d_model {}, {} layers, d_ff {}{}", vocab_size, d_model, n_layers, d_ff, table),
                  sizes_from, weights_file);
}

void DecoderConfig::validate() const {
  if (vocab_size <= 0) core::fail("model.vocab_size: must be positive, got {}", vocab_size);
  if (d_model <= 0) core::fail("model.d_model: must be positive, got {}", d_model);
  if (n_layers <= 0) core::fail("model.n_layers: must be positive, got {}", n_layers);
  if (n_heads <= 0) core::fail("model.n_heads: must be positive, got {}", n_heads);
  if (d_model % n_heads != 0)
    core::fail("model.n_heads: d_model {} is not divisible by {} heads", d_model, n_heads);
  if (d_ff <= 0) core::fail("model.d_ff: must be positive, got {}", d_ff);
  if (positions == DecoderConfig::Positions::Learned && max_positions <= 0)
    core::fail("model.max_positions: must be positive with learned positions, got {}",
               max_positions);
  if (positions == DecoderConfig::Positions::Rope && head_dim() % 2 != 0)
    core::fail("model.n_heads: rope needs an even head size, got d_model {} / {} heads = {}",
               d_model, n_heads, head_dim());
  if (!(dropout >= 0.0 && dropout < 1.0))
    core::fail("model.dropout: must be in [0, 1), got {}", dropout);
  if (!(norm_eps > 0.0)) core::fail("model.norm_eps: must be positive, got {}", norm_eps);
  if (!(rope_theta > 0.0)) core::fail("model.rope_theta: must be positive, got {}", rope_theta);
  if (!(init_std > 0.0)) core::fail("model.init_std: must be positive, got {}", init_std);
  if (head_bias && tied_head)
    core::fail("model.head_bias: a head bias needs an untied head (model.tied_head: false)");
}

}  // namespace engram::model
