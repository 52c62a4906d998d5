// MAC modules (specs/mac.md 1.2-1.4) and bank aggregation (section 4): every batched
// computation against a plain per-token / per-slot / per-group reference.
#include <chrono>
#include <string>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "../common/mac_tiny_config.h"
#include "core/error.h"
#include "dist/thread_communicator.h"
#include "methods/mac/aggregate.h"
#include "methods/mac/meta_train.h"
#include "methods/mac/modules.h"
#include "model/decoder.h"

using namespace engram;
using mac::Memory;

namespace {

mac::MacConfig tiny_config(int64_t T = 4, int64_t L = 2, int64_t P = 2) { return checks::tiny_mac_config(T, L, P); }

void expect_close(const at::Tensor& a, const at::Tensor& b, double tol = 1e-5) {
  ASSERT_EQ(a.sizes(), b.sizes());
  EXPECT_LT((a - b).abs().max().item<double>(), tol);
}

}  // namespace

TEST(MacModules, TokenMlpsAreOneResidualMlpPerToken) {
  torch::manual_seed(1);
  for (int64_t d_in : {16, 24}) {  // identity skip and projected skip
    mac::TokenMlps mlps(3, d_in, 16);
    at::Tensor x = torch::randn({5, 3, d_in});
    at::Tensor y = mlps(x);
    auto p = mlps->named_parameters();
    for (int64_t t = 0; t < 3; ++t) {
      at::Tensor xt = x.select(1, t);
      at::Tensor n = torch::layer_norm(xt, {d_in}) * p["ln_weight"][t] + p["ln_bias"][t];
      at::Tensor h = torch::tanh(torch::matmul(n, p["fc1_weight"][t]) + p["fc1_bias"][t]);
      at::Tensor skip = d_in == 16 ? xt : torch::matmul(xt, p["skip_weight"][t]) + p["skip_bias"][t];
      expect_close(y.select(1, t), skip + torch::matmul(h, p["fc2_weight"][t]) + p["fc2_bias"][t]);
    }
  }
}

TEST(MacModules, PrefixExpansionFollowsTheRemainderRule) {
  // n = 2PL = 24 slots from T = 12 tokens: every token twice, consecutively (distilgpt2).
  auto c = tiny_config(12, 6, 2);
  mac::PrefixHead head(c);
  at::Tensor source = head->named_buffers()["source"];
  for (int64_t j = 0; j < 24; ++j) EXPECT_EQ(source[j].item<int64_t>(), j / 2);
  // n = 20 from T = 8: r = 2, m = 4: tokens 0-3 three times, 4-7 twice.
  auto c2 = tiny_config(8, 5, 2);
  mac::PrefixHead head2(c2);
  std::vector<int64_t> expected{0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7};
  at::Tensor source2 = head2->named_buffers()["source"];
  for (int64_t j = 0; j < 20; ++j) EXPECT_EQ(source2[j].item<int64_t>(), expected[static_cast<size_t>(j)]);
}

TEST(MacModules, PrefixLayoutIsPeftPrefixTuning) {
  torch::manual_seed(2);
  auto c = tiny_config(4, 2, 2);  // n = 8 slots, H = 4, hd = 4
  mac::PrefixHead head(c);
  at::Tensor latent = torch::randn({3, 4, 16});
  at::Tensor slots = head->slots(latent);
  model::Prefix prefix = head(latent);
  ASSERT_EQ(prefix.keys.size(), 2u);
  EXPECT_EQ(prefix.keys[0].sizes(), (std::vector<int64_t>{3, 4, 2, 4}));
  for (int64_t l = 0; l < 2; ++l)
    for (int64_t p = 0; p < 2; ++p)
      for (int64_t h = 0; h < 4; ++h) {
        // slot j = p 2L + 2l + {0 keys, 1 values}; head h takes features [h hd, (h + 1) hd).
        expect_close(prefix.keys[l].select(1, h).select(1, p), slots.select(1, p * 4 + 2 * l).narrow(1, h * 4, 4));
        expect_close(prefix.values[l].select(1, h).select(1, p),
                     slots.select(1, p * 4 + 2 * l + 1).narrow(1, h * 4, 4));
      }
  // Each slot is its token plus a residual FFN of its own.
  auto params = head->named_parameters();
  at::Tensor x = latent.select(1, 1);  // slot 2 reads token 1 (8 slots / 4 tokens)
  at::Tensor n = torch::layer_norm(x, {16}) * params["ln_weight"][2] + params["ln_bias"][2];
  at::Tensor h = torch::gelu(torch::matmul(n, params["fc1_weight"][2]) + params["fc1_bias"][2]);
  expect_close(slots.select(1, 2), x + torch::matmul(h, params["fc2_weight"][2]) + params["fc2_bias"][2]);
}

