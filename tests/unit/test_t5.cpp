// T5 encoder-decoder: parameter names, relative position buckets, masking, causality and the MAC
// query-embedding path.
#include <set>
#include <string>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "core/error.h"
#include "model/t5.h"
#include "train/autocast.h"

using engram::model::T5;
using engram::model::T5Config;

namespace {

T5 tiny_model(uint64_t seed = 0, const std::string& ff = "relu", bool tied = true) {
  torch::manual_seed(seed);
  auto c = T5Config::preset("tiny");
  c.feed_forward = ff;
  c.tie_word_embeddings = tied;
  T5 m(c);
  m->eval();
  return m;
}

std::set<std::string> expected_names(const T5Config& c) {
  std::set<std::string> names{"shared.weight", "encoder.final_ln.weight", "decoder.final_ln.weight",
                              "encoder.blocks.0.attn.relative_attention_bias.weight",
                              "decoder.blocks.0.self_attn.relative_attention_bias.weight"};
  auto ff = [&](const std::string& p) {
    if (c.feed_forward == "relu") {
      names.insert(p + "ff.wi.weight");
    } else {
      names.insert(p + "ff.wi_0.weight");
      names.insert(p + "ff.wi_1.weight");
    }
    names.insert(p + "ff.wo.weight");
    names.insert(p + "ln_ff.weight");
  };
  for (int64_t i = 0; i < c.n_layers; ++i) {
    const std::string p = "encoder.blocks." + std::to_string(i) + ".";
    for (const char* w : {"q", "k", "v", "o"}) names.insert(p + "attn." + w + ".weight");
    names.insert(p + "ln_attn.weight");
    ff(p);
  }
  for (int64_t i = 0; i < c.n_decoder_layers; ++i) {
    const std::string p = "decoder.blocks." + std::to_string(i) + ".";
    for (const char* w : {"q", "k", "v", "o"}) {
      names.insert(p + "self_attn." + w + ".weight");
      names.insert(p + "cross_attn." + w + ".weight");
    }
    names.insert(p + "ln_self_attn.weight");
    names.insert(p + "ln_cross_attn.weight");
    ff(p);
  }
  if (!c.tie_word_embeddings) names.insert("lm_head.weight");
  return names;
}

at::Tensor buckets(std::vector<int64_t> rel, bool bidirectional, int64_t num_buckets, int64_t max_distance) {
  return engram::model::relative_position_bucket(torch::tensor(rel, torch::kLong), bidirectional, num_buckets,
                                                 max_distance);
}

std::vector<int64_t> to_vec(const at::Tensor& t) {
  auto c = t.contiguous().to(torch::kLong);
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

}  // namespace

TEST(T5, TinyParameterNamesAndCount) {
  for (std::string ff : {"relu", "gated-gelu"}) {
    for (bool tied : {true, false}) {
      auto m = tiny_model(0, ff, tied);
      const auto& c = m->config();
      std::set<std::string> names;
      for (const auto& p : m->named_parameters()) names.insert(p.key());
      EXPECT_EQ(names, expected_names(c)) << ff << " tied=" << tied;

      // V=64, d=32, inner=H*d_kv=32, d_ff=64, 2+2 layers, 4 heads, 8 buckets.
      const int64_t d = 32, inner = 32, dff = 64, V = 64, nwi = ff == "relu" ? 1 : 2;
      const int64_t enc_block = 4 * d * inner + (nwi + 1) * d * dff + 2 * d;
      const int64_t dec_block = 8 * d * inner + (nwi + 1) * d * dff + 3 * d;
      const int64_t expected = V * d + 2 * (enc_block + dec_block) + 2 * 8 * 4 + 2 * d + (tied ? 0 : V * d);
      EXPECT_EQ(m->num_parameters(), expected) << ff << " tied=" << tied;
      EXPECT_EQ(m->named_parameters()["encoder.blocks.0.attn.relative_attention_bias.weight"].sizes(),
                (std::vector<int64_t>{8, 4}));
      EXPECT_EQ(m->named_parameters()["encoder.blocks.1.ff.wo.weight"].sizes(), (std::vector<int64_t>{d, dff}));
    }
  }
}

TEST(T5, PresetSizes) {
  // HF t5-small (T5ForConditionalGeneration, tied) has 60,506,624 parameters.
  T5 small(T5Config::preset("t5-small"));
  EXPECT_EQ(small->num_parameters(), 60506624);
  auto base = T5Config::preset("t5-base");
  EXPECT_EQ(base.d_model, 768);
  EXPECT_EQ(base.n_layers, 12);
  EXPECT_EQ(base.n_heads, 12);
  auto large = T5Config::preset("t5-large");
  EXPECT_EQ(large.d_model, 1024);
  EXPECT_EQ(large.n_decoder_layers, 24);
  EXPECT_EQ(large.d_ff, 4096);
  EXPECT_THROW(T5Config::preset("t5-huge"), engram::core::UserError);
  auto bad = T5Config::preset("tiny");
  bad.feed_forward = "swish";
  EXPECT_THROW(bad.validate(), engram::core::UserError);
  EXPECT_THROW(T5{bad}, engram::core::UserError);
}

TEST(T5, RelativePositionBucketsMatchHandComputedHF) {
  // HF: bidirectional halves num_buckets (nb) and adds nb for rel > 0, then uses |rel|;
  // causal uses n = max(-rel, 0). max_exact = nb / 2; n < max_exact -> n; otherwise
  // max_exact + int(log(n / max_exact) / log(max_distance / max_exact) * (nb - max_exact)),
  // capped at nb - 1.
  // Bidirectional, 32 buckets, max distance 128: nb = 16, max_exact = 8.
  //   0 -> 0;  3 -> 16 + 3 = 19;  -3 -> 3;  -8 -> 8 + int(log 1 / log 16 * 8) = 8;
  //   20 -> 16 + 8 + int(log 2.5 / log 16 * 8) = 16 + 8 + int(2.644) = 26;
  //   -200 -> min(8 + int(log 25 / log 16 * 8) = 8 + int(9.288) = 17, 15) = 15;
  //   127 -> 16 + 8 + int(log 15.875 / log 16 * 8) = 16 + 8 + int(7.977) = 31.
  EXPECT_EQ(to_vec(buckets({0, 3, -3, -8, 20, -200, 127}, true, 32, 128)),
            (std::vector<int64_t>{0, 19, 3, 8, 26, 15, 31}));
  // Causal, 32 buckets, max distance 128: nb = 32, max_exact = 16.
  //   5 (future) -> 0;  -5 -> 5;  -16 -> 16;  -40 -> 16 + int(log 2.5 / log 8 * 16) = 16 + int(7.05) = 23;
  //   -1000 -> min(16 + int(log 62.5 / log 8 * 16) = 16 + int(31.82) = 47, 31) = 31.
  EXPECT_EQ(to_vec(buckets({5, -5, -16, -40, -1000}, false, 32, 128)), (std::vector<int64_t>{0, 5, 16, 23, 31}));
  // Bidirectional, 8 buckets, max distance 16 (the tiny preset): nb = 4, max_exact = 2.
  //   1 -> 4 + 1 = 5;  -2 -> 2;  -5 -> 2 + int(log 2.5 / log 8 * 2) = 2 + int(0.88) = 2;
  //   -9 -> 2 + int(log 4.5 / log 8 * 2) = 2 + int(1.447) = 3;  6 -> 4 + 2 + int(log 3 / log 8 * 2) = 4 + 2 + 1 = 7.
  EXPECT_EQ(to_vec(buckets({1, -2, -5, -9, 6}, true, 8, 16)), (std::vector<int64_t>{5, 2, 2, 3, 7}));
}

TEST(T5, EncoderPaddingInvariance) {
  auto m = tiny_model(1);
  torch::NoGradGuard ng;
  auto a = torch::tensor({{5, 9, 13, 2, 7}}, torch::kLong);
  auto b = torch::tensor({{11, 3, 4}}, torch::kLong);
  auto ref_a = m->encode(a);
  auto ref_b = m->encode(b);
  // Right-padded batch with junk pad ids; the mask hides them.
  auto ids = torch::tensor({{5, 9, 13, 2, 7, 0, 0}, {11, 3, 4, 17, 17, 17, 17}}, torch::kLong);
  auto mask = torch::tensor({{1, 1, 1, 1, 1, 0, 0}, {1, 1, 1, 0, 0, 0, 0}}, torch::kLong);
  auto out = m->encode(ids, mask);
  ASSERT_EQ(out.sizes(), (std::vector<int64_t>{2, 7, 32}));
  EXPECT_TRUE(torch::allclose(out[0].slice(0, 0, 5), ref_a[0], 1e-5, 1e-5));
  EXPECT_TRUE(torch::allclose(out[1].slice(0, 0, 3), ref_b[0], 1e-5, 1e-5));
  // Without the mask the pads leak into the real positions.
  auto leaky = m->encode(ids);
  EXPECT_FALSE(torch::allclose(leaky[1].slice(0, 0, 3), ref_b[0], 1e-4, 1e-4));
}

TEST(T5, DecoderIsCausal) {
  auto m = tiny_model(2);
  torch::NoGradGuard ng;
  auto enc = m->encode(torch::tensor({{1, 2, 3, 4}}, torch::kLong));
  auto q = torch::randn({1, 6, 32});
  auto out = m->decode(q, enc);
  auto q2 = q.clone();
  q2[0][3] += torch::randn({32});
  auto out2 = m->decode(q2, enc);
  EXPECT_TRUE(torch::allclose(out.slice(1, 0, 3), out2.slice(1, 0, 3), 1e-6, 1e-6));
  for (int64_t t = 3; t < 6; ++t) EXPECT_FALSE(torch::allclose(out[0][t], out2[0][t], 1e-4, 1e-4)) << t;
  // Same with token ids.
  auto d1 = m->decode_ids(torch::tensor({{0, 5, 6, 7}}, torch::kLong), enc);
  auto d2 = m->decode_ids(torch::tensor({{0, 5, 9, 7}}, torch::kLong), enc);
  EXPECT_TRUE(torch::allclose(d1.slice(1, 0, 2), d2.slice(1, 0, 2), 1e-6, 1e-6));
  EXPECT_FALSE(torch::allclose(d1.slice(1, 2, 4), d2.slice(1, 2, 4), 1e-4, 1e-4));
}

TEST(T5, DecodeFromQueryEmbeddingsBatched) {
  auto m = tiny_model(3, "gated-gelu");
  torch::NoGradGuard ng;
  const int64_t B = 3, T = 5, S = 6;
  auto ids = torch::randint(1, 64, {B, S}, torch::kLong);
  auto mask = torch::ones({B, S}, torch::kLong);
  auto enc = m->encode(ids, mask);
  auto queries = torch::randn({T, 32}) * 0.02;  // learned Q, tiled over the batch
  auto out = m->decode(queries.unsqueeze(0).expand({B, T, 32}), enc);
  ASSERT_EQ(out.sizes(), (std::vector<int64_t>{B, T, 32}));
  EXPECT_TRUE(torch::isfinite(out).all().item<bool>());
  // Rows are independent: each equals its own B = 1 run, and different documents differ.
  for (int64_t b = 0; b < B; ++b) {
    auto single = m->decode(queries.unsqueeze(0), m->encode(ids.slice(0, b, b + 1)));
    EXPECT_TRUE(torch::allclose(out.slice(0, b, b + 1), single, 1e-5, 1e-5)) << b;
  }
  EXPECT_FALSE(torch::allclose(out[0], out[1], 1e-4, 1e-4));
  // Gradients reach the queries (they are trained).
  torch::GradMode::set_enabled(true);
  auto qp = queries.clone().requires_grad_(true);
  m->decode(qp.unsqueeze(0).expand({B, T, 32}), enc.detach()).sum().backward();
  torch::GradMode::set_enabled(false);
  ASSERT_TRUE(qp.grad().defined());
  EXPECT_GT(qp.grad().abs().sum().item<double>(), 0.0);
}

TEST(T5, NoEncoderMaskQuirkAttendsToPads) {
  auto m = tiny_model(4);
  torch::NoGradGuard ng;
  auto ids = torch::tensor({{5, 9, 13, 0, 0, 0}}, torch::kLong);
  auto mask = torch::tensor({{1, 1, 1, 0, 0, 0}}, torch::kLong);
  auto enc = m->encode(ids, mask);
  auto q = torch::randn({1, 4, 32});
  auto masked = m->decode(q, enc, mask);
  auto quirk = m->decode(q, enc);  // MAC: no encoder mask
  EXPECT_FALSE(torch::allclose(masked, quirk, 1e-4, 1e-4));
  // The masked path equals decoding over the real positions only.
  auto trimmed = m->decode(q, enc.slice(1, 0, 3));
  EXPECT_TRUE(torch::allclose(masked, trimmed, 1e-5, 1e-5));
}

TEST(T5, Bf16AutocastKeepsThePaddingMaskAndTheFloat32Values) {
  // mac.train.bf16: under CPU bf16 autocast the cross-attention's scores are bf16; masking them
  // once threw ("cannot be converted to type at::BFloat16 without overflow").
  auto m = tiny_model(7);
  torch::NoGradGuard ng;
  auto ids = torch::tensor({{5, 9, 13, 2, 7, 0, 0}, {11, 3, 4, 17, 17, 17, 17}}, torch::kLong);
  auto mask = torch::tensor({{1, 1, 1, 1, 1, 0, 0}, {1, 1, 1, 0, 0, 0, 0}}, torch::kLong);
  auto q = torch::randn({2, 4, 32});
  auto reference = m->decode(q, m->encode(ids, mask), mask);
  at::Tensor low, again;
  {
    engram::train::Bf16Autocast autocast(true);
    low = m->decode(q, m->encode(ids, mask), mask);
  }
  EXPECT_FALSE(torch::equal(low.to(at::kFloat), reference));  // autocast did run the linears in bf16
  const double scale = reference.abs().max().item<double>();
  EXPECT_LT((low.to(at::kFloat) - reference).abs().max().item<double>(), 0.05 * scale);
  // The pads stay hidden: changing them leaves the bf16 result unchanged.
  auto other = ids.clone();
  other[1].slice(0, 3, 7).fill_(42);
  {
    engram::train::Bf16Autocast autocast(true);
    again = m->decode(q, m->encode(other, mask), mask);
  }
  EXPECT_TRUE(torch::equal(again, low));
}

TEST(T5, TiedLmHeadScalesByInverseSqrtDModel) {
  auto m = tiny_model(5);
  torch::NoGradGuard ng;
  auto ids = torch::tensor({{3, 4, 5}}, torch::kLong);
  auto dec = torch::tensor({{0, 7}}, torch::kLong);
  auto logits = m->forward(ids, torch::ones({1, 3}, torch::kLong), dec);
  ASSERT_EQ(logits.sizes(), (std::vector<int64_t>{1, 2, 64}));
  auto h = m->decode_ids(dec, m->encode(ids));
  auto expected = torch::matmul(h / std::sqrt(32.0), m->named_parameters()["shared.weight"].t());
  EXPECT_TRUE(torch::allclose(logits, expected, 1e-5, 1e-5));
  auto untied = tiny_model(5, "relu", false);
  auto h2 = untied->decode_ids(dec, untied->encode(ids));
  EXPECT_TRUE(torch::allclose(untied->lm_logits(h2),
                              torch::matmul(h2, untied->named_parameters()["lm_head.weight"].t()), 1e-5, 1e-5));
}

TEST(T5, DropoutOnlyInTrainMode) {
  auto c = T5Config::preset("tiny");
  c.dropout = 0.5;
  torch::manual_seed(6);
  T5 m(c);
  torch::NoGradGuard ng;
  auto ids = torch::tensor({{3, 4, 5, 6}}, torch::kLong);
  m->eval();
  EXPECT_TRUE(torch::equal(m->encode(ids), m->encode(ids)));
  m->train();
  EXPECT_FALSE(torch::allclose(m->encode(ids), m->encode(ids)));
}
