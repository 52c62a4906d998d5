#include "model/t5.h"

#include <cmath>
#include <limits>

#include <torch/torch.h>

#include "core/error.h"
#include "model/activation.h"
#include "model/batched_matmul.h"

namespace engram::model {

T5Config T5Config::preset(const std::string& name) {
  T5Config c;
  if (name == "t5-small") {
    c.d_model = 512, c.d_kv = 64, c.d_ff = 2048, c.n_layers = 6, c.n_decoder_layers = 6, c.n_heads = 8;
  } else if (name == "t5-base") {
    c.d_model = 768, c.d_kv = 64, c.d_ff = 3072, c.n_layers = 12, c.n_decoder_layers = 12, c.n_heads = 12;
  } else if (name == "t5-large") {
    c.d_model = 1024, c.d_kv = 64, c.d_ff = 4096, c.n_layers = 24, c.n_decoder_layers = 24, c.n_heads = 16;
  } else if (name == "tiny") {
    c.vocab_size = 64, c.d_model = 32, c.d_kv = 8, c.d_ff = 64, c.n_layers = 2, c.n_decoder_layers = 2,
    c.n_heads = 4, c.relative_attention_num_buckets = 8, c.relative_attention_max_distance = 16, c.dropout = 0.0;
  } else {
    core::fail("unknown T5 preset '{}' (expected t5-small, t5-base, t5-large or tiny)", name);
  }
  return c;
}

void T5Config::validate() const {
  auto positive = [](const char* key, int64_t v) {
    if (v <= 0) core::fail("t5.{} must be positive, got {}", key, v);
  };
  positive("vocab_size", vocab_size);
  positive("d_model", d_model);
  positive("d_kv", d_kv);
  positive("d_ff", d_ff);
  positive("n_layers", n_layers);
  positive("n_decoder_layers", n_decoder_layers);
  positive("n_heads", n_heads);
  if (relative_attention_num_buckets < 4)
    core::fail("t5.relative_attention_num_buckets must be >= 4, got {}", relative_attention_num_buckets);
  if (relative_attention_max_distance <= relative_attention_num_buckets / 2)
    core::fail("t5.relative_attention_max_distance ({}) must exceed num_buckets / 2 ({})",
               relative_attention_max_distance, relative_attention_num_buckets / 2);
  if (!(dropout >= 0.0 && dropout < 1.0)) core::fail("t5.dropout must be in [0, 1), got {}", dropout);
  if (!(layer_norm_eps > 0.0)) core::fail("t5.layer_norm_eps must be positive, got {}", layer_norm_eps);
  if (feed_forward != "relu" && feed_forward != "gated-gelu")
    core::fail("t5.feed_forward must be relu or gated-gelu, got '{}'", feed_forward);
}

at::Tensor relative_position_bucket(const at::Tensor& relative_position, bool bidirectional, int64_t num_buckets,
                                    int64_t max_distance) {
  auto rp = relative_position.to(torch::kLong);
  auto buckets = torch::zeros_like(rp);
  if (bidirectional) {
    num_buckets /= 2;
    buckets = buckets + (rp > 0).to(torch::kLong) * num_buckets;
    rp = rp.abs();
  } else {
    rp = -torch::min(rp, torch::zeros_like(rp));
  }
  // Now rp >= 0. Half the buckets are exact, the rest logarithmic up to max_distance.
  const int64_t max_exact = num_buckets / 2;
  auto is_small = rp < max_exact;
  auto ratio = rp.to(torch::kFloat).clamp_min(1.0) / static_cast<double>(max_exact);
  auto large = max_exact + (torch::log(ratio) / std::log(static_cast<double>(max_distance) / max_exact) *
                            static_cast<double>(num_buckets - max_exact))
                               .to(torch::kLong);
  large = torch::clamp_max(large, num_buckets - 1);
  return buckets + torch::where(is_small, rp, large);
}

namespace t5_detail {

// RMS norm without mean subtraction and without bias; variance in float32 as HF.
struct LayerNormImpl : torch::nn::Module {
  LayerNormImpl(int64_t d, double eps) : eps(eps) { weight = register_parameter("weight", torch::ones({d})); }
  at::Tensor forward(const at::Tensor& x) {
    auto xf = x.to(torch::kFloat);
    auto var = xf.pow(2).mean(-1, /*keepdim=*/true);
    return weight * (xf * torch::rsqrt(var + eps)).to(weight.scalar_type());
  }
  double eps;
  at::Tensor weight;
};
TORCH_MODULE(LayerNorm);

torch::nn::Linear linear(int64_t in, int64_t out) {
  return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(false));
}

struct AttentionImpl : torch::nn::Module {
  AttentionImpl(const T5Config& c, bool has_relative_bias, bool bidirectional)
      : n_heads(c.n_heads), d_kv(c.d_kv), bidirectional(bidirectional), num_buckets(c.relative_attention_num_buckets),
        max_distance(c.relative_attention_max_distance), dropout_p(c.dropout) {
    q = register_module("q", linear(c.d_model, c.inner_dim()));
    k = register_module("k", linear(c.d_model, c.inner_dim()));
    v = register_module("v", linear(c.d_model, c.inner_dim()));
    o = register_module("o", linear(c.inner_dim(), c.d_model));
    if (has_relative_bias)
      relative_attention_bias =
          register_module("relative_attention_bias", torch::nn::Embedding(num_buckets, n_heads));
  }

