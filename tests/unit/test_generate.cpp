// Generation with the real Decoder: greedy vs a cache-free naive loop, batching with left padding,
// EOS, beam search (HF BeamSearchScorer semantics), diverse group beam search, the prefix path.
#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "core/error.h"
#include "model/decoder.h"
#include "model/generate.h"

using engram::model::Decoder;
using engram::model::DecoderConfig;
using engram::model::ForwardOptions;
using engram::model::generate;
using engram::model::generate_hypotheses;
using engram::model::GenerateOptions;
using engram::model::Prefix;

namespace {

using Tokens = std::vector<int32_t>;

Decoder tiny_decoder(uint64_t seed, const std::string& preset = "gpt2") {
  DecoderConfig sizes;
  sizes.vocab_size = 32;
  sizes.d_model = 32;
  sizes.n_layers = 2;
  sizes.n_heads = 4;
  sizes.d_ff = 64;
  sizes.max_positions = 64;
  auto c = DecoderConfig::preset(preset, sizes);
  c.init_std = 0.3;  // peaked logits: few near-ties in argmax / top-k
  c.dropout = 0.0;
  torch::manual_seed(seed);
  Decoder m(c);
  m->eval();
  return m;
}

Prefix random_prefix(const Decoder& m, int64_t B, int64_t P, uint64_t seed) {
  torch::manual_seed(seed);
  const auto& c = m->config();
  Prefix p;
  for (int64_t l = 0; l < c.n_layers; ++l) {
    p.keys.push_back(torch::randn({B, c.n_heads, P, c.head_dim()}));
    p.values.push_back(torch::randn({B, c.n_heads, P, c.head_dim()}));
  }
  return p;
}

Prefix slice_prefix(const Prefix& p, int64_t b) {
  Prefix out;
  for (auto& k : p.keys) out.keys.push_back(k.slice(0, b, b + 1));
  for (auto& v : p.values) out.values.push_back(v.slice(0, b, b + 1));
  return out;
}

at::Tensor as_ids(const Tokens& seq) {
  std::vector<int64_t> v(seq.begin(), seq.end());
  return torch::tensor(v, torch::kLong).view({1, -1});
}

// Recomputes the full forward at every step (no cache, no mask) and takes the argmax.
Tokens naive_greedy(Decoder& m, const Tokens& prompt, int64_t n, int32_t eos = -1, const Prefix* prefix = nullptr) {
  torch::NoGradGuard ng;
  Tokens seq = prompt, out;
  for (int64_t i = 0; i < n; ++i) {
    ForwardOptions fo;
    fo.prefix = prefix;
    auto logits = m->forward(as_ids(seq), fo).logits;
    const auto t = static_cast<int32_t>(logits[0][logits.size(1) - 1].argmax().item<int64_t>());
    if (t == eos) break;
    out.push_back(t);
    seq.push_back(t);
  }
  return out;
}

// Sum of the model's log-probs of `gen` after `prompt` (one full forward).
double sequence_logprob(Decoder& m, const Tokens& prompt, const Tokens& gen) {
  torch::NoGradGuard ng;
  Tokens seq = prompt;
  seq.insert(seq.end(), gen.begin(), gen.end());
  auto lp = torch::log_softmax(m->forward(as_ids(seq)).logits[0].to(torch::kDouble), -1);
  double s = 0;
  for (size_t i = 0; i < gen.size(); ++i) s += lp[prompt.size() - 1 + i][gen[i]].item<double>();
  return s;
}

const std::vector<Tokens> kPrompts = {{3, 7, 1, 9, 4, 12}, {5}, {8, 2, 30}, {17, 17, 6, 11}};

GenerateOptions greedy_opts(int64_t n, int32_t eos = -1) {
  GenerateOptions o;
  o.max_new_tokens = n;
  o.eos_id = eos;
  return o;
}

GenerateOptions beam_opts(int64_t n, int beams, int32_t eos = -1) {
  GenerateOptions o;
  o.strategy = GenerateOptions::Strategy::Beam;
  o.max_new_tokens = n;
  o.num_beams = beams;
  o.eos_id = eos;
  return o;
}

GenerateOptions diverse_opts(int64_t n, int beams, int groups, double penalty, int32_t eos = -1) {
  GenerateOptions o;
  o.strategy = GenerateOptions::Strategy::DiverseBeam;
  o.max_new_tokens = n;
  o.num_beams = beams;
  o.num_beam_groups = groups;
  o.diversity_penalty = penalty;
  o.eos_id = eos;
  return o;
}

}  // namespace

