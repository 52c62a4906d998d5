#include "methods/mac/modules.h"

#include <cmath>
#include <cstring>

#include <fmt/format.h>
#include <torch/torch.h>

#include "core/error.h"
#include "model/batched_matmul.h"

namespace engram::mac {

void MacConfig::validate() const {
  auto positive = [](const char* key, int64_t v) {
    if (v <= 0) core::fail("mac.{} must be positive, got {}", key, v);
  };
  positive("summary_tokens", T);
  positive("prefix_tokens", P);
  positive("aggregator.blocks", aggregator_blocks);
  positive("aggregator.heads", aggregator_heads);
  positive("aggregator.head_dim", aggregator_head_dim);
  positive("slot_hidden", slot_hidden);
  if (aggregator_ff < 0) core::fail("mac.aggregator.ff must be >= 0 (0 = automatic), got {}", aggregator_ff);
  if (!(prefix_scale > 0)) core::fail("mac.prefix_scale must be positive, got {}", prefix_scale);
  if (retrieval_dim < 0) core::fail("mac.retriever.dim must be >= 0 (0 = no retriever), got {}", retrieval_dim);
  if (retrieval_keys != "summary" && retrieval_keys != "tokens")
    core::fail("mac.retriever.keys must be summary or tokens, got '{}'", retrieval_keys);
  if (retrieval_keys == "tokens" && retrieval_dim == 0)
    core::fail("mac.retriever.keys: tokens needs a retriever: set mac.retriever.dim > 0");
  ENGRAM_CHECK(retrieval_keys != "tokens" || retrieval_vocab > 0, "MacConfig: the token keys' vocabulary is not set");
  if (!(slot_dropout >= 0 && slot_dropout < 1)) core::fail("mac.slot_dropout must be in [0, 1), got {}", slot_dropout);
  ENGRAM_CHECK(d > 0 && L > 0 && H > 0 && d % H == 0, "MacConfig: base LM shape not set");
  if (slots() < T)
    core::fail("mac.summary_tokens ({}) must not exceed the {} prefix slots it expands to ({}prefix_tokens x layers)", T,
               slots(), prefix_via == PrefixVia::Lm ? "" : "2 x ");
  if (read_with_lm && (read_layer < 0 || read_layer > L))
    core::fail("mac.read_layer must be in [0, {}] (0 = token embeddings, l = after block l), got {}", L, read_layer);
  if (read_with_lm && (amortizer.d_model != d || question.d_model != d))
    core::fail("mac.read_with_lm: mac.amortizer.d_model ({}) and mac.question.d_model ({}) must equal the base LM's "
               "width {}", amortizer.d_model, question.d_model, d);
  amortizer.validate();
  question.validate();
}

namespace {

// torch.nn.Linear's default init, for stacked per-token weights [tokens, in, out].
at::Tensor linear_weights(int64_t tokens, int64_t in, int64_t out) {
  const double bound = 1.0 / std::sqrt(static_cast<double>(in));
  return torch::empty({tokens, in, out}).uniform_(-bound, bound);
}
at::Tensor linear_biases(int64_t tokens, int64_t in, int64_t out) {
  const double bound = 1.0 / std::sqrt(static_cast<double>(in));
  return torch::empty({tokens, out}).uniform_(-bound, bound);
}

// x [B, n, in] times per-position weights w [n, in, out] -> [B, n, out]: one batched matmul
// over positions.
at::Tensor per_position(const at::Tensor& x, const at::Tensor& w) {
  return model::batched_matmul(x.transpose(0, 1), w).transpose(0, 1);
}

// LayerNorm over the last dim with per-position affine weights [n, dim].
at::Tensor per_position_norm(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  return torch::layer_norm(x, {x.size(-1)}) * weight + bias;
}

}  // namespace

TokenMlpsImpl::TokenMlpsImpl(int64_t tokens, int64_t d_in, int64_t d_out)
    : tokens_(tokens), d_in_(d_in), d_out_(d_out) {
  ln_weight_ = register_parameter("ln_weight", torch::ones({tokens, d_in}));
  ln_bias_ = register_parameter("ln_bias", torch::zeros({tokens, d_in}));
  w1_ = register_parameter("fc1_weight", linear_weights(tokens, d_in, d_out));
  b1_ = register_parameter("fc1_bias", linear_biases(tokens, d_in, d_out));
  w2_ = register_parameter("fc2_weight", linear_weights(tokens, d_out, d_out));
  b2_ = register_parameter("fc2_bias", linear_biases(tokens, d_out, d_out));
  if (d_in != d_out) {
    skip_weight_ = register_parameter("skip_weight", linear_weights(tokens, d_in, d_out));
    skip_bias_ = register_parameter("skip_bias", linear_biases(tokens, d_in, d_out));
  }
}

at::Tensor TokenMlpsImpl::forward(const at::Tensor& x) {
  ENGRAM_CHECK(x.dim() == 3 && x.size(1) == tokens_ && x.size(2) == d_in_, "TokenMlps: bad input shape");
  at::Tensor h = torch::tanh(per_position(per_position_norm(x, ln_weight_, ln_bias_), w1_) + b1_);
  at::Tensor y = per_position(h, w2_) + b2_;
  at::Tensor skip = skip_weight_.defined() ? per_position(x, skip_weight_) + skip_bias_ : x;
  return skip + y;
}

ContextEncoderImpl::ContextEncoderImpl(const model::T5Config& t5, int64_t T, int64_t d, bool mask_encoder_padding)
    : mask_encoder_padding_(mask_encoder_padding) {
  t5_ = register_module("t5", model::T5(t5));
  queries_ = register_parameter("queries", torch::randn({T, t5.d_model}) * 0.02);
  mlps_ = register_module("mlps", TokenMlps(T, t5.d_model, d));
}

at::Tensor ContextEncoderImpl::forward(const at::Tensor& ids, const at::Tensor& mask, const at::Tensor& features) {
  at::Tensor states = t5_->encode(ids, mask, features);
  at::Tensor queries = queries_.unsqueeze(0).expand({ids.size(0), queries_.size(0), queries_.size(1)});
  at::Tensor hidden = t5_->decode(queries, states, mask_encoder_padding_ ? mask : at::Tensor());
  return mlps_(hidden);
}

// One pre-LN cross-attention block (registered as blocks.<i>.<part>).
struct AggregatorImpl::Block : torch::nn::Module {
  Block(const MacConfig& c, int64_t inner, int64_t ff) {
    auto layer_norm = [&](const char* name) {
      return register_module(name, torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.d})));
    };
    auto linear = [&](const char* name, int64_t in, int64_t out, bool bias) {
      return register_module(name, torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(bias)));
    };
    ln_z = layer_norm("ln_z");
    ln_memory = layer_norm("ln_memory");
    to_q = linear("to_q", c.d, inner, false);
    to_k = linear("to_k", c.d, inner, false);
    to_v = linear("to_v", c.d, inner, false);
    to_out = linear("to_out", inner, c.d, true);
    ln_ff = layer_norm("ln_ff");
    ff_in = linear("ff_in", c.d, ff, true);
    ff_out = linear("ff_out", ff, c.d, true);
  }
  torch::nn::LayerNorm ln_z{nullptr}, ln_memory{nullptr}, ln_ff{nullptr};
  torch::nn::Linear to_q{nullptr}, to_k{nullptr}, to_v{nullptr}, to_out{nullptr}, ff_in{nullptr}, ff_out{nullptr};
};