  // [1, H, Tq, Tk] position bias for queries at positions [0, Tq) and keys at [0, Tk).
  at::Tensor compute_bias(int64_t query_length, int64_t key_length) {
    auto opts = torch::TensorOptions().dtype(torch::kLong).device(relative_attention_bias->weight.device());
    auto context = torch::arange(query_length, opts).unsqueeze(1);
    auto memory = torch::arange(key_length, opts).unsqueeze(0);
    auto buckets = relative_position_bucket(memory - context, bidirectional, num_buckets, max_distance);
    return relative_attention_bias->forward(buckets).permute({2, 0, 1}).unsqueeze(0);  // [1, H, Tq, Tk]
  }

  // x [B, Tq, d], kv [B, Tk, d]; bias: float32, broadcastable to [B, H, Tq, Tk], the position bias and
  // the mask in one (additive_bias; undefined: none).
  at::Tensor forward(const at::Tensor& x, const at::Tensor& kv, const at::Tensor& bias) {
    const int64_t B = x.size(0), Tq = x.size(1), Tk = kv.size(1);
    auto qh = q->forward(x).view({B, Tq, n_heads, d_kv}).transpose(1, 2);
    auto kh = k->forward(kv).view({B, Tk, n_heads, d_kv}).transpose(1, 2);
    auto vh = v->forward(kv).view({B, Tk, n_heads, d_kv}).transpose(1, 2);
    auto scores = batched_matmul(qh, kh.transpose(-1, -2));  // no 1/sqrt(d_kv) in T5
    // Masked and normalised in float32: under bf16 autocast the scores are bf16, which cannot hold
    // the mask's float lowest (and T5's softmax is float32 in the reference too).
    at::Tensor scores32 = scores.to(torch::kFloat);
    if (bias.defined()) scores32 = scores32 + bias;
    auto weights = torch::softmax(scores32, -1).to(scores.scalar_type());
    weights = torch::dropout(weights, dropout_p, is_training());
    auto out = batched_matmul(weights, vh).transpose(1, 2).reshape({B, Tq, n_heads * d_kv});
    return o->forward(out);
  }