TEST(MacModules, ConfigRejectsMoreSummaryTokensThanSlots) {
  auto c = tiny_config(9, 2, 2);  // 8 slots
  try {
    c.validate();
    FAIL() << "expected an error";
  } catch (const core::UserError& e) {
    EXPECT_NE(std::string(e.what()).find("mac.summary_tokens (9) must not exceed"), std::string::npos) << e.what();
  }
}

TEST(MacAggregator, MaskedEntriesAndSharedMemoryBehave) {
  torch::manual_seed(3);
  mac::Aggregator agg(tiny_config());
  agg->eval();
  at::Tensor z = torch::randn({2, 4, 16});
  at::Tensor memory = torch::randn({1, 12, 16});
  // A shared memory [1, S, d] equals the same memory repeated per question.
  expect_close(agg(z, memory), agg(z, memory.expand({2, 12, 16}).contiguous()));
  // Masked tokens have no influence: append garbage, mask it.
  at::Tensor garbage = torch::randn({1, 5, 16}) * 100;
  at::Tensor mask = torch::cat({torch::ones({1, 12}), torch::zeros({1, 5})}, 1);
  expect_close(agg(z, memory), agg(z, torch::cat({memory, garbage}, 1), mask), 1e-4);
  // Output changes with the memory (it is read at all; a rescaled memory is the same after LayerNorm).
  EXPECT_GT((agg(z, memory) - agg(z, memory + torch::randn({1, 12, 16}))).abs().max().item<double>(), 1e-3);
}

TEST(MacAggregator, AttentionWeightsAreEachBlocksSoftmaxOverTheMemoryTokens) {
  torch::manual_seed(5);
  auto config = tiny_config();
  mac::Aggregator agg(config);
  agg->eval();
  at::Tensor z = torch::randn({2, 4, 16});
  at::Tensor memory = torch::randn({1, 12, 16});
  at::Tensor mask = torch::ones({1, 12});
  mask.narrow(1, 9, 3).zero_();
  std::vector<at::Tensor> shared, copied;
  at::Tensor out = agg->forward(z, memory, mask, &shared);
  // The same weights whether the memory is shared by the questions (folded rows) or copied.
  agg->forward(z, memory.expand({2, 12, 16}).contiguous(), mask.expand({2, 12}), &copied);
  ASSERT_EQ(shared.size(), static_cast<size_t>(config.aggregator_blocks));
  ASSERT_EQ(copied.size(), shared.size());
  for (size_t b = 0; b < shared.size(); ++b) {
    ASSERT_EQ(shared[b].sizes(), (std::vector<int64_t>{2, config.aggregator_heads, 4, 12}));
    expect_close(shared[b], copied[b]);
    expect_close(shared[b].sum(-1), torch::ones({2, config.aggregator_heads, 4}));
    EXPECT_EQ(shared[b].narrow(-1, 9, 3).abs().max().item<double>(), 0.0);  // masked tokens
  }
  expect_close(out, agg(z, memory, mask));  // asking for the weights changes nothing
}