TEST(Generate, GreedyEqualsNaiveFullForwardLoop) {
  for (uint64_t seed : {0, 1}) {
    auto m = tiny_decoder(seed);
    for (const auto& p : kPrompts) {
      auto got = generate(m, {p}, greedy_opts(10));
      ASSERT_EQ(got.size(), 1u);
      EXPECT_EQ(got[0].size(), 10u);
      EXPECT_EQ(got[0], naive_greedy(m, p, 10)) << "seed " << seed;
    }
  }
}

TEST(Generate, BatchedLeftPaddedPromptsEqualOneByOne) {
  for (std::string preset : {"gpt2", "llama", "alibi-parallel"}) {
    auto m = tiny_decoder(2, preset);
    auto batched = generate(m, kPrompts, greedy_opts(8));
    ASSERT_EQ(batched.size(), kPrompts.size());
    for (size_t i = 0; i < kPrompts.size(); ++i) {
      EXPECT_EQ(batched[i], generate(m, {kPrompts[i]}, greedy_opts(8))[0]) << preset << " prompt " << i;
      EXPECT_EQ(batched[i], naive_greedy(m, kPrompts[i], 8)) << preset << " prompt " << i;
    }
    auto beam_batched = generate(m, kPrompts, beam_opts(6, 4));
    auto div_batched = generate(m, kPrompts, diverse_opts(6, 12, 4, 10.0));
    for (size_t i = 0; i < kPrompts.size(); ++i) {
      EXPECT_EQ(beam_batched[i], generate(m, {kPrompts[i]}, beam_opts(6, 4))[0]) << preset << " prompt " << i;
      EXPECT_EQ(div_batched[i], generate(m, {kPrompts[i]}, diverse_opts(6, 12, 4, 10.0))[0])
          << preset << " prompt " << i;
    }
  }
}

TEST(Generate, EosStopsItsRowOnly) {
  auto m = tiny_decoder(3);
  auto free = generate(m, kPrompts, greedy_opts(10));
  const int32_t eos = free[0][2];  // the first prompt stops before its third token
  auto stopped = generate(m, kPrompts, greedy_opts(10, eos));
  bool some_row_ran_on = false;
  for (size_t i = 0; i < kPrompts.size(); ++i) {
    Tokens expected(free[i].begin(), std::find(free[i].begin(), free[i].end(), eos));
    EXPECT_EQ(stopped[i], expected) << i;
    EXPECT_EQ(stopped[i], naive_greedy(m, kPrompts[i], 10, eos)) << i;
    some_row_ran_on |= expected.size() == 10;
  }
  EXPECT_LE(stopped[0].size(), 2u);
  if (!some_row_ran_on) GTEST_LOG_(INFO) << "every row hit EOS";
}

TEST(Generate, BeamWithOneBeamEqualsGreedy) {
  for (uint64_t seed : {4, 5}) {
    auto m = tiny_decoder(seed);
    auto free = generate(m, kPrompts, greedy_opts(8));
    for (int32_t eos : {-1, free[1][3], free[2][0]}) {
      EXPECT_EQ(generate(m, kPrompts, beam_opts(8, 1, eos)), generate(m, kPrompts, greedy_opts(8, eos)))
          << "seed " << seed << " eos " << eos;
    }
  }
}

TEST(Generate, BeamLogProbAtLeastGreedy) {
  int strictly_better = 0;
  for (uint64_t seed = 10; seed < 15; ++seed) {
    auto m = tiny_decoder(seed);
    auto greedy = generate(m, kPrompts, greedy_opts(8));
    auto beam = generate(m, kPrompts, beam_opts(8, 4));
    auto hyps = generate_hypotheses(m, kPrompts, beam_opts(8, 4));
    for (size_t i = 0; i < kPrompts.size(); ++i) {
      ASSERT_EQ(beam[i].size(), 8u);
      const double g = sequence_logprob(m, kPrompts[i], greedy[i]);
      const double b = sequence_logprob(m, kPrompts[i], beam[i]);
      EXPECT_GE(b, g - 1e-4) << "seed " << seed << " prompt " << i;
      strictly_better += b > g + 1e-4;
      // The reported beam score is that log-prob (no EOS: all lengths equal, no penalties).
      EXPECT_NEAR(hyps[i][0].sum_logprobs, b, 1e-3);
      EXPECT_EQ(hyps[i][0].tokens, beam[i]);
      EXPECT_EQ(hyps[i].size(), 4u);
      for (size_t h = 1; h < hyps[i].size(); ++h) EXPECT_GE(hyps[i][h - 1].score, hyps[i][h].score);
    }
  }
  EXPECT_GT(strictly_better, 0);  // beam search actually searched
}