  int64_t n_heads, d_kv;
  bool bidirectional;
  int64_t num_buckets, max_distance;
  double dropout_p;
  torch::nn::Linear q{nullptr}, k{nullptr}, v{nullptr}, o{nullptr};
  torch::nn::Embedding relative_attention_bias{nullptr};
};
TORCH_MODULE(Attention);

struct FeedForwardImpl : torch::nn::Module {
  explicit FeedForwardImpl(const T5Config& c) : gated(c.feed_forward == "gated-gelu"), dropout_p(c.dropout) {
    if (gated) {
      wi_0 = register_module("wi_0", linear(c.d_model, c.d_ff));
      wi_1 = register_module("wi_1", linear(c.d_model, c.d_ff));
    } else {
      wi = register_module("wi", linear(c.d_model, c.d_ff));
    }
    wo = register_module("wo", linear(c.d_ff, c.d_model));
  }
  at::Tensor forward(const at::Tensor& x) {
    at::Tensor h;
    if (gated)
      h = gelu_tanh(wi_0->forward(x)) * wi_1->forward(x);  // HF gated-gelu uses gelu_new
    else
      h = torch::relu(wi->forward(x));
    h = torch::dropout(h, dropout_p, is_training());
    return wo->forward(h);
  }
  bool gated;
  double dropout_p;
  torch::nn::Linear wi{nullptr}, wi_0{nullptr}, wi_1{nullptr}, wo{nullptr};
};
TORCH_MODULE(FeedForward);

struct EncoderBlockImpl : torch::nn::Module {
  EncoderBlockImpl(const T5Config& c, bool first) : dropout_p(c.dropout) {
    ln_attn = register_module("ln_attn", LayerNorm(c.d_model, c.layer_norm_eps));
    attn = register_module("attn", Attention(c, first, /*bidirectional=*/true));
    ln_ff = register_module("ln_ff", LayerNorm(c.d_model, c.layer_norm_eps));
    ff = register_module("ff", FeedForward(c));
  }
  at::Tensor forward(at::Tensor h, const at::Tensor& bias) {
    auto n = ln_attn->forward(h);
    h = h + torch::dropout(attn->forward(n, n, bias), dropout_p, is_training());
    h = h + torch::dropout(ff->forward(ln_ff->forward(h)), dropout_p, is_training());
    return h;
  }
  double dropout_p;
  LayerNorm ln_attn{nullptr}, ln_ff{nullptr};
  Attention attn{nullptr};
  FeedForward ff{nullptr};
};
TORCH_MODULE(EncoderBlock);

struct DecoderBlockImpl : torch::nn::Module {
  DecoderBlockImpl(const T5Config& c, bool first) : dropout_p(c.dropout) {
    ln_self_attn = register_module("ln_self_attn", LayerNorm(c.d_model, c.layer_norm_eps));
    self_attn = register_module("self_attn", Attention(c, first, /*bidirectional=*/false));
    ln_cross_attn = register_module("ln_cross_attn", LayerNorm(c.d_model, c.layer_norm_eps));
    cross_attn = register_module("cross_attn", Attention(c, false, /*bidirectional=*/true));
    ln_ff = register_module("ln_ff", LayerNorm(c.d_model, c.layer_norm_eps));
    ff = register_module("ff", FeedForward(c));
  }
  at::Tensor forward(at::Tensor h, const at::Tensor& self_bias, const at::Tensor& enc, const at::Tensor& cross_bias) {
    auto n = ln_self_attn->forward(h);
    h = h + torch::dropout(self_attn->forward(n, n, self_bias), dropout_p, is_training());
    n = ln_cross_attn->forward(h);
    h = h + torch::dropout(cross_attn->forward(n, enc, cross_bias), dropout_p, is_training());
    h = h + torch::dropout(ff->forward(ln_ff->forward(h)), dropout_p, is_training());
    return h;
  }
  double dropout_p;
  LayerNorm ln_self_attn{nullptr}, ln_cross_attn{nullptr}, ln_ff{nullptr};
  Attention self_attn{nullptr}, cross_attn{nullptr};
  FeedForward ff{nullptr};
};
TORCH_MODULE(DecoderBlock);

// A stack of blocks (the first one owns the relative position bias) and its final norm; the
// encoder and the decoder differ only in their block type and depth.
template <typename Block>
struct StackImpl : torch::nn::Module {
  StackImpl(const T5Config& c, int64_t layers) {
    blocks = register_module("blocks", torch::nn::ModuleList());
    for (int64_t i = 0; i < layers; ++i) {
      auto b = Block(c, i == 0);
      blocks->push_back(b);
      typed.push_back(b);
    }
    final_ln = register_module("final_ln", LayerNorm(c.d_model, c.layer_norm_eps));
  }
  torch::nn::ModuleList blocks{nullptr};
  std::vector<Block> typed;
  LayerNorm final_ln{nullptr};
};
template <typename Block>
class Stack : public torch::nn::ModuleHolder<StackImpl<Block>> {
 public:
  using torch::nn::ModuleHolder<StackImpl<Block>>::ModuleHolder;
};
using EncoderStack = Stack<EncoderBlock>;
using DecoderStack = Stack<DecoderBlock>;

}  // namespace t5_detail