TEST(MacAggregator, AttentionOnAnEntrySumsItsTokens) {
  // One question, one head, two query tokens, three entries of T = 2 tokens.
  at::Tensor w = torch::tensor({0.1, 0.2, 0.3, 0.0, 0.25, 0.15, 0.5, 0.5, 0.0, 0.0, 0.0, 0.0}).view({1, 1, 2, 6});
  expect_close(mac::attention_per_entry(w, 2), torch::tensor({0.3, 0.3, 0.4, 1.0, 0.0, 0.0}).view({1, 1, 2, 3}));
  expect_close(mac::attention_on_entry(w, torch::tensor({0}, torch::kLong), 2), torch::tensor({0.3, 1.0}).view({1, 1, 2}));
  expect_close(mac::attention_on_entry(w, torch::tensor({2}, torch::kLong), 2), torch::tensor({0.4, 0.0}).view({1, 1, 2}));
  // Per question: question 0 reads entry 1, question 1 entry 2.
  at::Tensor two = torch::cat({w, w}, 0);
  expect_close(mac::attention_on_entry(two, torch::tensor({1, 2}, torch::kLong), 2),
               torch::tensor({0.3, 0.0, 0.4, 0.0}).view({2, 1, 2}));
}

TEST(MacAggregator, HierarchicalMatchesAHandWrittenTwoLevelReduction) {
  torch::manual_seed(4);
  mac::Aggregator agg(tiny_config());
  agg->eval();
  torch::NoGradGuard no_grad;
  const int64_t N = 11, M = 4;  // groups of 4, 4, 3 -> 3 pseudo-entries -> final call
  at::Tensor z0 = torch::randn({2, 4, 16});
  at::Tensor bank = torch::randn({N, 4, 16});
  mac::AggregationStats stats;
  at::Tensor got = mac::aggregate_hierarchical(agg, z0, Memory{bank.unsqueeze(0), {}}, M, &stats);
  for (int64_t q = 0; q < 2; ++q) {
    at::Tensor zq = z0.narrow(0, q, 1);
    std::vector<at::Tensor> pseudo;
    for (int64_t s = 0; s < N; s += M) {
      at::Tensor group = bank.narrow(0, s, std::min(M, N - s)).reshape({1, -1, 16});
      pseudo.push_back(agg(zq, group));
    }
    at::Tensor expected = agg(zq, torch::cat(pseudo, 1));
    expect_close(got.narrow(0, q, 1), expected, 1e-4);
  }
  EXPECT_EQ(stats.levels, 1);
  EXPECT_EQ(stats.calls, 2 * 3 + 2);
  // Streaming the groups in small chunks gives the same result.
  at::Tensor chunked = mac::aggregate(
      agg, z0, mac::reduce_memory(agg, z0, Memory{bank.unsqueeze(0), {}}, M, nullptr, /*max_elements=*/1));
  expect_close(chunked, got, 1e-5);
  // A bank no larger than M is aggregated flat.
  at::Tensor small = bank.narrow(0, 0, M).unsqueeze(0);
  expect_close(mac::aggregate_hierarchical(agg, z0, Memory{small, {}}, M),
               agg(z0, small.reshape({1, -1, 16})), 1e-5);
}

TEST(MacAggregator, SummaryCarryMixesEachGroupsEntriesByTheFinalBlocksAttention) {
  torch::manual_seed(4);
  mac::Aggregator agg(tiny_config());
  agg->eval();
  torch::NoGradGuard no_grad;
  at::Tensor z0 = torch::randn({2, 4, 16});
  at::Tensor bank = torch::randn({1, 8, 4, 16});  // 8 entries of T = 4: two groups of M = 4
  mac::Memory reduced = mac::reduce_memory(agg, z0, mac::Memory{bank, {}}, 4, nullptr, mac::kMaxElements,
                                           mac::Carry::Summary);
  ASSERT_EQ(reduced.rows.sizes(), (std::vector<int64_t>{2, 2, 4, 16}));
  for (int64_t g = 0; g < 2; ++g) {
    // One group on its own (a 3-D call): its entries' shares of the final block's attention.
    at::Tensor members = bank[0].narrow(0, 4 * g, 4);  // [4, T, d]
    std::vector<at::Tensor> attention;
    agg->forward(z0, members.reshape({1, 16, 16}), {}, &attention);
    at::Tensor share = mac::attention_per_entry(attention.back(), 4).mean({1, 2});  // [2 questions, 4 entries]
    expect_close(share.sum(-1), torch::ones({2}));
    at::Tensor expected = (share.view({2, 4, 1, 1}) * members.unsqueeze(0)).sum(1);  // [2, T, d]
    expect_close(reduced.rows.select(1, g), expected, 1e-5);
  }
}