AggregatorImpl::AggregatorImpl(const MacConfig& c) : heads_(c.aggregator_heads), head_dim_(c.aggregator_head_dim) {
  const int64_t inner = heads_ * head_dim_;
  const int64_t ff = c.aggregator_ff > 0 ? c.aggregator_ff : (c.d > 768 ? 768 : c.d);
  torch::nn::ModuleList list;
  for (int64_t i = 0; i < c.aggregator_blocks; ++i) {
    auto block = std::make_shared<Block>(c, inner, ff);
    list->push_back(block);
    blocks_.push_back(block);
  }
  register_module("blocks", list);
}

at::Tensor AggregatorImpl::forward(const at::Tensor& z_in, const at::Tensor& memory, const at::Tensor& memory_mask,
                                   std::vector<at::Tensor>* attention) {
  ENGRAM_CHECK(z_in.dim() >= 2 && memory.dim() == z_in.dim() && z_in.size(-1) == memory.size(-1),
               "Aggregator: bad shapes");
  const int64_t n = z_in.dim(), T = z_in.size(-2);
  // A memory shared by every question (leading size 1) is not copied per question: the questions
  // are folded into the query rows, [Bq, ..., T, .] -> [1, ..., Bq T, .], so each key and value
  // is computed and multiplied once for all of them.
  const bool fold = memory.size(0) == 1 && z_in.size(0) > 1;
  const int64_t Bq = z_in.size(0);
  auto fold_rows = [&](const at::Tensor& x) {  // [Bq, a.., T, c] -> [1, a.., Bq T, c]
    auto moved = x.movedim(0, n - 3);          // [a.., Bq, T, c]
    auto sizes = moved.sizes().vec();
    sizes.erase(sizes.end() - 3, sizes.end());
    sizes.push_back(Bq * T);
    sizes.push_back(x.size(-1));
    return moved.reshape(sizes).unsqueeze(0);
  };
  auto unfold_rows = [&](const at::Tensor& x) {  // [1, a.., Bq T, c] -> [Bq, a.., T, c]
    auto sizes = x.squeeze(0).sizes().vec();
    const int64_t c = sizes.back();
    sizes.erase(sizes.end() - 2, sizes.end());
    sizes.push_back(Bq);
    sizes.push_back(T);
    sizes.push_back(c);
    return x.squeeze(0).reshape(sizes).movedim(n - 3, 0);
  };
  // [..., X, inner] -> [..., H, X, hd]
  auto split_heads = [&](const at::Tensor& x) {
    auto sizes = x.sizes().vec();
    sizes.back() = heads_;
    sizes.push_back(head_dim_);
    return x.view(sizes).transpose(-2, -3);
  };
  at::Tensor blocked;  // true where a memory token must get no weight, shaped like the scores
  if (memory_mask.defined()) {
    blocked = memory_mask == 0;                             // [B, .., S]
    if (fold && blocked.size(0) > 1) {                      // per question: into the rows
      blocked = blocked.movedim(0, n - 3).unsqueeze(-2);    // [.., Bq, 1, S]
      auto sizes = blocked.sizes().vec();
      sizes[sizes.size() - 2] = T;
      blocked = blocked.expand(sizes);                      // [.., Bq, T, S]
      sizes = blocked.sizes().vec();
      sizes.erase(sizes.end() - 3, sizes.end());
      sizes.push_back(Bq * T);
      sizes.push_back(memory_mask.size(-1));
      blocked = blocked.reshape(sizes).unsqueeze(-3).unsqueeze(0);  // [1, .., 1, Bq T, S]
    } else {
      blocked = blocked.unsqueeze(-2).unsqueeze(-2);        // [B, .., 1, 1, S]
    }
  }
  const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim_));
  at::Tensor z = z_in;
  for (const auto& b : blocks_) {
    at::Tensor context = b->ln_memory(memory);
    at::Tensor queries = b->to_q(b->ln_z(z));
    at::Tensor q = split_heads(fold ? fold_rows(queries) : queries);
    at::Tensor k = split_heads(b->to_k(context));
    at::Tensor v = split_heads(b->to_v(context));
    at::Tensor scores = model::batched_matmul(q, k.transpose(-1, -2)) * scale;  // [..., H, rows, S]
    // A large finite value rather than -inf: a fully masked row stays finite (see header).
    if (blocked.defined()) scores = scores.masked_fill(blocked, -1e9);
    at::Tensor weights = torch::softmax(scores, -1);
    if (attention) {  // [Bq, .., H, T, S]; folded: [1, .., H, Bq T, S] -> [.., H, Bq, T, S] -> [Bq, .., H, T, S]
      if (fold) {
        auto sizes = weights.squeeze(0).sizes().vec();
        sizes.erase(sizes.end() - 2);
        sizes.insert(sizes.end() - 1, {Bq, T});
        attention->push_back(weights.squeeze(0).reshape(sizes).movedim(-3, 0));
      } else {
        attention->push_back(weights);
      }
    }
    at::Tensor attended = model::batched_matmul(weights, v).transpose(-2, -3);  // [..., rows, H, hd]
    auto sizes = attended.sizes().vec();
    sizes.pop_back();
    sizes.back() = heads_ * head_dim_;
    attended = attended.reshape(sizes);
    z = z + b->to_out(fold ? unfold_rows(attended) : attended);
    z = z + b->ff_out(torch::gelu(b->ff_in(b->ln_ff(z))));
  }
  return z;
}