struct T5Impl::Parts {
  torch::nn::Embedding shared{nullptr};
  t5_detail::EncoderStack encoder{nullptr};
  t5_detail::DecoderStack decoder{nullptr};
  torch::nn::Linear lm_head{nullptr};
};

namespace {

// [B, S] 0/1 mask -> bool [B, 1, 1, S] (undefined stays undefined).
at::Tensor key_mask(const at::Tensor& mask) {
  if (!mask.defined()) return {};
  return mask.to(torch::kBool).unsqueeze(1).unsqueeze(1);
}

// The float32 bias every layer of a stack adds to its attention scores, computed once per forward:
// the position bias (undefined: none) plus float's lowest for the keys `allowed` (bool, broadcastable;
// undefined: all) forbids. One add per layer instead of a masked_fill, whose backward cost as much.
at::Tensor additive_bias(const at::Tensor& position_bias, const at::Tensor& allowed) {
  at::Tensor bias = position_bias.defined() ? position_bias.to(torch::kFloat) : at::Tensor();
  if (!allowed.defined()) return bias;
  at::Tensor mask = torch::zeros(allowed.sizes(), torch::TensorOptions().dtype(torch::kFloat).device(allowed.device()))
                        .masked_fill_(allowed.logical_not(), std::numeric_limits<float>::lowest());
  return bias.defined() ? bias + mask : mask;
}

void check_mask(const at::Tensor& mask, int64_t B, int64_t S, const char* what) {
  if (!mask.defined()) return;
  ENGRAM_CHECK(mask.dim() == 2 && mask.size(0) == B && mask.size(1) == S, "{} must be [{}, {}], got {}", what, B, S,
               fmt::format("{}", fmt::join(mask.sizes().vec(), "x")));
}

}  // namespace

T5Impl::T5Impl(T5Config config) : config_(std::move(config)), parts_(std::make_shared<Parts>()) {
  config_.validate();
  const auto& c = config_;
  parts_->shared = register_module("shared", torch::nn::Embedding(c.vocab_size, c.d_model));
  parts_->encoder = register_module("encoder", t5_detail::EncoderStack(c, c.n_layers));
  parts_->decoder = register_module("decoder", t5_detail::DecoderStack(c, c.n_decoder_layers));
  if (!c.tie_word_embeddings) parts_->lm_head = register_module("lm_head", t5_detail::linear(c.d_model, c.vocab_size));

  // HF T5PreTrainedModel._init_weights.
  torch::NoGradGuard no_grad;
  const double f = c.initializer_factor;
  const double d = static_cast<double>(c.d_model);
  parts_->shared->weight.normal_(0.0, f);
  if (parts_->lm_head) parts_->lm_head->weight.normal_(0.0, f);
  for (auto& item : modules(/*include_self=*/false)) {
    auto* module = item.get();
    if (auto* ln = dynamic_cast<t5_detail::LayerNormImpl*>(module)) {
      ln->weight.fill_(f);
    } else if (auto* a = dynamic_cast<t5_detail::AttentionImpl*>(module)) {
      a->q->weight.normal_(0.0, f * std::pow(d * c.d_kv, -0.5));
      a->k->weight.normal_(0.0, f * std::pow(d, -0.5));
      a->v->weight.normal_(0.0, f * std::pow(d, -0.5));
      a->o->weight.normal_(0.0, f * std::pow(static_cast<double>(c.inner_dim()), -0.5));
      if (a->relative_attention_bias) a->relative_attention_bias->weight.normal_(0.0, f * std::pow(d, -0.5));
    } else if (auto* ff = dynamic_cast<t5_detail::FeedForwardImpl*>(module)) {
      for (auto* w : {&ff->wi, &ff->wi_0, &ff->wi_1})
        if (*w) (*w)->weight.normal_(0.0, f * std::pow(d, -0.5));
      ff->wo->weight.normal_(0.0, f * std::pow(static_cast<double>(c.d_ff), -0.5));
    }
  }
}

