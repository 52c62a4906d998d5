// MAC's retriever (mac.retriever.*): the keys, and the distributed top-K search against an
// exact search over the whole bank.
#include <chrono>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "../common/mac_tiny_config.h"
#include "core/error.h"
#include "dist/thread_communicator.h"
#include "methods/mac/meta_train.h"
#include "methods/mac/modules.h"
#include "methods/mac/retrieve.h"

using namespace engram;

namespace {

mac::MacConfig config_with_retriever(int64_t dim) { return checks::tiny_mac_config(4, 2, 2, dim); }

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

TEST(MacRetriever, ABanksKeysAreMadeInChunksWithTheSameValues) {
  torch::manual_seed(5);
  mac::MacModel m(config_with_retriever(6));
  torch::NoGradGuard no_grad;
  at::Tensor bank = torch::randn({9000, 4, 16});  // more rows than one chunk (4096)
  at::Tensor keys = m->retriever()->document_keys(bank);
  ASSERT_EQ(keys.sizes(), (std::vector<int64_t>{9000, 6}));
  for (int64_t row : {0, 4095, 4096, 8191, 8999})
    EXPECT_LT((keys[row] - m->retriever()->document_keys(bank.narrow(0, row, 1))[0]).abs().max().item<double>(), 1e-6)
        << row;
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
      // One index per shard, searched twice (as answering searches it batch after batch).
      mac::ShardIndex shard(summaries.narrow(0, begin, end - begin), keys.narrow(0, begin, end - begin), begin);
      for (bool exclude : {false, true}) {
        mac::Retrieved got = mac::retrieve_top_k(
            questions, shard, exclude ? allowed.narrow(1, begin, end - begin) : at::Tensor(), K, comm);
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
      mac::ShardIndex shard(summaries.narrow(0, begin, end - begin), keys.narrow(0, begin, end - begin), begin);
      mac::Retrieved got = mac::retrieve_top_k(questions, shard, {}, 5, comm);
      at::Tensor valid = torch::tensor({1, 1, 1, 0, 0}, torch::kBool).expand({2, 5});
      EXPECT_TRUE(torch::equal(got.memory.valid, valid)) << "world " << world;
      EXPECT_TRUE((got.rows.narrow(1, 3, 2) == -1).all().item<bool>());
      EXPECT_TRUE((got.memory.rows.narrow(1, 3, 2) == 0).all().item<bool>());
      at::Tensor sorted = std::get<0>(got.rows.narrow(1, 0, 3).sort(1));
      EXPECT_TRUE(torch::equal(sorted, torch::arange(3, torch::kLong).expand({2, 3})));
    });
  }
}

TEST(MacRetrieverTraining, ThePoolKeepsTheNewestDocumentsFirst) {
  mac::SummaryPool pool;
  pool.capacity = 5;
  pool.add(torch::full({3, 2, 1}, 1.0), torch::tensor({10, 11, 12}, torch::kLong));
  pool.add(torch::full({3, 2, 1}, 2.0), torch::tensor({20, 21, 22}, torch::kLong));
  ASSERT_EQ(pool.size(), 5);
  EXPECT_TRUE(torch::equal(pool.documents, torch::tensor({20, 21, 22, 10, 11}, torch::kLong)));
  EXPECT_EQ(pool.summaries[2][0][0].item<float>(), 2.0f);
  EXPECT_EQ(pool.summaries[3][0][0].item<float>(), 1.0f);
  mac::SummaryPool off;  // capacity 0: keeps nothing
  off.add(torch::ones({3, 2, 1}), torch::tensor({1, 2, 3}, torch::kLong));
  EXPECT_EQ(off.size(), 0);
}

