// Decoder: parameter names, causality, KV cache, padding, prefix, ALiBi, RoPE, norms/MLPs, and
// a reference implementation written with explicit loops (per row, head, query and key) that
// the vectorised forward is compared against.
#include <cmath>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "config/config.h"
#include "core/error.h"
#include "model/activation.h"
#include "model/decoder.h"
#include "model/linear.h"

namespace engram::model {
namespace {

DecoderConfig small(const std::string& preset, int64_t V = 23, int64_t d = 16, int64_t L = 2,
                    int64_t H = 2, int64_t ff = 32) {
  DecoderConfig sizes;
  sizes.vocab_size = V;
  sizes.d_model = d;
  sizes.n_layers = L;
  sizes.n_heads = H;
  sizes.d_ff = ff;
  sizes.max_positions = 64;
  return DecoderConfig::preset(preset, sizes);
}

// Random, non-trivial weights: norms around 1, everything else N(0, std).
Decoder make_model(const DecoderConfig& c, uint64_t seed, double std = 0.2) {
  torch::manual_seed(seed);
  Decoder m(c);
  torch::NoGradGuard no_grad;
  for (auto& item : m->named_parameters()) {
    const bool norm = item.key().find("ln") != std::string::npos;
    if (norm && item.key().find(".weight") != std::string::npos)
      item.value().copy_(1.0 + 0.1 * torch::randn_like(item.value()));
    else
      item.value().normal_(0.0, norm ? 0.1 : std);
  }
  m->eval();
  return m;
}

at::Tensor ids_of(const std::vector<int64_t>& v) { return torch::tensor(v, torch::kLong).view({1, -1}); }

// ------------------------------------------------------------------------------------------
// Reference implementation (double precision, one row, explicit loops over heads and tokens).

using Params = std::map<std::string, at::Tensor>;

Params params_double(Decoder& m) {
  Params p;
  for (auto& item : m->named_parameters()) p[item.key()] = item.value().detach().to(torch::kDouble).clone();
  return p;
}

double ref_slope(int64_t h, int64_t H) {  // h = 1..H, H a power of two
  return std::pow(2.0, -8.0 * static_cast<double>(h) / static_cast<double>(H));
}

at::Tensor ref_norm(const at::Tensor& x, const Params& p, const std::string& name, const DecoderConfig& c) {
  const at::Tensor& w = p.at(name + ".weight");
  if (c.norm == DecoderConfig::Norm::Rms) return x / ((x * x).mean(-1, true) + c.norm_eps).sqrt() * w;
  at::Tensor mean = x.mean(-1, true);
  at::Tensor var = ((x - mean) * (x - mean)).mean(-1, true);
  return (x - mean) / (var + c.norm_eps).sqrt() * w + p.at(name + ".bias");
}

at::Tensor ref_linear(const at::Tensor& x, const Params& p, const std::string& name) {
  at::Tensor y = x.matmul(p.at(name + ".weight").t());
  if (p.count(name + ".bias")) y = y + p.at(name + ".bias");
  return y;
}

at::Tensor gelu_new_formula(const at::Tensor& x) {
  return 0.5 * x * (1.0 + torch::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
}
at::Tensor gelu_erf_formula(const at::Tensor& x) { return 0.5 * x * (1.0 + torch::erf(x / std::sqrt(2.0))); }
at::Tensor silu_formula(const at::Tensor& x) { return x / (1.0 + torch::exp(-x)); }

at::Tensor ref_mlp(const at::Tensor& h, const Params& p, const std::string& name, const DecoderConfig& c) {
  if (c.mlp == DecoderConfig::Mlp::SwiGlu)
    return ref_linear(silu_formula(ref_linear(h, p, name + ".gate")) * ref_linear(h, p, name + ".up"), p,
                      name + ".down");
  at::Tensor u = ref_linear(h, p, name + ".up");
  return ref_linear(c.mlp == DecoderConfig::Mlp::Gelu ? gelu_erf_formula(u) : gelu_new_formula(u), p, name + ".down");
}

// Rotates one head vector in place at position pos (pairs i, i + hd/2).
void ref_rope(std::vector<double>& v, double pos, double theta) {
  const size_t half = v.size() / 2;
  for (size_t i = 0; i < half; ++i) {
    const double w = std::pow(theta, -2.0 * static_cast<double>(i) / static_cast<double>(v.size()));
    const double a = v[i], b = v[i + half];
    v[i] = a * std::cos(pos * w) - b * std::sin(pos * w);
    v[i + half] = b * std::cos(pos * w) + a * std::sin(pos * w);
  }
}

// prefix_k/v[l]: [H, P, hd] (double) or empty.
at::Tensor ref_attention(const at::Tensor& h, const Params& p, const std::string& name, const DecoderConfig& c,
                         const at::Tensor& prefix_k, const at::Tensor& prefix_v) {
  const int64_t T = h.size(0), H = c.n_heads, hd = c.head_dim();
  const int64_t P = prefix_k.defined() ? prefix_k.size(1) : 0;
  at::Tensor q = ref_linear(h, p, name + ".q"), k = ref_linear(h, p, name + ".k"), v = ref_linear(h, p, name + ".v");
  at::Tensor out = torch::zeros({T, c.d_model}, torch::kDouble);
  auto vec = [&](const at::Tensor& t, int64_t row, int64_t head) {
    std::vector<double> r(hd);
    for (int64_t e = 0; e < hd; ++e) r[e] = t[row][head * hd + e].item<double>();
    return r;
  };
  for (int64_t hh = 0; hh < H; ++hh) {
    for (int64_t i = 0; i < T; ++i) {
      std::vector<double> qi = vec(q, i, hh);
      if (c.positions == DecoderConfig::Positions::Rope) ref_rope(qi, static_cast<double>(P + i), c.rope_theta);
      std::vector<double> scores;
      std::vector<std::vector<double>> values;
      for (int64_t j = 0; j < P + i + 1; ++j) {  // prefix slots, then tokens 0..i
        std::vector<double> kj(hd), vj(hd);
        if (j < P) {
          for (int64_t e = 0; e < hd; ++e) {
            kj[e] = prefix_k[hh][j][e].item<double>();
            vj[e] = prefix_v[hh][j][e].item<double>();
          }
        } else {
          kj = vec(k, j - P, hh);
          vj = vec(v, j - P, hh);
          if (c.positions == DecoderConfig::Positions::Rope) ref_rope(kj, static_cast<double>(j), c.rope_theta);
        }
        double s = 0;
        for (int64_t e = 0; e < hd; ++e) s += qi[e] * kj[e];
        s /= std::sqrt(static_cast<double>(hd));
        // query position P + i; key position j (prefix slots 0..P-1, tokens P..)
        if (c.positions == DecoderConfig::Positions::Alibi) s -= ref_slope(hh + 1, H) * static_cast<double>(P + i - j);
        scores.push_back(s);
        values.push_back(vj);
      }
      double mx = -1e300, z = 0;
      for (double s : scores) mx = std::max(mx, s);
      for (double& s : scores) z += (s = std::exp(s - mx));
      for (size_t j = 0; j < scores.size(); ++j)
        for (int64_t e = 0; e < hd; ++e)
          out[i][hh * hd + e] += scores[j] / z * values[j][e];
    }
  }
  return ref_linear(out, p, name + ".o");
}

struct RefOut {
  std::vector<at::Tensor> hidden;  // [T, d]
  at::Tensor logits;               // [T, V]
};

RefOut ref_forward(Decoder& m, const std::vector<int64_t>& ids, const Prefix* prefix = nullptr) {
  const auto& c = m->config();
  Params p = params_double(m);
  const int64_t T = static_cast<int64_t>(ids.size());
  const int64_t P = prefix ? prefix->length() : 0;
  at::Tensor x = torch::zeros({T, c.d_model}, torch::kDouble);
  for (int64_t t = 0; t < T; ++t) {
    x[t] = p.at("wte.weight")[ids[t]];
    if (c.positions == DecoderConfig::Positions::Learned) x[t] += p.at("wpe.weight")[P + t];
  }
  RefOut r;
  for (int64_t l = 0; l < c.n_layers; ++l) {
    r.hidden.push_back(x);
    const std::string b = "blocks." + std::to_string(l);
    at::Tensor pk, pv;
    if (P > 0) {
      pk = prefix->keys[l][0].to(torch::kDouble);
      pv = prefix->values[l][0].to(torch::kDouble);
    }
    at::Tensor h = ref_norm(x, p, b + ".ln1", c);
    if (c.block == DecoderConfig::Block::Parallel) {
      x = x + ref_attention(h, p, b + ".attn", c, pk, pv) + ref_mlp(h, p, b + ".mlp", c);
    } else {
      x = x + ref_attention(h, p, b + ".attn", c, pk, pv);
      x = x + ref_mlp(ref_norm(x, p, b + ".ln2", c), p, b + ".mlp", c);
    }
  }
  x = ref_norm(x, p, "ln_f", c);
  r.hidden.push_back(x);
  r.logits = c.tied_head ? x.matmul(p.at("wte.weight").t()) : ref_linear(x, p, "head");
  return r;
}

Prefix random_prefix(const DecoderConfig& c, int64_t B, int64_t P, uint64_t seed) {
  torch::manual_seed(seed);
  Prefix prefix;
  for (int64_t l = 0; l < c.n_layers; ++l) {
    prefix.keys.push_back(torch::randn({B, c.n_heads, P, c.head_dim()}));
    prefix.values.push_back(torch::randn({B, c.n_heads, P, c.head_dim()}));
  }
  return prefix;
}

void expect_close(const at::Tensor& a, const at::Tensor& b, double atol, const std::string& what) {
  ASSERT_EQ(a.sizes(), b.sizes()) << what;
  const double diff = (a.to(torch::kDouble) - b.to(torch::kDouble)).abs().max().item<double>();
  EXPECT_LE(diff, atol) << what;
}

std::vector<DecoderConfig> all_variants() {
  std::vector<DecoderConfig> out;
  for (const char* pos : {"learned", "alibi", "rope"})
    for (const char* block : {"sequential", "parallel"})
      for (const char* norm : {"layer", "rms"})
        for (const char* mlp : {"gelu", "gelu_new", "swiglu"}) {
          DecoderConfig c = small("gpt2");
          c.positions = core::parse_enum<DecoderConfig::Positions>(pos, "positions");
          c.block = core::parse_enum<DecoderConfig::Block>(block, "block");
          c.norm = core::parse_enum<DecoderConfig::Norm>(norm, "norm");
          c.mlp = core::parse_enum<DecoderConfig::Mlp>(mlp, "mlp");
          c.tied_head = std::string(pos) != "rope";  // exercise both heads
          c.head_bias = std::string(pos) == "alibi" ? false : !c.tied_head;
          out.push_back(c);
        }
  return out;
}

std::string describe(const DecoderConfig& c) {
  return std::string(core::name_of(c.positions)) + "/" + core::name_of(c.block) + "/" + core::name_of(c.norm) + "/" +
         core::name_of(c.mlp);
}

// ------------------------------------------------------------------------------------------

TEST(Decoder, Gpt2ParameterNamesAndCount) {
  const int64_t V = 50, d = 16, L = 2, H = 2, ff = 64, Pmax = 32;
  DecoderConfig sizes;
  sizes.vocab_size = V;
  sizes.d_model = d;
  sizes.n_layers = L;
  sizes.n_heads = H;
  sizes.d_ff = ff;
  sizes.max_positions = Pmax;
  Decoder m(DecoderConfig::preset("gpt2", sizes));
  std::set<std::string> names;
  for (auto& item : m->named_parameters()) names.insert(item.key());
  std::set<std::string> expected = {"wte.weight", "wpe.weight", "ln_f.weight", "ln_f.bias"};
  for (int i = 0; i < L; ++i) {
    const std::string b = "blocks." + std::to_string(i) + ".";
    for (const char* s : {"ln1.weight", "ln1.bias", "ln2.weight", "ln2.bias", "attn.q.weight", "attn.q.bias",
                          "attn.k.weight", "attn.k.bias", "attn.v.weight", "attn.v.bias", "attn.o.weight",
                          "attn.o.bias", "mlp.up.weight", "mlp.up.bias", "mlp.down.weight", "mlp.down.bias"})
      expected.insert(b + s);
  }
  EXPECT_EQ(names, expected);
  const int64_t per_block = 4 * d + 4 * (d * d + d) + (d * ff + ff) + (ff * d + d);
  EXPECT_EQ(m->num_parameters(), V * d + Pmax * d + L * per_block + 2 * d);
  EXPECT_EQ(m->num_parameters(true), m->num_parameters());
  EXPECT_EQ(m->named_parameters()["blocks.1.attn.q.weight"].sizes(), at::IntArrayRef({d, d}));
  EXPECT_EQ(m->named_parameters()["blocks.0.mlp.up.weight"].sizes(), at::IntArrayRef({ff, d}));
}

TEST(Decoder, AlibiParallelAndLlamaParameterNames) {
  const int64_t V = 50, d = 16, L = 2, H = 2, ff = 64;
  {
    Decoder m(small("alibi-parallel", V, d, L, H, ff));
    std::set<std::string> names;
    for (auto& item : m->named_parameters()) names.insert(item.key());
    std::set<std::string> expected = {"wte.weight", "ln_f.weight", "ln_f.bias", "head.weight", "head.bias"};
    for (int i = 0; i < L; ++i) {
      const std::string b = "blocks." + std::to_string(i) + ".";
      for (const char* s : {"ln1.weight", "ln1.bias", "attn.q.weight", "attn.k.weight", "attn.v.weight",
                            "attn.o.weight", "mlp.up.weight", "mlp.up.bias", "mlp.down.weight", "mlp.down.bias"})
        expected.insert(b + s);
    }
    EXPECT_EQ(names, expected);
    const int64_t per_block = 2 * d + 4 * d * d + (d * ff + ff) + (ff * d + d);
    EXPECT_EQ(m->num_parameters(), V * d + L * per_block + 2 * d + (V * d + V));
  }
  {
    Decoder m(small("llama", V, d, L, H, ff));
    std::set<std::string> names;
    for (auto& item : m->named_parameters()) names.insert(item.key());
    std::set<std::string> expected = {"wte.weight", "ln_f.weight", "head.weight"};
    for (int i = 0; i < L; ++i) {
      const std::string b = "blocks." + std::to_string(i) + ".";
      for (const char* s : {"ln1.weight", "ln2.weight", "attn.q.weight", "attn.k.weight", "attn.v.weight",
                            "attn.o.weight", "mlp.up.weight", "mlp.gate.weight", "mlp.down.weight"})
        expected.insert(b + s);
    }
    EXPECT_EQ(names, expected);
    const int64_t per_block = 2 * d + 4 * d * d + 3 * d * ff;
    EXPECT_EQ(m->num_parameters(), V * d + L * per_block + d + V * d);
  }
}

TEST(Decoder, InitFollowsGpt2) {
  DecoderConfig c = small("gpt2", 500, 64, 4, 4, 256);
  c.init_std = 0.05;
  torch::manual_seed(0);
  Decoder m(c);
  auto p = m->named_parameters();
  EXPECT_NEAR(p["wte.weight"].std().item<double>(), 0.05, 0.003);
  EXPECT_NEAR(p["blocks.0.mlp.up.weight"].std().item<double>(), 0.05, 0.003);
  EXPECT_NEAR(p["blocks.2.attn.o.weight"].std().item<double>(), 0.05 / std::sqrt(8.0), 0.002);
  EXPECT_NEAR(p["blocks.1.mlp.down.weight"].std().item<double>(), 0.05 / std::sqrt(8.0), 0.002);
  EXPECT_EQ(p["blocks.0.attn.q.bias"].abs().sum().item<double>(), 0.0);
  EXPECT_TRUE(torch::equal(p["blocks.3.ln2.weight"], torch::ones({64})));
  EXPECT_EQ(p["ln_f.bias"].abs().sum().item<double>(), 0.0);
}

TEST(Decoder, MatchesLoopReferenceForAllVariants) {
  for (const auto& c : all_variants()) {
    Decoder m = make_model(c, 7);
    std::vector<int64_t> ids = {3, 17, 0, 9, 22, 5, 5, 11};
    torch::NoGradGuard no_grad;
    ForwardOptions opt;
    opt.output_hidden_states = true;
    DecoderOutput out = m->forward(ids_of(ids), opt);
    RefOut ref = ref_forward(m, ids);
    expect_close(out.logits[0], ref.logits, 2e-4, describe(c) + " logits");
    ASSERT_EQ(out.hidden_states.size(), ref.hidden.size()) << describe(c);
    for (size_t j = 0; j < ref.hidden.size(); ++j)
      expect_close(out.hidden_states[j][0], ref.hidden[j], 2e-5, describe(c) + " H" + std::to_string(j));
  }
}

TEST(Decoder, StoppingAtAHiddenStateGivesTheSameStatesAndNoLogits) {
  for (const char* preset : {"gpt2", "alibi-parallel", "llama"}) {
    DecoderConfig c = small(preset);
    Decoder m = make_model(c, 7);
    torch::NoGradGuard no_grad;
    at::Tensor ids = ids_of({3, 17, 0, 9, 22});
    ForwardOptions full;
    full.output_hidden_states = true;
    const DecoderOutput all = m->forward(ids, full);
    for (int stop = 0; stop <= c.n_layers; ++stop) {
      ForwardOptions early = full;
      early.stop_at_hidden_state = stop;
      const DecoderOutput out = m->forward(ids, early);
      EXPECT_FALSE(out.logits.defined()) << preset << " stop " << stop;
      ASSERT_EQ(out.hidden_states.size(), static_cast<size_t>(stop + 1)) << preset;
      for (int j = 0; j <= stop; ++j) EXPECT_TRUE(torch::equal(out.hidden_states[j], all.hidden_states[j])) << preset << j;
    }
    ForwardOptions too_far = full;
    too_far.stop_at_hidden_state = static_cast<int>(c.n_layers) + 1;
    EXPECT_THROW(m->forward(ids, too_far), std::exception) << preset;
  }
}

TEST(Decoder, PrefixMatchesLoopReference) {
  // Prefix keys/values visible to every query, positions shifted by P (learned and rope; alibi
  // with prefix slots at positions 0..P-1), batch of 2 rows with different prefixes.
  for (const char* preset : {"gpt2", "alibi-parallel", "llama"}) {
    DecoderConfig c = small(preset);
    Decoder m = make_model(c, 11);
    const int64_t P = 3;
    Prefix prefix = random_prefix(c, 2, P, 5);
    std::vector<int64_t> a = {1, 2, 3, 4, 5}, b = {7, 7, 20, 0, 13};
    torch::NoGradGuard no_grad;
    ForwardOptions opt;
    opt.prefix = &prefix;
    DecoderOutput out = m->forward(torch::cat({ids_of(a), ids_of(b)}), opt);
    for (int row = 0; row < 2; ++row) {
      Prefix one;
      for (int64_t l = 0; l < c.n_layers; ++l) {
        one.keys.push_back(prefix.keys[l].narrow(0, row, 1));
        one.values.push_back(prefix.values[l].narrow(0, row, 1));
      }
      RefOut ref = ref_forward(m, row == 0 ? a : b, &one);
      expect_close(out.logits[row], ref.logits, 2e-4, std::string(preset) + " row " + std::to_string(row));
    }
  }
}

TEST(Decoder, PrefixIsVisibleToTheFirstToken) {
  for (const char* preset : {"gpt2", "alibi-parallel", "llama"}) {
    DecoderConfig c = small(preset);
    Decoder m = make_model(c, 3);
    Prefix prefix = random_prefix(c, 1, 2, 1);
    torch::NoGradGuard no_grad;
    ForwardOptions opt;
    opt.prefix = &prefix;
    at::Tensor ids = ids_of({4, 8, 15});
    at::Tensor before = m->forward(ids, opt).logits;
    prefix.values[0] = prefix.values[0] + 1.0;
    at::Tensor after = m->forward(ids, opt).logits;
    EXPECT_GT((before[0][0] - after[0][0]).abs().max().item<double>(), 1e-4) << preset;
    at::Tensor plain = m->forward(ids).logits;
    EXPECT_GT((plain[0][0] - after[0][0]).abs().max().item<double>(), 1e-4) << preset;
  }
}

TEST(Decoder, LearnedPositionsShiftByThePrefix) {
  // The first real token gets wpe[P] (PrefixMatchesLoopReference checks the whole forward).
  DecoderConfig c = small("gpt2");
  Decoder m = make_model(c, 2);
  const int64_t P = 4;
  Prefix prefix = random_prefix(c, 1, P, 9);
  torch::NoGradGuard no_grad;
  ForwardOptions opt;
  opt.prefix = &prefix;
  opt.output_hidden_states = true;
  DecoderOutput out = m->forward(ids_of({6, 1}), opt);
  auto p = m->named_parameters();
  expect_close(out.hidden_states[0][0][0], p["wte.weight"][6] + p["wpe.weight"][P], 1e-6, "H0 token 0");
  expect_close(out.hidden_states[0][0][1], p["wte.weight"][1] + p["wpe.weight"][P + 1], 1e-6, "H0 token 1");
}

TEST(Decoder, CausalForAllVariants) {
  for (const auto& c : all_variants()) {
    Decoder m = make_model(c, 5);
    torch::NoGradGuard no_grad;
    at::Tensor ids = ids_of({1, 2, 3, 4, 5, 6, 7, 8});
    at::Tensor base = m->forward(ids).logits;
    for (int64_t t = 0; t + 1 < 8; ++t) {
      at::Tensor changed = ids.clone();
      changed[0][t + 1] = (changed[0][t + 1].item<int64_t>() + 10) % c.vocab_size;
      at::Tensor logits = m->forward(changed).logits;
      const double before = (logits.narrow(1, 0, t + 1) - base.narrow(1, 0, t + 1)).abs().max().item<double>();
      EXPECT_LE(before, 1e-6) << describe(c) << " t=" << t;
      const double at_change = (logits[0][t + 1] - base[0][t + 1]).abs().max().item<double>();
      EXPECT_GT(at_change, 1e-4) << describe(c) << " t=" << t;
    }
  }
}

TEST(Decoder, KvCacheMatchesFullPass) {
  for (const char* preset : {"gpt2", "alibi-parallel", "llama"}) {
    for (bool with_prefix : {false, true}) {
      DecoderConfig c = small(preset);
      Decoder m = make_model(c, 13);
      torch::NoGradGuard no_grad;
      at::Tensor ids = torch::randint(0, c.vocab_size, {2, 9}, torch::kLong);
      Prefix prefix = random_prefix(c, 2, 2, 4);
      ForwardOptions full_opt;
      if (with_prefix) full_opt.prefix = &prefix;
      at::Tensor full = m->forward(ids, full_opt).logits;
      KVCache cache;
      ForwardOptions opt = full_opt;
      opt.cache = &cache;
      std::vector<at::Tensor> pieces = {m->forward(ids.narrow(1, 0, 3), opt).logits};  // prefill 3
      EXPECT_EQ(cache.length(), 3);
      for (int64_t t = 3; t < 9; ++t) pieces.push_back(m->forward(ids.narrow(1, t, 1), opt).logits);
      EXPECT_EQ(cache.length(), 9);
      EXPECT_EQ(cache.keys[1].sizes(), at::IntArrayRef({2, c.n_heads, 9, c.head_dim()}));
      expect_close(torch::cat(pieces, 1), full, 1e-5, std::string(preset) + (with_prefix ? " prefix" : ""));
    }
  }
}

// prefix_from_states turns layer inputs into that layer's own keys and values at positions
// 0..P-1: fed the hidden states of a context, it must reproduce reading the context itself.
TEST(Decoder, PrefixFromTheStatesOfAContextEqualsReadingIt) {
  for (const char* preset : {"gpt2", "alibi-parallel", "llama"}) {
    DecoderConfig c = small(preset);
    Decoder m = make_model(c, 17);
    torch::NoGradGuard no_grad;
    at::Tensor context = torch::randint(0, c.vocab_size, {2, 5}, torch::kLong);
    at::Tensor question = torch::randint(0, c.vocab_size, {2, 4}, torch::kLong);
    at::Tensor full = m->forward(torch::cat({context, question}, 1)).logits.narrow(1, 5, 4);
    ForwardOptions states_opt;
    states_opt.output_hidden_states = true;
    std::vector<at::Tensor> states = m->forward(context, states_opt).hidden_states;
    states.pop_back();  // H[l] for l < L: the input of block l
    Prefix prefix = m->prefix_from_states(states);
    EXPECT_EQ(prefix.length(), 5);
    ForwardOptions opt;
    opt.prefix = &prefix;
    expect_close(m->forward(question, opt).logits, full, 1e-5, preset);
  }
}

TEST(Decoder, KvCacheSelectRows) {
  DecoderConfig c = small("llama");
  Decoder m = make_model(c, 1);
  torch::NoGradGuard no_grad;
  at::Tensor ids = torch::randint(0, c.vocab_size, {3, 5}, torch::kLong);
  KVCache cache;
  ForwardOptions opt;
  opt.cache = &cache;
  m->forward(ids.narrow(1, 0, 4), opt);
  at::Tensor index = torch::tensor({2, 2, 0}, torch::kLong);
  cache.select_rows(index);
  at::Tensor step = m->forward(ids.index_select(0, index).narrow(1, 4, 1), opt).logits;
  at::Tensor full = m->forward(ids.index_select(0, index)).logits;
  expect_close(step[0][0], full[0][4], 1e-5, "reordered rows");
  expect_close(step[2][0], full[2][4], 1e-5, "reordered rows");
}

TEST(Decoder, LeftPaddingMatchesUnpaddedPrompt) {
  for (const char* preset : {"gpt2", "alibi-parallel", "llama"}) {
    DecoderConfig c = small(preset);
    Decoder m = make_model(c, 17);
    torch::NoGradGuard no_grad;
    std::vector<int64_t> prompt = {5, 9, 2, 14, 3};
    at::Tensor batch = torch::tensor({{0, 0, 0, 5, 9, 2, 14, 3}, {1, 2, 3, 4, 5, 6, 7, 8}}, torch::kLong);
    at::Tensor mask = torch::tensor({{0, 0, 0, 1, 1, 1, 1, 1}, {1, 1, 1, 1, 1, 1, 1, 1}}, torch::kLong);
    ForwardOptions opt;
    opt.attention_mask = mask;
    KVCache cache;
    opt.cache = &cache;
    at::Tensor padded = m->forward(batch, opt).logits;
    at::Tensor alone = m->forward(ids_of(prompt)).logits;
    expect_close(padded[0][7], alone[0][4], 1e-5, std::string(preset) + " last prompt position");
    expect_close(padded[0].narrow(0, 3, 5), alone[0], 1e-5, std::string(preset) + " all real positions");
    EXPECT_FALSE(torch::isnan(padded).any().item<bool>());
    // One generation step through the cache, mask extended by one real token.
    opt.attention_mask = torch::cat({mask, torch::ones({2, 1}, torch::kLong)}, 1);
    at::Tensor step = m->forward(torch::tensor({{7}, {7}}, torch::kLong), opt).logits;
    std::vector<int64_t> longer = prompt;
    longer.push_back(7);
    at::Tensor alone2 = m->forward(ids_of(longer)).logits;
    expect_close(step[0][0], alone2[0][5], 1e-5, std::string(preset) + " cached step");
  }
}

// A mask of ones takes the unmasked path (a bias shared by the batch): the same logits exactly; a
// wrongly shaped one is still refused.
TEST(Decoder, MaskOfOnesEqualsNoMask) {
  for (const char* preset : {"gpt2", "alibi-parallel", "llama"}) {
    Decoder m = make_model(small(preset), 5);
    torch::NoGradGuard no_grad;
    at::Tensor batch = torch::tensor({{1, 2, 3, 4, 5, 6}, {6, 5, 4, 3, 2, 1}}, torch::kLong);
    ForwardOptions opt;
    opt.attention_mask = torch::ones({2, 6}, torch::kLong);
    EXPECT_TRUE(m->forward(batch, opt).logits.equal(m->forward(batch).logits)) << preset;
    opt.attention_mask = torch::ones({2, 5}, torch::kLong);
    EXPECT_THROW(m->forward(batch, opt), std::exception) << preset;
  }
}

TEST(Decoder, LearnedPositionsBeyondTheTableFail) {
  DecoderConfig c = small("gpt2");
  c.max_positions = 8;
  Decoder m(c);
  torch::NoGradGuard no_grad;
  EXPECT_NO_THROW(m->forward(torch::zeros({1, 8}, torch::kLong)));
  EXPECT_THROW(m->forward(torch::zeros({1, 9}, torch::kLong)), core::UserError);
  Prefix prefix = random_prefix(c, 1, 2, 0);
  ForwardOptions opt;
  opt.prefix = &prefix;
  EXPECT_THROW(m->forward(torch::zeros({1, 7}, torch::kLong), opt), core::UserError);
  // Left padding does not use up positions.
  ForwardOptions padded;
  padded.attention_mask = torch::cat({torch::zeros({1, 4}, torch::kLong), torch::ones({1, 8}, torch::kLong)}, 1);
  EXPECT_NO_THROW(m->forward(torch::zeros({1, 12}, torch::kLong), padded));
}

TEST(Decoder, AlibiSlopes) {
  at::Tensor s8 = alibi_slopes(8);
  ASSERT_EQ(s8.numel(), 8);
  for (int h = 0; h < 8; ++h) EXPECT_FLOAT_EQ(s8[h].item<float>(), 1.0f / static_cast<float>(1 << (h + 1)));
  at::Tensor s16 = alibi_slopes(16);
  EXPECT_FLOAT_EQ(s16[0].item<float>(), static_cast<float>(std::pow(2.0, -0.5)));
  EXPECT_FLOAT_EQ(s16[15].item<float>(), 1.0f / 256);
  // Not a power of two (H = 6): slopes of 4 heads, then every other slope of 8 heads.
  std::vector<float> six = {0.25f, 0.0625f, 0.015625f, 0.00390625f, 0.5f, 0.125f};
  at::Tensor s6 = alibi_slopes(6);
  for (int h = 0; h < 6; ++h) EXPECT_FLOAT_EQ(s6[h].item<float>(), six[h]);
  EXPECT_FLOAT_EQ(alibi_slopes(1)[0].item<float>(), 1.0f / 256);

  DecoderConfig c = small("alibi-parallel", 23, 32, 1, 8, 32);
  Decoder m(c);
  torch::NoGradGuard no_grad;
  DecoderOutput out = m->forward(ids_of({1, 2}));
  expect_close(out.alibi_bias, s8, 0, "slopes in the output");
}

TEST(Decoder, AlibiAttentionDecaysWithDistance) {
  // Zero q/k weights: the scores are the ALiBi terms alone, so token i attends to j <= i with
  // weight exp(-m (i - j)) / Z. v = o = identity and a zero MLP make H[1] - H[0] that average of
  // ln1(H[0]); check it against the hand computation.
  DecoderConfig c = small("alibi-parallel", 23, 8, 2, 2, 16);
  Decoder m = make_model(c, 21);
  auto p = m->named_parameters();
  {
    torch::NoGradGuard no_grad;
    p["blocks.0.attn.q.weight"].zero_();
    p["blocks.0.attn.k.weight"].zero_();
    p["blocks.0.attn.v.weight"].copy_(torch::eye(8));
    p["blocks.0.attn.o.weight"].copy_(torch::eye(8));
    p["blocks.0.mlp.down.weight"].zero_();
    p["blocks.0.mlp.down.bias"].zero_();
  }
  torch::NoGradGuard no_grad;
  ForwardOptions opt;
  opt.output_hidden_states = true;
  const int64_t T = 6;
  DecoderOutput out = m->forward(ids_of({1, 2, 3, 4, 5, 6}), opt);
  Params dp = params_double(m);
  at::Tensor x = out.hidden_states[0][0].to(torch::kDouble);
  at::Tensor h = ref_norm(x, dp, "blocks.0.ln1", c);
  at::Tensor expected = torch::zeros({T, 8}, torch::kDouble);
  for (int head = 0; head < 2; ++head) {
    const double m_h = ref_slope(head + 1, 2);
    for (int64_t i = 0; i < T; ++i) {
      double z = 0;
      for (int64_t j = 0; j <= i; ++j) z += std::exp(-m_h * static_cast<double>(i - j));
      for (int64_t j = 0; j <= i; ++j)
        expected[i].narrow(0, head * 4, 4) += std::exp(-m_h * static_cast<double>(i - j)) / z * h[j].narrow(0, head * 4, 4);
    }
  }
  expect_close(out.hidden_states[1][0] - out.hidden_states[0][0], expected, 1e-5, "alibi average");
}

TEST(Decoder, HiddenStatesAndCapturedQkv) {
  for (const char* preset : {"gpt2", "alibi-parallel", "llama"}) {
    DecoderConfig c = small(preset, 23, 16, 3, 2, 32);
    Decoder m = make_model(c, 8);
    torch::NoGradGuard no_grad;
    ForwardOptions opt;
    opt.output_hidden_states = true;
    opt.capture_qkv_layer = 1;
    at::Tensor ids = torch::randint(0, 23, {2, 5}, torch::kLong);
    DecoderOutput out = m->forward(ids, opt);
    ASSERT_EQ(out.hidden_states.size(), 4u) << preset;
    auto p = m->named_parameters();
    at::Tensor h0 = p["wte.weight"].index_select(0, ids.flatten()).view({2, 5, 16});
    if (c.positions == DecoderConfig::Positions::Learned) h0 = h0 + p["wpe.weight"].narrow(0, 0, 5);
    expect_close(out.hidden_states[0], h0, 1e-6, std::string(preset) + " H0");
    // H[L] is after ln_f: the logits are its projection.
    at::Tensor hl = out.hidden_states[3];
    at::Tensor logits = c.tied_head ? hl.matmul(p["wte.weight"].t()) : hl.matmul(p["head.weight"].t());
    if (c.head_bias) logits = logits + p["head.bias"];
    expect_close(out.logits, logits, 1e-5, std::string(preset) + " logits from H[L]");
    // q/k/v = linear(ln1(H[1])), by the formulas.
    Params dp = params_double(m);
    at::Tensor h1 = ref_norm(out.hidden_states[1].to(torch::kDouble).view({10, 16}), dp, "blocks.1.ln1", c);
    expect_close(out.q.reshape({10, 16}), ref_linear(h1, dp, "blocks.1.attn.q"), 1e-5, std::string(preset) + " q");
    expect_close(out.k.reshape({10, 16}), ref_linear(h1, dp, "blocks.1.attn.k"), 1e-5, std::string(preset) + " k");
    expect_close(out.v.reshape({10, 16}), ref_linear(h1, dp, "blocks.1.attn.v"), 1e-5, std::string(preset) + " v");
    EXPECT_EQ(out.alibi_bias.defined(), c.positions == DecoderConfig::Positions::Alibi);
  }
}

TEST(Decoder, RopeScoresDependOnlyOnPositionDifferences) {
  torch::manual_seed(0);
  at::Tensor q = torch::randn({1, 2, 1, 8}), k = torch::randn({1, 2, 1, 8});
  auto score = [&](int64_t pq, int64_t pk) {
    at::Tensor rq = apply_rope(q, torch::tensor({{pq}}, torch::kLong), 10000.0);
    at::Tensor rk = apply_rope(k, torch::tensor({{pk}}, torch::kLong), 10000.0);
    return (rq * rk).sum(-1);  // [1, 2, 1]
  };
  expect_close(score(7, 3), score(4, 0), 1e-5, "shift 3");
  expect_close(score(107, 103), score(4, 0), 1e-4, "shift 103");
  EXPECT_GT((score(7, 3) - score(7, 4)).abs().max().item<double>(), 1e-3);
  // Rotate-half convention: dims (i, i + hd/2) rotate together by angle p theta^(-2i/hd).
  at::Tensor e0 = torch::zeros({1, 1, 1, 4});
  e0[0][0][0][0] = 1.0;
  at::Tensor r = apply_rope(e0, torch::tensor({{2}}, torch::kLong), 100.0);
  EXPECT_NEAR(r[0][0][0][0].item<double>(), std::cos(2.0), 1e-6);
  EXPECT_NEAR(r[0][0][0][2].item<double>(), std::sin(2.0), 1e-6);
  EXPECT_NEAR(r[0][0][0][1].item<double>(), 0.0, 1e-6);
  at::Tensor e1 = torch::zeros({1, 1, 1, 4});
  e1[0][0][0][1] = 1.0;
  r = apply_rope(e1, torch::tensor({{2}}, torch::kLong), 100.0);
  EXPECT_NEAR(r[0][0][0][1].item<double>(), std::cos(2.0 / 10.0), 1e-6);  // 100^(-2/4) = 1/10
  EXPECT_NEAR(r[0][0][0][3].item<double>(), std::sin(2.0 / 10.0), 1e-6);
}

// A one-layer model whose attention output is zero (o = 0): H[1] = ln_f(x + mlp(norm(x))).
// Values against scalar formulas in plain C++.
double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

void check_mlp_block_values(const std::string& preset, const std::string& mlp) {
  DecoderConfig c = small(preset, 5, 4, 1, 1, 3);
  c.mlp = core::parse_enum<DecoderConfig::Mlp>(mlp, "mlp");
  Decoder m = make_model(c, 4, 0.5);
  auto p = m->named_parameters();
  {
    torch::NoGradGuard no_grad;
    p["blocks.0.attn.o.weight"].zero_();
    if (c.bias) p["blocks.0.attn.o.bias"].zero_();
  }
  torch::NoGradGuard no_grad;
  ForwardOptions opt;
  opt.output_hidden_states = true;
  DecoderOutput out = m->forward(ids_of({3}), opt);
  auto vec = [](const at::Tensor& t) {
    at::Tensor d = t.to(torch::kDouble).contiguous();
    return std::vector<double>(d.data_ptr<double>(), d.data_ptr<double>() + d.numel());
  };
  const bool rms = c.norm == DecoderConfig::Norm::Rms;
  auto norm = [&](const std::vector<double>& x, const std::string& name) {
    std::vector<double> w = vec(p[name + ".weight"]), y(x.size());
    double mean = 0, sq = 0;
    for (double v : x) mean += v / x.size();
    for (double v : x) sq += (rms ? v * v : (v - mean) * (v - mean)) / x.size();
    for (size_t i = 0; i < x.size(); ++i) {
      y[i] = (rms ? x[i] : x[i] - mean) / std::sqrt(sq + c.norm_eps) * w[i];
      if (!rms) y[i] += vec(p[name + ".bias"])[i];
    }
    return y;
  };
  auto lin = [&](const std::vector<double>& x, const std::string& name) {
    at::Tensor W = p[name + ".weight"];
    std::vector<double> y(W.size(0));
    for (int64_t r = 0; r < W.size(0); ++r) {
      y[r] = dot(vec(W[r]), x);
      if (p.contains(name + ".bias")) y[r] += p[name + ".bias"][r].item<double>();
    }
    return y;
  };
  std::vector<double> x = vec(p["wte.weight"][3]);
  if (c.positions == DecoderConfig::Positions::Learned) {
    std::vector<double> pe = vec(p["wpe.weight"][0]);
    for (size_t i = 0; i < x.size(); ++i) x[i] += pe[i];
  }
  std::vector<double> h = norm(x, "blocks.0.ln2"), a = lin(h, "blocks.0.mlp.up");
  if (c.mlp == DecoderConfig::Mlp::SwiGlu) {
    std::vector<double> g = lin(h, "blocks.0.mlp.gate");
    for (size_t i = 0; i < a.size(); ++i) a[i] *= g[i] / (1.0 + std::exp(-g[i]));
  } else {
    for (double& u : a)
      u = c.mlp == DecoderConfig::Mlp::Gelu ? 0.5 * u * (1.0 + std::erf(u / std::sqrt(2.0)))
                        : 0.5 * u * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (u + 0.044715 * u * u * u)));
  }
  std::vector<double> dn = lin(a, "blocks.0.mlp.down");
  for (size_t i = 0; i < x.size(); ++i) x[i] += dn[i];
  std::vector<double> expected = norm(x, "ln_f");
  std::vector<double> got = vec(out.hidden_states[1][0][0]);
  for (size_t i = 0; i < expected.size(); ++i) EXPECT_NEAR(got[i], expected[i], 1e-5) << preset << " " << mlp << " " << i;
}

TEST(Decoder, RmsNormSwigluValues) { check_mlp_block_values("llama", "swiglu"); }
TEST(Decoder, LayerNormGeluNewValues) { check_mlp_block_values("gpt2", "gelu_new"); }
TEST(Decoder, LayerNormGeluErfValues) { check_mlp_block_values("gpt2", "gelu"); }

TEST(Decoder, DropoutOnlyInTraining) {
  DecoderConfig c = small("gpt2");
  c.dropout = 0.3;
  Decoder m = make_model(c, 3);
  at::Tensor ids = ids_of({1, 2, 3, 4});
  torch::NoGradGuard no_grad;
  m->eval();
  expect_close(m->forward(ids).logits, m->forward(ids).logits, 0, "eval is deterministic");
  m->train();
  EXPECT_GT((m->forward(ids).logits - m->forward(ids).logits).abs().max().item<double>(), 1e-4);
}

TEST(Decoder, OverfitsAFixedSequence) {
  DecoderConfig c = small("gpt2", 32, 32, 1, 2, 64);
  torch::manual_seed(0);
  Decoder m(c);
  m->train();
  at::Tensor seq = torch::randint(0, 32, {1, 17}, torch::kLong);
  at::Tensor input = seq.narrow(1, 0, 16), target = seq.narrow(1, 1, 16);
  torch::optim::Adam opt(m->parameters(), torch::optim::AdamOptions(1e-2));
  double loss_value = 1e9;
  int steps = 0;
  for (; steps < 400 && loss_value >= 0.1; ++steps) {
    opt.zero_grad();
    at::Tensor loss = torch::nn::functional::cross_entropy(m->forward(input).logits.view({16, 32}), target.flatten());
    loss.backward();
    opt.step();
    loss_value = loss.item<double>();
  }
  EXPECT_LT(loss_value, 0.1) << "after " << steps << " steps";
}

TEST(Decoder, ValidateNamesTheOption) {
  DecoderConfig c = small("gpt2");
  c.d_model = 130;
  c.n_heads = 4;
  try {
    c.validate();
    FAIL() << "no error";
  } catch (const core::UserError& e) {
    EXPECT_EQ(std::string(e.what()), "model.n_heads: d_model 130 is not divisible by 4 heads");
  }
  EXPECT_THROW(core::parse_enum<DecoderConfig::Positions>("sinusoidal", "model.positions"), core::UserError);
  EXPECT_THROW(DecoderConfig::preset("gpt3"), core::UserError);
  c = small("gpt2");
  c.vocab_size = 0;
  EXPECT_THROW(Decoder{c}, core::UserError);
}

TEST(Decoder, PresetsKeepSizes) {
  DecoderConfig sizes;
  sizes.d_model = 64;
  sizes.n_layers = 3;
  sizes.vocab_size = 99;
  DecoderConfig a = DecoderConfig::preset("alibi-parallel", sizes);
  EXPECT_EQ(a.d_model, 64);
  EXPECT_EQ(a.n_layers, 3);
  EXPECT_EQ(a.vocab_size, 99);
  EXPECT_STREQ(core::name_of(a.positions), "alibi");
  EXPECT_STREQ(core::name_of(a.block), "parallel");
  EXPECT_DOUBLE_EQ(a.norm_eps, 1e-6);
  EXPECT_FALSE(a.bias);
  EXPECT_TRUE(a.has_mlp_bias());
  EXPECT_FALSE(a.tied_head);
  EXPECT_TRUE(a.head_bias);
  DecoderConfig l = DecoderConfig::preset("llama");
  EXPECT_STREQ(core::name_of(l.positions), "rope");
  EXPECT_STREQ(core::name_of(l.norm), "rms");
  EXPECT_STREQ(core::name_of(l.mlp), "swiglu");
  EXPECT_FALSE(l.has_mlp_bias());
  DecoderConfig g = DecoderConfig::preset("gpt2");
  EXPECT_TRUE(g.tied_head);
  EXPECT_TRUE(g.has_mlp_bias());
}

TEST(Decoder, ConfigFromOptions) {
  config::Schema schema;
  declare_model_options(schema);
  {
    config::Config cfg(schema);
    DecoderConfig c = decoder_config_from(cfg);
    EXPECT_EQ(c.d_model, 128);
    EXPECT_EQ(c.n_layers, 2);
    EXPECT_EQ(c.n_heads, 4);
    EXPECT_EQ(c.d_ff, 512);
    EXPECT_EQ(c.max_positions, 512);
    EXPECT_EQ(c.vocab_size, 0);
    EXPECT_STREQ(core::name_of(c.positions), "learned");
  }
  {
    config::Config cfg(schema);
    cfg.apply_override("model.preset=llama");
    cfg.apply_override("model.mlp=gelu");
    cfg.apply_override("model.d_model=64");
    DecoderConfig c = decoder_config_from(cfg);
    EXPECT_STREQ(core::name_of(c.positions), "rope");  // from the preset, not the option's default
    EXPECT_STREQ(core::name_of(c.norm), "rms");
    EXPECT_STREQ(core::name_of(c.mlp), "gelu");        // explicit override
    EXPECT_EQ(c.d_model, 64);
    EXPECT_FALSE(c.tied_head);
  }
  {
    config::Config cfg(schema);
    cfg.apply_override("model.n_heads=3");
    try {
      decoder_config_from(cfg);
      FAIL() << "no error";
    } catch (const core::UserError& e) {
      EXPECT_NE(std::string(e.what()).find("model.n_heads"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace engram::model

TEST(ActivationCheckpointing, SameLossAndGradientsAsWithout) {
  for (const char* preset : {"gpt2", "llama", "alibi-parallel"}) {
    engram::model::DecoderConfig c = engram::model::DecoderConfig::preset(preset);
    c.vocab_size = 37;
    c.d_model = 16;
    c.n_layers = 3;
    c.n_heads = 2;
    c.d_ff = 32;
    c.max_positions = 16;
    c.dropout = 0.2;  // the recomputation must reuse the same dropout masks
    torch::manual_seed(4);
    engram::model::Decoder plain(c);
    engram::model::Decoder checkpointed(c);
    {
      torch::NoGradGuard no_grad;
      auto a = plain->parameters(), b = checkpointed->parameters();
      for (size_t k = 0; k < a.size(); ++k) b[k].copy_(a[k]);
    }
    checkpointed->set_activation_checkpointing(true);
    plain->train();
    checkpointed->train();
    at::Tensor ids = torch::randint(37, {3, 9}, torch::kLong);
    std::vector<at::Tensor> losses;
    for (auto* m : {&plain, &checkpointed}) {
      torch::manual_seed(77);
      at::Tensor loss = (*m)->forward(ids).logits.pow(2).mean();
      loss.backward();
      losses.push_back(loss.detach());
    }
    EXPECT_TRUE(losses[0].equal(losses[1])) << preset;
    auto a = plain->named_parameters(), b = checkpointed->named_parameters();
    for (size_t k = 0; k < a.size(); ++k) {
      ASSERT_TRUE(b[k].value().grad().defined()) << preset << " " << b[k].key();
      EXPECT_TRUE(torch::allclose(a[k].value().grad(), b[k].value().grad(), 1e-5, 1e-6)) << preset << " " << a[k].key();
    }
  }
}

TEST(Activation, GeluTanhEqualsLibTorchsTanhGeluAndItsGradient) {
  // Values from -12 to 12 (both tails, where sigmoid saturates) plus random ones, in double so
  // the comparison is with LibTorch's kernel, not float rounding; and float32 as used.
  for (auto dtype : {torch::kDouble, torch::kFloat}) {
    torch::manual_seed(3);
    at::Tensor x = torch::cat({torch::linspace(-12, 12, 481, dtype), torch::randn({4, 300}, dtype).reshape(-1) * 3});
    at::Tensor ours_in = x.clone().requires_grad_(), theirs_in = x.clone().requires_grad_();
    at::Tensor ours = engram::model::gelu_tanh(ours_in), theirs = at::gelu(theirs_in, "tanh");
    at::Tensor upstream = torch::randn_like(x);
    ours.backward(upstream);
    theirs.backward(upstream);
    const double tol = dtype == torch::kDouble ? 1e-12 : 1e-5;
    EXPECT_LT((ours - theirs).abs().max().item<double>(), tol);
    EXPECT_LT((ours_in.grad() - theirs_in.grad()).abs().max().item<double>(), tol);
  }
  // The fused float32 loops on a tensor large enough to be split across threads, given
  // transposed (not contiguous) and with a transposed upstream gradient; and beyond +-80 in u.
  {
    torch::manual_seed(4);
    at::Tensor x = (torch::randn({70001, 3}) * 4).t();
    x.select(0, 0).narrow(0, 0, 4).copy_(torch::tensor({-1e6f, -60.0f, 60.0f, 1e6f}));
    at::Tensor ours_in = x.clone().requires_grad_(), theirs_in = x.clone().requires_grad_();
    at::Tensor upstream = torch::randn({70001, 3}).t();
    at::Tensor ours = engram::model::gelu_tanh(ours_in), theirs = at::gelu(theirs_in, "tanh");
    ours.backward(upstream);
    theirs.backward(upstream);
    EXPECT_TRUE(torch::allclose(ours, theirs, 1e-5, 1e-5));
    EXPECT_TRUE(torch::allclose(ours_in.grad(), theirs_in.grad(), 1e-5, 1e-5));
    EXPECT_LT(std::abs(ours[0][0].item<float>()), 1e-20f);  // -0 in LibTorch; the clamp leaves 1e-29
    EXPECT_EQ(ours[0][3].item<float>(), 1e6f);
  }
  // A hand value: gelu_new(1) = 0.5 (1 + tanh(sqrt(2/pi) 1.044715)) = 0.841192.
  EXPECT_NEAR(engram::model::gelu_tanh(torch::ones({1}, torch::kDouble)).item<double>(), 0.8411919906, 1e-9);
}