at::Tensor AggregatorImpl::selection_scores(const at::Tensor& z, const at::Tensor& entries) {
  ENGRAM_CHECK(z.dim() == 3 && entries.dim() == 4 && z.size(-1) == entries.size(-1) &&
                   (entries.size(0) == 1 || entries.size(0) == z.size(0)),
               "Aggregator::selection_scores: z [Bq, T, d] with entries [1 or Bq, N, S, d]");
  const auto& b = blocks_.front();
  const int64_t Bq = z.size(0), T = z.size(1), Bm = entries.size(0), N = entries.size(1), S = entries.size(2);
  at::Tensor q = b->to_q(b->ln_z(z)).view({Bq, T, heads_, head_dim_});                     // [Bq, T, H, hd]
  at::Tensor k = b->to_k(b->ln_memory(entries)).view({Bm, N, S, heads_, head_dim_});       // [Bm, N, S, H, hd]
  const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim_));
  at::Tensor logits = Bm == 1 ? torch::einsum("bthe,nshe->bnhts", {q, k[0]})                // [Bq, N, H, T, S]
                              : torch::einsum("bthe,bnshe->bnhts", {q, k});
  return torch::logsumexp(logits * scale, -1).mean({2, 3});
}

PrefixHeadImpl::PrefixHeadImpl(const MacConfig& c)
    : T_(c.T), P_(c.P), L_(c.L), H_(c.H), d_(c.d), hidden_(c.slot_hidden), scale_(c.prefix_scale), dropout_(c.slot_dropout) {
  const int64_t n = c.slots();
  // Slot j reads latent token source[j]: the first n mod T tokens n div T + 1 times, then the
  // rest n div T times, each token's copies next to each other.
  std::vector<int64_t> source;
  for (int64_t t = 0; t < T_; ++t)
    for (int64_t r = 0; r < n / T_ + (t < n % T_ ? 1 : 0); ++r) source.push_back(t);
  slot_source_ = register_buffer("source", torch::tensor(source, torch::kInt64));
  ln_weight_ = register_parameter("ln_weight", torch::ones({n, d_}));
  ln_bias_ = register_parameter("ln_bias", torch::zeros({n, d_}));
  w1_ = register_parameter("fc1_weight", linear_weights(n, d_, hidden_));
  b1_ = register_parameter("fc1_bias", linear_biases(n, d_, hidden_));
  w2_ = register_parameter("fc2_weight", linear_weights(n, hidden_, d_));
  b2_ = register_parameter("fc2_bias", linear_biases(n, hidden_, d_));
}