TEST(MacRetrieverTraining, ContrastiveLossIgnoresCopiesAndPicksTheBestPoolDistractors) {
  torch::manual_seed(4);
  mac::MacModel m(config_with_retriever(6));
  mac::Retriever& retriever = m->retriever();
  const int64_t Bq = 2;
  at::Tensor z0 = torch::randn({Bq, 4, 16});
  at::Tensor batch = torch::randn({4, 4, 16});  // the bank: documents 7, 8, 9, 7
  at::Tensor batch_documents = torch::tensor({7, 8, 9, 7}, torch::kLong);
  mac::SummaryPool pool;
  pool.capacity = 6;
  pool.add(torch::randn({6, 4, 16}), torch::tensor({8, 1, 2, 3, 4, 5}, torch::kLong));
  at::Tensor question_documents = torch::tensor({8, 9}, torch::kLong);  // questions of bank rows 1 and 2
  mac::RetrieverStep step = mac::retriever_step(retriever, z0, question_documents, retriever->document_keys(batch),
                                                batch_documents, 1, pool, 3, 0.1);

  // By hand: question 0 (document 8, own row 1) may not be told apart from pool row 0 (also 8).
  at::Tensor q = retriever->question_keys(z0);
  at::Tensor keys = torch::cat({retriever->document_keys(batch), retriever->document_keys(pool.summaries)}, 0);
  at::Tensor scores = torch::matmul(q, keys.t()) / 0.1;  // [2, 10]
  double loss = 0;
  at::Tensor allowed0 = torch::ones({10}, torch::kBool), allowed1 = torch::ones({10}, torch::kBool);
  allowed0[4] = false;  // pool row 0 = key row 4
  loss += -torch::log_softmax(scores[0].masked_select(allowed0), 0)[1].item<double>();
  loss += -torch::log_softmax(scores[1].masked_select(allowed1), 0)[2].item<double>();
  EXPECT_NEAR(step.loss.item<double>(), loss / 2, 1e-5);

  ASSERT_TRUE(step.distractors.defined());
  ASSERT_EQ(step.distractors.sizes(), (std::vector<int64_t>{Bq, 3, 4, 16}));
  for (int64_t i = 0; i < Bq; ++i) {
    at::Tensor pool_scores = scores[i].narrow(0, 4, 6).clone();
    if (i == 0) pool_scores[0] = -1e9;  // the copy of its own document is no distractor
    at::Tensor best = std::get<1>(pool_scores.topk(3));
    EXPECT_TRUE(torch::equal(step.distractors[i], pool.summaries.index_select(0, best))) << i;
  }
  // Gradient reaches the retriever through the pool's keys too; the pool itself stays detached.
  step.loss.backward();
  for (const auto& p : retriever->named_parameters()) EXPECT_TRUE(p.value().grad().defined()) << p.key();
  EXPECT_FALSE(pool.summaries.requires_grad());
}

TEST(MacTokenKeys, AKeyIsTheNormalisedWeightedSumOfItsTokensEmbeddingsPaddingIgnored) {
  torch::manual_seed(5);
  mac::TokenKeys keys(11, 6);
  auto params = keys->named_parameters();
  at::Tensor ids = torch::tensor({{3, 7, 3, 0}, {10, 2, 0, 0}}, torch::kLong);
  at::Tensor mask = torch::tensor({{1, 1, 1, 0}, {1, 1, 0, 0}}, torch::kLong);
  // Both sides start with the same weights: the same tokens give the same key.
  EXPECT_TRUE(torch::allclose(keys->question_keys(ids, mask), keys->document_keys(ids, mask), 1e-6, 1e-7));
  {
    torch::NoGradGuard no_grad;
    params["document_weight"].uniform_(-0.2, 0.2);
  }
  at::Tensor got = keys->document_keys(ids, mask);
  ASSERT_EQ(got.sizes(), (std::vector<int64_t>{2, 6}));
  const double s = mac::TokenKeysImpl::kLearningScale;
  for (int64_t b = 0; b < 2; ++b) {
    at::Tensor sum = torch::zeros({6});
    for (int64_t t = 0; t < 4; ++t) {
      if (mask[b][t].item<int64_t>() == 0) continue;
      const int64_t id = ids[b][t].item<int64_t>();
      sum += torch::softplus(params["document_weight"][id] * s) * params["embedding"][id] * s;
    }
    EXPECT_TRUE(torch::allclose(got[b], sum / sum.norm(), 1e-5, 1e-6)) << b;
  }
  // Padding ids (masked) change nothing; gradient reaches the embedding and the side's weights.
  at::Tensor padded = torch::tensor({{3, 7, 3, 9, 9}}, torch::kLong);
  EXPECT_TRUE(torch::allclose(keys->document_keys(padded, torch::tensor({{1, 1, 1, 0, 0}}, torch::kLong)), got[0].unsqueeze(0),
                              1e-6, 1e-7));
  EXPECT_NEAR(got.norm(2, 1).sub(1).abs().max().item<double>(), 0.0, 1e-6);
  got.sum().backward();
  EXPECT_TRUE(params["embedding"].grad().defined());
  EXPECT_TRUE(params["document_weight"].grad().defined());
  EXPECT_GT(params["document_weight"].grad().abs().sum().item<double>(), 0.0);
  EXPECT_THROW(keys->document_keys(torch::tensor({{11}}, torch::kLong), torch::ones({1, 1}, torch::kLong)),
               core::InternalError);
}