TEST(MacAggregator, StreamedReductionEqualsLevelByLevelOverThreeLevels) {
  torch::manual_seed(8);
  mac::Aggregator agg(tiny_config());
  agg->eval();
  torch::NoGradGuard no_grad;
  const int64_t N = 40, M = 3;  // 40 -> 14 -> 5 -> 2 entries: three levels, short last groups
  at::Tensor z0 = torch::randn({2, 4, 16});
  at::Tensor bank = torch::randn({N, 4, 16});
  // Level by level, one question at a time, written out plainly.
  for (int64_t q = 0; q < 2; ++q) {
    at::Tensor zq = z0.narrow(0, q, 1);
    at::Tensor level = bank;  // [n, T, d]
    while (level.size(0) > M) {
      std::vector<at::Tensor> next;
      for (int64_t s = 0; s < level.size(0); s += M)
        next.push_back(agg(zq, level.narrow(0, s, std::min(M, level.size(0) - s)).reshape({1, -1, 16})));
      level = torch::cat(next, 0);
    }
    at::Tensor expected = agg(zq, level.reshape({1, -1, 16}));
    for (int64_t max_elements : {int64_t{1}, int64_t{100}, int64_t{1} << 22}) {
      mac::AggregationStats stats;
      at::Tensor got = mac::aggregate(
          agg, z0, mac::reduce_memory(agg, z0, Memory{bank.unsqueeze(0), {}}, M, &stats, max_elements));
      expect_close(got.narrow(0, q, 1), expected, 1e-4);
      EXPECT_EQ(stats.levels, 3);
      EXPECT_EQ(stats.calls, 2 * (14 + 5 + 2));  // reduction calls (the final one is not counted here)
    }
  }
}

TEST(MacAggregator, SharedMemoryWithPerQuestionMasksEqualsCopies) {
  torch::manual_seed(9);
  mac::Aggregator agg(tiny_config());
  agg->eval();
  torch::NoGradGuard no_grad;
  at::Tensor z = torch::randn({3, 2, 4, 16});       // 3 questions x 2 groups
  at::Tensor memory = torch::randn({1, 2, 10, 16});  // shared by the questions
  at::Tensor mask = torch::rand({3, 2, 10}) > 0.3;
  at::Tensor copies = memory.expand({3, 2, 10, 16}).contiguous();
  expect_close(agg(z, memory, mask), agg(z, copies, mask), 1e-5);
  expect_close(agg(z, memory), agg(z, copies), 1e-5);
  at::Tensor z1 = torch::randn({3, 1, 4, 16});      // one query per question against both groups
  expect_close(agg(z1, memory, mask), agg(z1.expand({3, 2, 4, 16}).contiguous(), copies, mask), 1e-5);
}

TEST(MacAggregator, ExcludingAnEntryEqualsRemovingIt) {
  torch::manual_seed(5);
  mac::Aggregator agg(tiny_config());
  agg->eval();
  torch::NoGradGuard no_grad;
  at::Tensor z0 = torch::randn({2, 4, 16});
  at::Tensor bank = torch::randn({6, 4, 16});
  // Question 0 may not see entry 2, question 1 not entry 5.
  at::Tensor valid = torch::ones({2, 6}, torch::kBool);
  valid[0][2] = false;
  valid[1][5] = false;
  at::Tensor got = mac::aggregate(agg, z0, Memory{bank.unsqueeze(0), valid});
  auto without = [&](int64_t row) {
    return torch::cat({bank.narrow(0, 0, row), bank.narrow(0, row + 1, 6 - row - 1)}).reshape({1, -1, 16});
  };
  expect_close(got.narrow(0, 0, 1), agg(z0.narrow(0, 0, 1), without(2)), 1e-4);
  expect_close(got.narrow(0, 1, 1), agg(z0.narrow(0, 1, 1), without(5)), 1e-4);
}