at::Tensor PrefixHeadImpl::slots(const at::Tensor& latent) {
  ENGRAM_CHECK(latent.dim() == 3 && latent.size(1) == T_ && latent.size(2) == d_, "PrefixHead: bad latent shape");
  at::Tensor x = latent.index_select(1, slot_source_);  // [B, n, d]
  at::Tensor h = torch::gelu(per_position(per_position_norm(x, ln_weight_, ln_bias_), w1_) + b1_);
  if (dropout_ > 0) h = torch::dropout(h, dropout_, is_training());
  return x + per_position(h, w2_) + b2_;
}

model::Prefix PrefixHeadImpl::forward(const at::Tensor& latent) {
  at::Tensor y = slots(latent);
  if (scale_ != 1.0) y = y * scale_;
  const int64_t B = y.size(0);
  at::Tensor kv = y.view({B, P_, 2 * L_, H_, d_ / H_}).permute({2, 0, 3, 1, 4});  // [2L, B, H, P, hd]
  model::Prefix prefix;
  for (int64_t l = 0; l < L_; ++l) {
    prefix.keys.push_back(kv[2 * l]);
    prefix.values.push_back(kv[2 * l + 1]);
  }
  return prefix;
}

RetrieverImpl::Side RetrieverImpl::make_side(const std::string& name, int64_t in, int64_t out) {
  const double bound = 1.0 / std::sqrt(static_cast<double>(in));  // torch.nn.Linear's init
  return Side{register_parameter(name + "_norm_weight", torch::ones({in})),
              register_parameter(name + "_norm_bias", torch::zeros({in})),
              register_parameter(name + "_weight", torch::empty({out, in}).uniform_(-bound, bound)),
              register_parameter(name + "_bias", torch::empty({out}).uniform_(-bound, bound))};
}

RetrieverImpl::RetrieverImpl(const MacConfig& c)
    : document_(make_side("document", c.T * c.d, c.retrieval_dim)),
      question_(make_side("question", c.T * c.d, c.retrieval_dim)) {}

at::Tensor RetrieverImpl::key(const Side& side, const at::Tensor& x) {
  ENGRAM_CHECK(x.dim() == 3, "Retriever: inputs must be [N, T, d]");
  auto keys_of = [&](const at::Tensor& rows) {
    at::Tensor flat = rows.flatten(1);
    at::Tensor normed = torch::layer_norm(flat, {flat.size(1)}, side.norm_weight, side.norm_bias);
    return torch::nn::functional::normalize(torch::linear(normed, side.weight, side.bias),
                                            torch::nn::functional::NormalizeFuncOptions().dim(1));
  };
  // In chunks of rows: the normalised copy of a whole bank would be as large as the bank.
  constexpr int64_t kRows = 4096;
  if (x.size(0) <= kRows) return keys_of(x);
  std::vector<at::Tensor> keys;
  for (int64_t begin = 0; begin < x.size(0); begin += kRows)
    keys.push_back(keys_of(x.narrow(0, begin, std::min(kRows, x.size(0) - begin))));
  return torch::cat(keys, 0);
}

