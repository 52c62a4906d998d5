// Selection by the aggregator (mac.select): its scores against its own attention, and the
// distributed, group-by-group best K against an exact ranking of the whole bank.
#include <chrono>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "../common/mac_tiny_config.h"
#include "dist/thread_communicator.h"
#include "methods/mac/aggregate.h"
#include "methods/mac/modules.h"
#include "methods/mac/select.h"

using namespace engram;

TEST(MacSelection, ScoresRankEntriesAsTheFirstBlocksAttentionDoes) {
  torch::manual_seed(11);
  mac::MacModel m(checks::tiny_mac_config(4));
  torch::NoGradGuard no_grad;
  const int64_t Bq = 3, N = 6, T = 4;
  at::Tensor z0 = torch::randn({Bq, T, 16}), bank = torch::randn({1, N, T, 16});
  at::Tensor scores = m->aggregator()->selection_scores(z0, bank);
  ASSERT_EQ(scores.sizes(), (std::vector<int64_t>{Bq, N}));
  // The first block's attention over the flat bank: per head and query token, the share on an
  // entry is softmax over entries of the entry's log-sum-exp'ed logits, so the mean log share is
  // the score plus one constant per question.
  std::vector<at::Tensor> attention;
  mac::aggregate(m->aggregator(), z0, mac::Memory{bank, {}}, nullptr, &attention);
  at::Tensor log_share = torch::log(mac::attention_per_entry(attention.front(), T)).mean({1, 2});  // [Bq, N]
  at::Tensor offset = log_share - scores;
  EXPECT_LT((offset - offset.mean(1, true)).abs().max().item<double>(), 1e-4) << offset;
  // A bank per question gives each question's scores against its own rows.
  at::Tensor per_question = m->aggregator()->selection_scores(z0, bank.expand({Bq, N, T, 16}));
  EXPECT_LT((per_question - scores).abs().max().item<double>(), 1e-5);
}

TEST(MacSelection, BestKOfTheBankIsExactAtEveryWorldSizeGroupByGroupOrFlat) {
  torch::manual_seed(12);
  mac::MacModel m(checks::tiny_mac_config(4));
  torch::NoGradGuard no_grad;
  const int64_t Bq = 5, N = 23, T = 4, K = 3;
  at::Tensor z0 = torch::randn({Bq, T, 16}), bank = torch::randn({N, T, 16});
  at::Tensor scores = m->aggregator()->selection_scores(z0, bank.unsqueeze(0));
  at::Tensor order = std::get<1>(scores.topk(N, 1));
  at::Tensor allowed = torch::ones({Bq, N}, torch::kBool);  // each question loses its best row
  for (int64_t q = 0; q < Bq; ++q) allowed[q][order[q][0].item<int64_t>()] = false;
  for (int world : {1, 2, 3}) {
    for (int64_t group : {int64_t{4}, mac::kFlat}) {
      dist::run_thread_ranks(world, std::chrono::seconds(30), [&](dist::Communicator& comm) {
        const int64_t begin = N * comm.rank() / world, end = N * (comm.rank() + 1) / world;
        for (bool exclude : {false, true}) {
          mac::Retrieved got =
              mac::select_top_k(m->aggregator(), z0, mac::shard_in_memory(bank.narrow(0, begin, end - begin), begin),
                                exclude ? allowed.narrow(1, begin, end - begin) : at::Tensor(), K, group, comm);
          at::Tensor want = order.narrow(1, exclude ? 1 : 0, K);
          EXPECT_TRUE(torch::equal(got.rows, want)) << "world " << world << " group " << group << "\n" << got.rows;
          EXPECT_TRUE(got.memory.valid.all().item<bool>());
          EXPECT_TRUE(torch::allclose(got.memory.rows, bank.index_select(0, want.flatten()).view({Bq, K, T, 16})));
        }
      });
    }
  }
}

TEST(MacSelection, AmongRetrievedCandidatesTheBestValidOnesAreRead) {
  torch::manual_seed(13);
  mac::MacModel m(checks::tiny_mac_config(4));
  torch::NoGradGuard no_grad;
  const int64_t Bq = 2, C = 5, T = 4;
  at::Tensor z0 = torch::randn({Bq, T, 16});
  mac::Retrieved found;
  found.memory = mac::Memory{torch::randn({Bq, C, T, 16}), torch::ones({Bq, C}, torch::kBool)};
  found.rows = torch::arange(100, 100 + Bq * C, torch::kLong).view({Bq, C});
  at::Tensor scores = m->aggregator()->selection_scores(z0, found.memory.rows);
  at::Tensor best = scores.argmax(1);
  found.memory.valid[0][best[0].item<int64_t>()] = false;  // question 0's best candidate is padding
  found.scores = torch::zeros({Bq, C});  // no retriever preference: the aggregator's choice
  mac::Retrieved got = mac::select_among(m->aggregator(), z0, found, 1, 1.0, 0.05, 1.0);
  const int64_t second = std::get<1>(scores[0].topk(2)).index({1}).item<int64_t>();
  EXPECT_EQ(got.rows[0][0].item<int64_t>(), found.rows[0][second].item<int64_t>());
  EXPECT_EQ(got.rows[1][0].item<int64_t>(), found.rows[1][best[1].item<int64_t>()].item<int64_t>());
  EXPECT_TRUE(torch::equal(got.memory.rows[1][0], found.memory.rows[1][best[1].item<int64_t>()]));
  EXPECT_TRUE(got.memory.valid.all().item<bool>());
  // The retriever's scores count at 1 / its temperature: a large enough lead wins.
  const int64_t third = std::get<1>(scores[1].topk(3)).index({2}).item<int64_t>();
  found.scores[1][third] = 1.0;  // / 0.05 = 20, far above the aggregator's differences here
  got = mac::select_among(m->aggregator(), z0, found, 1, 1.0, 0.05, 1.0);
  EXPECT_EQ(got.rows[1][0].item<int64_t>(), found.rows[1][third].item<int64_t>());
  // Vote 0: the retriever's order alone, however small its differences.
  found.scores = torch::rand({Bq, C}) * 1e-4;
  found.scores[0][best[0].item<int64_t>()] = 1.0;  // padding never wins
  got = mac::select_among(m->aggregator(), z0, found, 1, 1.0, 0.05, 0.0);
  at::Tensor want = found.scores.masked_fill(~found.memory.valid, -1.0).argmax(1);
  for (int64_t q = 0; q < Bq; ++q)
    EXPECT_EQ(got.rows[q][0].item<int64_t>(), found.rows[q][want[q].item<int64_t>()].item<int64_t>()) << q;
}