TEST(MacAggregator, DistributedFlatEqualsFlatAtEveryWorldSize) {
  torch::manual_seed(6);
  mac::Aggregator agg(tiny_config());
  agg->eval();
  at::Tensor z0 = torch::randn({3, 4, 16});
  at::Tensor bank = torch::randn({10, 4, 16});
  at::Tensor flat, hier;
  {
    torch::NoGradGuard no_grad;
    flat = mac::aggregate(agg, z0, Memory{bank.unsqueeze(0), {}});
    hier = mac::aggregate_hierarchical(agg, z0, Memory{bank.unsqueeze(0), {}}, 4);
  }
  for (int world : {1, 2, 3}) {
    dist::run_thread_ranks(world, std::chrono::seconds(30), [&](dist::Communicator& comm) {
      torch::NoGradGuard no_grad;
      const int64_t begin = 10 * comm.rank() / world, end = 10 * (comm.rank() + 1) / world;
      Memory shard{bank.narrow(0, begin, end - begin).unsqueeze(0), {}};
      at::Tensor got = mac::distributed_aggregate(agg, z0, shard, mac::kFlat, comm);
      EXPECT_LT((got - flat).abs().max().item<double>(), 1e-4) << "world " << world;
      if (world == 1) {
        at::Tensor h = mac::distributed_aggregate(agg, z0, shard, 4, comm);
        EXPECT_LT((h - hier).abs().max().item<double>(), 1e-5);
      }
    });
  }
}

TEST(MacModel, GradientsReachEveryTrainedPartAndTheFingerprintTracksTheAmortizer) {
  torch::manual_seed(7);
  auto c = tiny_config();
  mac::MacModel m(c);
  at::Tensor doc = torch::randint(2, 60, {3, 7});
  at::Tensor doc_mask = torch::ones({3, 7}, torch::kInt64);
  doc_mask[2][6] = 0;
  at::Tensor question = torch::randint(2, 60, {2, 5});
  at::Tensor bank = m->summarize(doc, doc_mask);
  EXPECT_EQ(bank.sizes(), (std::vector<int64_t>{3, 4, 16}));
  at::Tensor z = mac::aggregate(m->aggregator(), m->encode_question(question, torch::ones({2, 5}, torch::kInt64)),
                                Memory{bank.unsqueeze(0), {}});
  model::Prefix prefix = m->prefix_head()(z);
  at::Tensor loss = prefix.keys[1].pow(2).sum() + prefix.values[0].sum();
  loss.backward();
  for (const auto& p : m->named_parameters()) {
    if (p.key().find("relative_attention_bias") != std::string::npos) continue;  // T5 bias: buckets may be unused
    ASSERT_TRUE(p.value().grad().defined()) << p.key();
    EXPECT_GT(p.value().grad().abs().sum().item<double>(), 0) << p.key();
  }
  const std::string before = m->amortizer_fingerprint();
  EXPECT_EQ(before.size(), 16u);
  {
    torch::NoGradGuard no_grad;
    m->aggregator()->parameters()[0].add_(1.0);
  }
  EXPECT_EQ(m->amortizer_fingerprint(), before);
  {
    torch::NoGradGuard no_grad;
    m->named_parameters()["amortizer.queries"].add_(1e-3);
  }
  EXPECT_NE(m->amortizer_fingerprint(), before);
}

