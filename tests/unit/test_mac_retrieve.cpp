// MAC's retriever (mac.retriever.*): the keys, and the distributed top-K search against an
// exact search over the whole bank.
#include <chrono>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "core/error.h"
#include "dist/thread_communicator.h"
#include "methods/mac/modules.h"
#include "methods/mac/retrieve.h"
#include "model/t5.h"

using namespace engram;

namespace {

mac::MacConfig config_with_retriever(int64_t dim) {
  mac::MacConfig c;
  c.T = 4;
  c.P = 2;
  c.amortizer = model::T5Config::preset("tiny");
  c.question = model::T5Config::preset("tiny");
  c.aggregator_blocks = 1;
  c.aggregator_heads = 2;
  c.aggregator_head_dim = 8;
  c.slot_hidden = 12;
  c.d = 16;
  c.L = 2;
  c.H = 4;
  c.retrieval_dim = dim;
  return c;
}

// Shard r of n rows over `world` ranks (contiguous, as ShardSpec splits).
std::pair<int64_t, int64_t> shard_of(int64_t n, int rank, int world) {
  return {n * rank / world, n * (rank + 1) / world};
}

}  // namespace

TEST(MacRetriever, KeysAreTheNormalisedProjectionOfTheNormalisedFlatTokens) {
  torch::manual_seed(1);
  mac::MacModel m(config_with_retriever(6));
  ASSERT_TRUE(m->has_retriever());
  auto params = m->named_parameters();
  at::Tensor x = torch::randn({3, 4, 16});
  for (const std::string side : {"document", "question"}) {
    const std::string p = "retriever." + side;
    at::Tensor flat = x.flatten(1);
    at::Tensor normed = (flat - flat.mean(1, true)) / torch::sqrt(flat.var(1, false, true) + 1e-5);
    normed = normed * params[p + "_norm_weight"] + params[p + "_norm_bias"];
    at::Tensor key = torch::matmul(normed, params[p + "_weight"].t()) + params[p + "_bias"];
    key = key / key.norm(2, 1, true);
    at::Tensor got = side == "document" ? m->retriever()->document_keys(x) : m->retriever()->question_keys(x);
    ASSERT_EQ(got.sizes(), (std::vector<int64_t>{3, 6}));
    EXPECT_LT((got - key).abs().max().item<double>(), 1e-5) << side;
    EXPECT_LT((got.norm(2, 1) - 1).abs().max().item<double>(), 1e-5);
  }
}

TEST(MacRetriever, AModelWithoutOneSaysHowToGetOne) {
  mac::MacModel m(config_with_retriever(0));
  EXPECT_FALSE(m->has_retriever());
  try {
    m->retriever();
    FAIL() << "no error";
  } catch (const core::UserError& e) {
    EXPECT_NE(std::string(e.what()).find("mac.retriever.dim"), std::string::npos) << e.what();
  }
  EXPECT_THROW(mac::MacModel(config_with_retriever(-1)), core::UserError);
}

TEST(MacRetriever, DistributedTopKEqualsExactSearchAtEveryWorldSize) {
  torch::manual_seed(2);
  const int64_t N = 23, Bq = 5, K = 4, k = 8;
  at::Tensor summaries = torch::randn({N, 3, 2});
  at::Tensor keys = torch::randn({N, k});
  at::Tensor questions = torch::randn({Bq, k});
  at::Tensor scores = torch::matmul(questions, keys.t());  // [Bq, N]
  at::Tensor order = std::get<1>(scores.topk(N, 1));
  // Question q may not retrieve its best row (as the gold-removed view excludes one row).
  at::Tensor allowed = torch::ones({Bq, N}, torch::kBool);
  for (int64_t q = 0; q < Bq; ++q) allowed[q][order[q][0].item<int64_t>()] = false;

  for (int world : {1, 2, 3}) {
    dist::run_thread_ranks(world, std::chrono::seconds(30), [&](dist::Communicator& comm) {
      auto [begin, end] = shard_of(N, comm.rank(), world);
      for (bool exclude : {false, true}) {
        mac::Retrieved got = mac::retrieve_top_k(questions, summaries.narrow(0, begin, end - begin),
                                                 keys.narrow(0, begin, end - begin), begin,
                                                 exclude ? allowed.narrow(1, begin, end - begin) : at::Tensor(), K, comm);
        at::Tensor want = order.narrow(1, exclude ? 1 : 0, K);
        EXPECT_TRUE(torch::equal(got.rows, want)) << "world " << world << " exclude " << exclude << "\n" << got.rows;
        EXPECT_LT((got.scores - scores.gather(1, want)).abs().max().item<double>(), 1e-4);
        EXPECT_TRUE(got.memory.valid.all().item<bool>());
        EXPECT_TRUE(torch::equal(got.memory.rows, summaries.index_select(0, want.flatten()).view({Bq, K, 3, 2})));
      }
    });
  }
}

TEST(MacRetriever, ABankSmallerThanKLeavesTheRestInvalid) {
  torch::manual_seed(3);
  at::Tensor summaries = torch::randn({3, 2, 2});
  at::Tensor keys = torch::randn({3, 4});
  at::Tensor questions = torch::randn({2, 4});
  for (int world : {1, 2, 4}) {  // with 4 ranks one shard is empty
    dist::run_thread_ranks(world, std::chrono::seconds(30), [&](dist::Communicator& comm) {
      auto [begin, end] = shard_of(3, comm.rank(), world);
      mac::Retrieved got = mac::retrieve_top_k(questions, summaries.narrow(0, begin, end - begin),
                                               keys.narrow(0, begin, end - begin), begin, {}, 5, comm);
      at::Tensor valid = torch::tensor({1, 1, 1, 0, 0}, torch::kBool).expand({2, 5});
      EXPECT_TRUE(torch::equal(got.memory.valid, valid)) << "world " << world;
      EXPECT_TRUE((got.rows.narrow(1, 3, 2) == -1).all().item<bool>());
      EXPECT_TRUE((got.memory.rows.narrow(1, 3, 2) == 0).all().item<bool>());
      at::Tensor sorted = std::get<0>(got.rows.narrow(1, 0, 3).sort(1));
      EXPECT_TRUE(torch::equal(sorted, torch::arange(3, torch::kLong).expand({2, 3})));
    });
  }
}