at::Tensor RetrieverImpl::document_keys(const at::Tensor& summaries) { return key(document_, summaries); }
at::Tensor RetrieverImpl::question_keys(const at::Tensor& z0) { return key(question_, z0); }

MacModelImpl::MacModelImpl(const MacConfig& config) : config_(config) {
  config_.validate();
  amortizer_ = register_module(
      "amortizer", ContextEncoder(config_.amortizer, config_.T, config_.d, config_.mask_encoder_padding));
  question_encoder_ = register_module(
      "question_encoder", ContextEncoder(config_.question, config_.T, config_.d, config_.mask_encoder_padding));
  aggregator_ = register_module("aggregator", Aggregator(config_));
  prefix_head_ = register_module("prefix", PrefixHead(config_));
  if (config_.retrieval_dim > 0) retriever_ = register_module("retriever", Retriever(config_));
  if (config_.retrieval_keys == "tokens")
    token_keys_ = register_module("token_keys", TokenKeys(config_.retrieval_vocab, config_.retrieval_dim));
}

TokenKeys& MacModelImpl::token_keys() {
  if (token_keys_.is_empty()) core::fail("this MAC model has no token keys: train it with mac.retriever.keys: tokens");
  return token_keys_;
}

Retriever& MacModelImpl::retriever() {
  if (retriever_.is_empty())
    core::fail("this MAC model has no retriever: train it with mac.retriever.dim > 0 to answer with mac.retriever.top_k");
  return retriever_;
}

model::Prefix MacModelImpl::prefix(const at::Tensor& latent) {
  if (config_.prefix_via != MacConfig::PrefixVia::Lm) return prefix_head_(latent);
  ENGRAM_CHECK(!lm_.is_empty(), "MacModel: prefix_via lm needs attach_lm() first");
  at::Tensor y = prefix_head_->slots(latent);  // [B, P L, d], slot j = p L + l
  if (config_.prefix_scale != 1.0) y = y * config_.prefix_scale;
  at::Tensor states = y.view({y.size(0), config_.P, config_.L, config_.d});
  std::vector<at::Tensor> per_layer;
  for (int64_t l = 0; l < config_.L; ++l) per_layer.push_back(states.select(2, l));
  return lm_->prefix_from_states(per_layer);
}

at::Tensor MacModelImpl::lm_features(const at::Tensor& ids, const at::Tensor& mask) {
  if (!config_.read_with_lm) return {};
  ENGRAM_CHECK(!lm_.is_empty(), "MacModel: read_with_lm needs attach_lm() first");
  torch::NoGradGuard no_grad;
  model::ForwardOptions options;
  options.attention_mask = mask;
  options.output_hidden_states = true;
  options.stop_at_hidden_state = static_cast<int>(config_.read_layer);  // the blocks above are not needed
  return lm_->forward(ids, options).hidden_states[static_cast<size_t>(config_.read_layer)];
}

std::string MacModelImpl::amortizer_fingerprint() const {
  // FNV-1a over the shape of the summaries and every amortizer weight's bytes, in order.
  uint64_t hash = 1469598103934665603ULL;
  auto mix = [&](const void* data, size_t bytes) {
    const auto* p = static_cast<const unsigned char*>(data);
    for (size_t i = 0; i < bytes; ++i) hash = (hash ^ p[i]) * 1099511628211ULL;
  };
  const int64_t shape[5] = {config_.T, config_.d, config_.mask_encoder_padding ? 1 : 0, config_.read_with_lm ? 1 : 0,
                            config_.read_layer};
  auto mix_weights = [&](const torch::nn::Module& module) {
    for (const auto& item : module.named_parameters()) {
      mix(item.key().data(), item.key().size());
      at::Tensor w = item.value().detach().to(torch::kFloat32).contiguous();
      mix(w.data_ptr(), static_cast<size_t>(w.numel()) * sizeof(float));
    }
  };
  mix(shape, sizeof(shape));
  mix_weights(*amortizer_);
  if (!token_keys_.is_empty()) mix_weights(*token_keys_);  // the bank stores their document keys too
  // Summaries read with the LM change with the LM: its weights are part of the amortizer then.
  if (config_.read_with_lm && !lm_.is_empty()) mix_weights(*lm_);
  return fmt::format("{:016x}", hash);
}

int64_t MacModelImpl::num_parameters() const {
  int64_t n = 0;
  for (const auto& p : parameters()) n += p.numel();
  return n;
}

}  // namespace engram::mac