namespace {

// A tiny frozen LM of the MAC config's shape (d 16, H 4) and encoders as wide as it, as
// mac.read_with_lm requires.
model::Decoder tiny_lm(int64_t L = 2, const char* preset = "llama") {
  model::DecoderConfig sizes;
  sizes.vocab_size = 64;
  sizes.d_model = 16;
  sizes.n_layers = L;
  sizes.n_heads = 4;
  sizes.d_ff = 32;
  sizes.max_positions = 64;
  torch::manual_seed(5);
  model::Decoder lm(model::DecoderConfig::preset(preset, sizes));
  for (auto& p : lm->parameters()) p.requires_grad_(false);
  lm->eval();
  return lm;
}

mac::MacConfig reading_config() {
  auto c = tiny_config();
  c.amortizer.d_model = c.question.d_model = 16;
  c.read_with_lm = true;
  return c;
}

mac::ContextEncoderImpl& encoder(mac::MacModel& m, const char* name) {
  auto* e = dynamic_cast<mac::ContextEncoderImpl*>(m->named_children()[name].get());
  EXPECT_NE(e, nullptr);
  return *e;
}

}  // namespace

TEST(MacModel, ReadWithLmAddsTheLmStateToBothEncodersInputs) {
  auto c = reading_config();
  c.read_layer = 1;
  torch::manual_seed(3);
  mac::MacModel m(c);
  model::Decoder lm = tiny_lm();
  at::Tensor ids = torch::randint(2, 60, {3, 7});
  at::Tensor mask = torch::ones({3, 7}, torch::kInt64);
  mask[1][6] = 0;
  EXPECT_THROW(m->summarize(ids, mask), std::exception);  // no LM attached yet
  m->attach_lm(lm);
  model::ForwardOptions opt;
  opt.attention_mask = mask;
  opt.output_hidden_states = true;
  at::Tensor state = lm->forward(ids, opt).hidden_states[1];  // after block 1
  torch::NoGradGuard no_grad;
  expect_close(m->summarize(ids, mask), encoder(m, "amortizer").forward(ids, mask, state));
  expect_close(m->encode_question(ids, mask), encoder(m, "question_encoder").forward(ids, mask, state));
  // ... and the features matter: without them the summary differs.
  EXPECT_GT((m->summarize(ids, mask) - encoder(m, "amortizer").forward(ids, mask)).abs().max().item<double>(), 1e-3);
  // The summaries depend on the LM now, so its weights are part of the fingerprint.
  const std::string before = m->amortizer_fingerprint();
  lm->named_parameters()["wte.weight"].add_(1e-3);
  EXPECT_NE(m->amortizer_fingerprint(), before);
}

TEST(MacModel, PrefixViaLmIsMadeByEachLayersOwnProjections) {
  auto c = reading_config();
  c.prefix_via = mac::MacConfig::PrefixVia::Lm;
  c.P = 2;  // P L = 4 slots = T
  torch::manual_seed(4);
  mac::MacModel m(c);
  ASSERT_EQ(c.slots(), 4);
  model::Decoder lm = tiny_lm();
  m->attach_lm(lm);
  at::Tensor z = torch::randn({3, 4, 16});
  model::Prefix prefix = m->prefix(z);
  at::Tensor slots = m->prefix_head()->slots(z).view({3, 2, 2, 16});  // slot p L + l
  model::Prefix expected = lm->prefix_from_states({slots.select(2, 0), slots.select(2, 1)});
  ASSERT_EQ(prefix.keys.size(), 2u);
  for (size_t l = 0; l < 2; ++l) {
    EXPECT_EQ(prefix.keys[l].sizes(), (std::vector<int64_t>{3, 4, 2, 4}));
    expect_close(prefix.keys[l], expected.keys[l]);
    expect_close(prefix.values[l], expected.values[l]);
  }
  // Gradient reaches the MAC side through the frozen LM's projections.
  (prefix.keys[1].pow(2).sum() + prefix.values[0].sum()).backward();
  EXPECT_GT(m->named_parameters()["prefix.fc2_weight"].grad().abs().sum().item<double>(), 0);
}