at::Tensor T5Impl::encode(const at::Tensor& input_ids, const at::Tensor& attention_mask, const at::Tensor& added_embeds) {
  ENGRAM_CHECK(input_ids.dim() == 2, "encoder input_ids must be [B, S]");
  const int64_t B = input_ids.size(0), S = input_ids.size(1);
  check_mask(attention_mask, B, S, "encoder attention_mask");
  auto& enc = parts_->encoder;
  auto h = parts_->shared->forward(input_ids.to(torch::kLong));
  if (added_embeds.defined()) {
    ENGRAM_CHECK(added_embeds.sizes() == h.sizes(), "encoder added_embeds must be [B, S, {}]", config_.d_model);
    h = h + added_embeds.to(h.scalar_type());
  }
  h = torch::dropout(h, config_.dropout, is_training());
  auto bias = additive_bias(enc->typed[0]->attn->compute_bias(S, S), key_mask(attention_mask));
  for (auto& block : enc->typed) h = block->forward(h, bias);
  return torch::dropout(enc->final_ln->forward(h), config_.dropout, is_training());
}

at::Tensor T5Impl::decode(const at::Tensor& decoder_inputs_embeds, const at::Tensor& encoder_states,
                          const at::Tensor& encoder_mask, const at::Tensor& decoder_mask) {
  ENGRAM_CHECK(decoder_inputs_embeds.dim() == 3 && decoder_inputs_embeds.size(2) == config_.d_model,
               "decoder_inputs_embeds must be [B, T, {}]", config_.d_model);
  ENGRAM_CHECK(encoder_states.dim() == 3 && encoder_states.size(0) == decoder_inputs_embeds.size(0) &&
                   encoder_states.size(2) == config_.d_model,
               "encoder_states must be [B, S, {}] with the decoder's batch", config_.d_model);
  const int64_t B = decoder_inputs_embeds.size(0), T = decoder_inputs_embeds.size(1), S = encoder_states.size(1);
  check_mask(encoder_mask, B, S, "encoder_mask");
  check_mask(decoder_mask, B, T, "decoder_mask");
  auto& dec = parts_->decoder;
  auto h = torch::dropout(decoder_inputs_embeds, config_.dropout, is_training());
  auto causal = torch::ones({T, T}, torch::TensorOptions().dtype(torch::kBool).device(h.device())).tril().view({1, 1, T, T});
  auto self_allowed = decoder_mask.defined() ? causal.logical_and(key_mask(decoder_mask)) : causal;
  auto self_bias = additive_bias(dec->typed[0]->self_attn->compute_bias(T, T), self_allowed);
  auto cross_bias = additive_bias({}, key_mask(encoder_mask));  // undefined: the MAC quirk, pads are attended
  for (auto& block : dec->typed) h = block->forward(h, self_bias, encoder_states, cross_bias);
  return torch::dropout(dec->final_ln->forward(h), config_.dropout, is_training());
}

at::Tensor T5Impl::decode_ids(const at::Tensor& decoder_input_ids, const at::Tensor& encoder_states,
                              const at::Tensor& encoder_mask, const at::Tensor& decoder_mask) {
  ENGRAM_CHECK(decoder_input_ids.dim() == 2, "decoder_input_ids must be [B, T]");
  return decode(parts_->shared->forward(decoder_input_ids.to(torch::kLong)), encoder_states, encoder_mask,
                decoder_mask);
}

at::Tensor T5Impl::lm_logits(const at::Tensor& decoder_hidden) {
  if (config_.tie_word_embeddings)
    return torch::matmul(decoder_hidden * std::pow(static_cast<double>(config_.d_model), -0.5),
                         parts_->shared->weight.t());
  return parts_->lm_head->forward(decoder_hidden);
}

at::Tensor T5Impl::forward(const at::Tensor& input_ids, const at::Tensor& attention_mask,
                           const at::Tensor& decoder_input_ids, const at::Tensor& decoder_mask) {
  auto enc = encode(input_ids, attention_mask);
  return lm_logits(decode_ids(decoder_input_ids, enc, attention_mask, decoder_mask));
}

int64_t T5Impl::num_parameters(bool trainable_only) const {
  int64_t n = 0;
  for (const auto& p : parameters())
    if (!trainable_only || p.requires_grad()) n += p.numel();
  return n;
}

}  // namespace engram::model