TEST(Generate, BeamLengthPenaltyAndEos) {
  auto m = tiny_decoder(6);
  auto free = generate(m, kPrompts, greedy_opts(8));
  const int32_t eos = free[3][1];
  for (double lp : {0.0, 1.0, 2.0}) {
    auto o = beam_opts(8, 4, eos);
    o.length_penalty = lp;
    auto hyps = generate_hypotheses(m, kPrompts, o);
    for (size_t i = 0; i < kPrompts.size(); ++i) {
      ASSERT_FALSE(hyps[i].empty());
      for (const auto& h : hyps[i]) {
        EXPECT_EQ(std::count(h.tokens.begin(), h.tokens.end(), eos), 0);
        const double len = static_cast<double>(kPrompts[i].size() + h.tokens.size());
        EXPECT_NEAR(h.score, h.sum_logprobs / std::pow(len, lp), 1e-4);
        // Finished hypotheses: sum_logprobs is the model log-prob of tokens + EOS.
        Tokens with_eos = h.tokens;
        if (h.finished_by_eos) with_eos.push_back(eos);
        EXPECT_NEAR(h.sum_logprobs, sequence_logprob(m, kPrompts[i], with_eos), 1e-3);
      }
    }
  }
}

TEST(Generate, DiverseOneGroupNoPenaltyEqualsBeam) {
  for (uint64_t seed : {7, 8}) {
    auto m = tiny_decoder(seed);
    auto free = generate(m, kPrompts, greedy_opts(8));
    for (int32_t eos : {-1, free[0][2]}) {
      EXPECT_EQ(generate(m, kPrompts, diverse_opts(8, 4, 1, 0.0, eos)), generate(m, kPrompts, beam_opts(8, 4, eos)));
    }
  }
}

TEST(Generate, DiversityPenaltySeparatesGroups) {
  auto m = tiny_decoder(9);
  // MAC's evaluation settings: 12 beams, 4 groups, penalty 10.
  auto hyps = generate_hypotheses(m, kPrompts, diverse_opts(6, 12, 4, 10.0));
  auto same = generate_hypotheses(m, kPrompts, diverse_opts(6, 12, 4, 0.0));
  for (size_t i = 0; i < kPrompts.size(); ++i) {
    std::vector<const engram::model::Hypothesis*> best(4, nullptr), best_same(4, nullptr);
    for (const auto& h : hyps[i])  // sorted best first
      if (!best[h.group]) best[h.group] = &h;
    for (const auto& h : same[i])
      if (!best_same[h.group]) best_same[h.group] = &h;
    std::set<int32_t> first;
    for (int g = 0; g < 4; ++g) {
      ASSERT_TRUE(best[g] && best_same[g]) << "group " << g;
      ASSERT_FALSE(best[g]->tokens.empty());
      first.insert(best[g]->tokens[0]);
      // Without a penalty every group runs the same beam search.
      EXPECT_EQ(best_same[g]->tokens, best_same[0]->tokens);
    }
    EXPECT_EQ(first.size(), 4u) << "prompt " << i;
    // The answer is the best hypothesis over all groups.
    EXPECT_EQ(generate(m, {kPrompts[i]}, diverse_opts(6, 12, 4, 10.0))[0], hyps[i][0].tokens);
  }
}