TEST(MacModules, ConfigNamesTheReadingAndPrefixOptions) {
  auto expect_error = [](const mac::MacConfig& c, const std::string& text) {
    try {
      c.validate();
      ADD_FAILURE() << "expected an error with " << text;
    } catch (const core::UserError& e) {
      EXPECT_NE(std::string(e.what()).find(text), std::string::npos) << e.what();
    }
  };
  auto c = tiny_config();
  EXPECT_THROW(core::parse_enum<mac::MacConfig::PrefixVia>("both", "mac.prefix_via"), core::UserError);
  c = tiny_config();
  c.read_with_lm = true;  // T5 width 32, LM width 16
  expect_error(c, "must equal the base LM's width 16");
  c = reading_config();
  c.read_layer = 3;
  expect_error(c, "mac.read_layer must be in [0, 2]");
  c = tiny_config(4, 2, 1);
  c.prefix_via = mac::MacConfig::PrefixVia::Lm;  // P L = 2 slots < T = 4
  expect_error(c, "mac.summary_tokens (4) must not exceed");
}

TEST(MacMetaTrain, CurriculumGroupsDoubleInEqualStages) {
  // 16 questions, 400 curriculum steps: groups of 1, 2, 4, 8 for 100 steps each, then the bank.
  EXPECT_EQ(mac::curriculum_group(0, 400, 16), 1);
  EXPECT_EQ(mac::curriculum_group(99, 400, 16), 1);
  EXPECT_EQ(mac::curriculum_group(100, 400, 16), 2);
  EXPECT_EQ(mac::curriculum_group(250, 400, 16), 4);
  EXPECT_EQ(mac::curriculum_group(399, 400, 16), 8);
  EXPECT_EQ(mac::curriculum_group(400, 400, 16), 0);
  // 12 questions: 1, 2, 4 (8 is more than half).
  EXPECT_EQ(mac::curriculum_group(0, 300, 12), 1);
  EXPECT_EQ(mac::curriculum_group(299, 300, 12), 4);
  // 10 questions: stage 2 would group 4, which leaves no whole groups: 2.
  EXPECT_EQ(mac::curriculum_group(299, 300, 10), 2);
  // No curriculum, or a single question: the whole bank.
  EXPECT_EQ(mac::curriculum_group(0, 0, 16), 0);
  EXPECT_EQ(mac::curriculum_group(0, 400, 1), 0);
}

TEST(MacMetaTrain, MemoryGroupCapsTheCurriculumAndTheBank) {
  // No cap: the curriculum's groups, then the whole bank.
  EXPECT_EQ(mac::memory_group(250, 400, 16, 0), 4);
  EXPECT_EQ(mac::memory_group(400, 400, 16, 0), 0);
  // Cap 1: every question reads its own document alone, during the curriculum and after it.
  for (int64_t step : {0, 150, 399, 400, 5000}) EXPECT_EQ(mac::memory_group(step, 400, 16, 1), 1) << step;
  EXPECT_EQ(mac::memory_group(0, 0, 16, 1), 1);  // no curriculum at all
  // Cap 4: the curriculum grows to 4 and stays; with 12 questions a cap of 5 becomes 4 (whole groups).
  EXPECT_EQ(mac::memory_group(50, 400, 16, 4), 1);
  EXPECT_EQ(mac::memory_group(399, 400, 16, 4), 4);
  EXPECT_EQ(mac::memory_group(400, 400, 16, 4), 4);
  EXPECT_EQ(mac::memory_group(1000, 400, 12, 5), 4);
  EXPECT_EQ(mac::memory_group(1000, 400, 3, 8), 3);  // no more than the questions
}

TEST(MacMetaTrain, EachQuestionsMemoryHoldsItsOwnDocument) {
  // A global bank of 2 ranks x 4 rows, T = 1, d = 1, row r holding the value r; this is rank 1
  // (rows 4..7), whose first 4 rows are its trained questions' documents.
  at::Tensor bank = torch::arange(8, torch::kFloat32).view({8, 1, 1});
  auto whole = mac::question_memory(bank, 4, 0, 4);
  EXPECT_EQ(whole.memory.rows.sizes(), (std::vector<int64_t>{1, 8, 1, 1}));
  EXPECT_TRUE(torch::equal(whole.gold, torch::tensor({4, 5, 6, 7}, torch::kLong)));
  // Curriculum groups of 2 come from this rank's rows, never rank 0's.
  auto pairs = mac::question_memory(bank, 4, 2, 4);
  EXPECT_TRUE(torch::equal(pairs.memory.rows.view({4, 2}),
                           torch::tensor({4.f, 5.f, 4.f, 5.f, 6.f, 7.f, 6.f, 7.f}).view({4, 2})));
  EXPECT_TRUE(torch::equal(pairs.gold, torch::tensor({0, 1, 0, 1}, torch::kLong)));
  for (int64_t i = 0; i < 4; ++i)  // the gold entry is the question's own row
    EXPECT_EQ(pairs.memory.rows[i][pairs.gold[i].item<int64_t>()].item<float>(), 4.f + static_cast<float>(i));
  auto own = mac::question_memory(bank, 4, 1, 4);
  EXPECT_TRUE(torch::equal(own.memory.rows.view({4}), torch::tensor({4.f, 5.f, 6.f, 7.f})));
  EXPECT_THROW(mac::question_memory(bank, 4, 3, 4), std::exception);
}