TEST(MacTokenKeys, TrainedContrastivelyTheyLearnToIgnoreWordsEveryTextShares) {
  // 40 documents: a name token of their own among 12 tokens drawn from 6 that every document
  // uses; questions: 3 shared question words and the name. Untrained, the shared words swamp the
  // names; after training, each question finds its own document.
  torch::manual_seed(6);
  const int64_t n = 40, vocab = 60;
  mac::TokenKeys keys(vocab, 16);
  at::Tensor doc_ids = torch::randint(0, 6, {n, 12}, torch::kLong);
  doc_ids.select(1, 5) = torch::arange(n, torch::kLong) + 20;  // the name
  at::Tensor q_ids = torch::randint(6, 9, {n, 4}, torch::kLong);
  q_ids.select(1, 3) = torch::arange(n, torch::kLong) + 20;
  at::Tensor doc_mask = torch::ones_like(doc_ids), q_mask = torch::ones_like(q_ids);
  at::Tensor documents = torch::arange(n, torch::kLong);
  auto top1 = [&] {
    torch::NoGradGuard no_grad;
    return mac::contrastive_step(keys->question_keys(q_ids, q_mask), documents, keys->document_keys(doc_ids, doc_mask),
                                 documents, 0, 0.05).top1;
  };
  const double before = top1();
  torch::optim::Adam adam(keys->parameters(), torch::optim::AdamOptions(2.5e-4));
  for (int step = 0; step < 200; ++step) {
    adam.zero_grad();
    mac::contrastive_step(keys->question_keys(q_ids, q_mask), documents, keys->document_keys(doc_ids, doc_mask),
                          documents, 0, 0.05).loss.backward();
    adam.step();
  }
  EXPECT_LT(before, 0.5);
  EXPECT_EQ(top1(), 1.0);
}

TEST(MacTokenKeys, RandomNegativesAreDistinctDocumentsFixedBySeed) {
  at::Tensor a = mac::random_documents(50, 20, 3), b = mac::random_documents(50, 20, 3);
  EXPECT_TRUE(torch::equal(a, b));
  EXPECT_FALSE(torch::equal(a, mac::random_documents(50, 20, 4)));
  EXPECT_EQ(std::get<0>(at::_unique(a)).numel(), 20);
  EXPECT_GE(a.min().item<int64_t>(), 0);
  EXPECT_LT(a.max().item<int64_t>(), 50);
  EXPECT_EQ(mac::random_documents(5, 20, 3).numel(), 5);  // no more than there are
  EXPECT_EQ(mac::random_documents(5, 0, 3).numel(), 0);
}

TEST(MacTokenKeys, TheModelHasThemWithKeysFromTokensAndTheyEnterTheFingerprint) {
  mac::MacConfig c = config_with_retriever(6);
  c.retrieval_keys = "tokens";
  c.retrieval_vocab = 32;
  torch::manual_seed(7);
  mac::MacModel m(c);
  ASSERT_TRUE(m->has_token_keys());
  EXPECT_TRUE(m->has_retriever());  // the summary retriever still trains beside them
  EXPECT_EQ(m->token_keys()->dim(), 6);
  const std::string before = m->amortizer_fingerprint();
  {
    torch::NoGradGuard no_grad;
    m->token_keys()->named_parameters()["document_weight"][3] += 1.0;
  }
  EXPECT_NE(m->amortizer_fingerprint(), before);  // a bank's stored keys came from these weights
  mac::MacModel plain(config_with_retriever(6));
  EXPECT_FALSE(plain->has_token_keys());
  EXPECT_THROW(plain->token_keys(), core::UserError);
  c.retrieval_dim = 0;
  EXPECT_THROW(c.validate(), core::UserError);  // tokens need a retriever width
  c.retrieval_dim = 6;
  c.retrieval_keys = "words";
  EXPECT_THROW(c.validate(), core::UserError);
}