TEST(Generate, EmptyPrefixEqualsNoPrefix) {
  auto m = tiny_decoder(11);
  Prefix empty;
  EXPECT_EQ(generate(m, kPrompts, greedy_opts(6), &empty), generate(m, kPrompts, greedy_opts(6)));
  EXPECT_EQ(generate(m, kPrompts, beam_opts(6, 3), &empty), generate(m, kPrompts, beam_opts(6, 3)));
  auto zero = random_prefix(m, static_cast<int64_t>(kPrompts.size()), 0, 1);
  EXPECT_EQ(zero.length(), 0);
  EXPECT_EQ(generate(m, kPrompts, greedy_opts(6), &zero), generate(m, kPrompts, greedy_opts(6)));
}

TEST(Generate, PrefixMatchesNaiveLoopWithPrefix) {
  for (std::string preset : {"gpt2", "llama"}) {
    auto m = tiny_decoder(12, preset);
    const int64_t B = static_cast<int64_t>(kPrompts.size());
    auto prefix = random_prefix(m, B, 3, 5);
    auto with = generate(m, kPrompts, greedy_opts(8), &prefix);
    EXPECT_NE(with, generate(m, kPrompts, greedy_opts(8))) << preset;  // the prefix matters
    for (int64_t i = 0; i < B; ++i) {
      auto pi = slice_prefix(prefix, i);
      EXPECT_EQ(with[i], naive_greedy(m, kPrompts[i], 8, -1, &pi)) << preset << " prompt " << i;
    }
    // Beams: the prefix is repeated per beam; batched equals one-by-one.
    auto beams = generate(m, kPrompts, diverse_opts(6, 6, 2, 5.0), &prefix);
    for (int64_t i = 0; i < B; ++i) {
      auto pi = slice_prefix(prefix, i);
      EXPECT_EQ(beams[i], generate(m, {kPrompts[i]}, diverse_opts(6, 6, 2, 5.0), &pi)[0]) << preset << " " << i;
    }
    // A batch-1 prefix is shared by every prompt.
    auto p0 = slice_prefix(prefix, 0);
    auto shared = generate(m, kPrompts, greedy_opts(5), &p0);
    for (int64_t i = 0; i < B; ++i) EXPECT_EQ(shared[i], naive_greedy(m, kPrompts[i], 5, -1, &p0));
  }
}

TEST(Generate, OptionValidation) {
  auto m = tiny_decoder(13);
  using engram::core::UserError;
  EXPECT_THROW(generate(m, kPrompts, diverse_opts(4, 12, 5, 1.0)), UserError);  // 12 % 5
  EXPECT_THROW(generate(m, kPrompts, diverse_opts(4, 4, 0, 1.0)), UserError);
  EXPECT_THROW(generate(m, kPrompts, beam_opts(4, 0)), UserError);
  auto o = greedy_opts(4);
  o.num_beams = 3;
  EXPECT_THROW(generate(m, kPrompts, o), UserError);
  EXPECT_THROW(engram::core::parse_enum<GenerateOptions::Strategy>("nucleus", "--strategy"), UserError);
  o = beam_opts(4, 4);
  o.num_beam_groups = 2;
  EXPECT_THROW(generate(m, kPrompts, o), UserError);
  EXPECT_THROW(generate(m, kPrompts, greedy_opts(-1)), UserError);
  EXPECT_THROW(generate(m, {{1, 2}, {}}, greedy_opts(4)), UserError);
  EXPECT_THROW(generate(m, {{1, 99}}, greedy_opts(4)), UserError);
  EXPECT_THROW(generate(m, kPrompts, beam_opts(4, 20)), UserError);  // 40 candidates > vocab 32
  auto bad_prefix = random_prefix(m, 2, 3, 0);                       // batch 2 for 4 prompts
  EXPECT_THROW(generate(m, kPrompts, greedy_opts(4), &bad_prefix), UserError);
  // Zero new tokens: empty outputs.
  auto none = generate(m, kPrompts, beam_opts(0, 4));
  ASSERT_EQ(none.size(), kPrompts.size());
  for (auto& t : none) EXPECT_TRUE(t.empty());
}

TEST(Generate, RestoresTrainingModeAndNeedsNoGrad) {
  auto m = tiny_decoder(14);
  m->train();
  auto out = generate(m, kPrompts, beam_opts(4, 2));
  EXPECT_TRUE(m->is_training());
  m->eval();
  EXPECT_EQ(out, generate(m, kPrompts, beam_opts(4, 2)));
  EXPECT_FALSE(m->is_training());
}