TEST(MacMetaTrain, ContextDistillationComparesEachStudentTokenWithTheTeachersSameToken) {
  // Student batch of 3 rows, right-padded to 4 tokens (lengths 2, 4, 3); teachers for rows 0 and
  // 2 only, left-padded to 6 columns, so student token j of a row of length n is teacher column
  // 6 - n + j. Two layers of width 2.
  at::Tensor mask = torch::tensor({1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 0}, torch::kLong).view({3, 4});
  at::Tensor rows = torch::tensor({0, 2}, torch::kLong);
  torch::manual_seed(5);
  std::vector<at::Tensor> student{torch::randn({3, 4, 2}), torch::randn({3, 4, 2})};
  std::vector<at::Tensor> teacher{torch::randn({2, 6, 2}), torch::randn({2, 6, 2})};
  for (auto& t : student) t.requires_grad_();
  // Counted: every real token except row 2's first (as answer-predicting positions would be).
  at::Tensor counted = mask.to(torch::kBool).clone();
  counted[2][0] = false;
  at::Tensor loss = engram::mac::context_distillation_loss(student, mask, teacher, rows, counted);
  // By hand: per layer, squared error over the pairs, divided by the teachers' squared norms.
  double expected = 0;
  for (int l = 0; l < 2; ++l) {
    double error = 0, scale = 0;
    const int64_t lengths[] = {2, 3};
    for (int r = 0; r < 2; ++r) {
      const int64_t row = rows[r].item<int64_t>(), n = lengths[r];
      for (int64_t j = row == 2 ? 1 : 0; j < n; ++j) {
        at::Tensor s = student[l][row][j], t = teacher[l][r][6 - n + j];
        error += (s - t).pow(2).sum().item<double>();
        scale += t.pow(2).sum().item<double>();
      }
    }
    expected += error / scale / 2;
  }
  EXPECT_NEAR(loss.item<double>(), expected, 1e-5);
  // Gradient only where a teacher compares: row 1 (no teacher), padding and row 2's uncounted
  // first token get none.
  loss.backward();
  for (const auto& s : student) {
    EXPECT_EQ(s.grad()[1].abs().sum().item<double>(), 0.0);
    EXPECT_EQ(s.grad()[2][0].abs().sum().item<double>(), 0.0);
    EXPECT_EQ(s.grad()[0].narrow(0, 2, 2).abs().sum().item<double>(), 0.0);
    EXPECT_EQ(s.grad()[2][3].abs().sum().item<double>(), 0.0);
    EXPECT_GT(s.grad()[2][2].abs().sum().item<double>(), 0.0);
  }
  // A student equal to its teacher's tokens costs nothing.
  std::vector<at::Tensor> copy;
  for (int l = 0; l < 2; ++l) {
    at::Tensor c = torch::zeros({3, 4, 2});
    c[0].narrow(0, 0, 2).copy_(teacher[l][0].narrow(0, 4, 2));
    c[2].narrow(0, 0, 3).copy_(teacher[l][1].narrow(0, 3, 3));
    copy.push_back(c);
  }
  EXPECT_NEAR(engram::mac::context_distillation_loss(copy, mask, teacher, rows, counted).item<double>(), 0.0, 1e-12);
}
