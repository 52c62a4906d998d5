// SELF-PARAM across ranks: the targets of an injection are split over the ranks and the gradients
// averaged, so W ranks taking one target each per step make the model that one process makes
// taking W targets per step, and every rank holds it.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "../common/selfparam_fixture.h"
#include "dist/local_communicator.h"
#include "methods/selfparam/inject.h"
#include "mpi_test_util.h"

namespace {

using namespace engram;

// With selfparam.teacher_cache each rank computes the teacher's rows of its own items only.
class ParallelSelfParam : public ::testing::TestWithParam<bool> {};

TEST_P(ParallelSelfParam, RanksSplitTargetsAndMatchOneProcessWithTheSameBatch) {
  auto comm = mpi_test::make_comm();
  auto tok = selfparam_fixture::tokenizer();
  const std::vector<std::string> docs = {"Ann is a baker.", "Bob is a cook.", "Cid rides a horse."};
  selfparam::TargetSet targets;
  targets.per_document = {{"Question: What is Ann? Answer: baker\n", "Question: Ann works as? Answer: baker\n"},
                          {"Question: What is Bob? Answer: cook\n", "Question: Bob works as? Answer: cook\n"},
                          {"Question: What does Cid ride? Answer: horse\n", "Question: Cid rides? Answer: horse\n"}};
  selfparam::SelfParamOptions o = selfparam_fixture::quick_options();
  o.epochs = 2, o.per_epoch = 1;
  o.teacher_cache = GetParam();
  const int64_t world = comm->world_size();
  // 3 items per epoch split into steps of W: the last step wraps to the first items.
  selfparam::InjectionInputs in{tok.get(), &docs, &targets};
  model::Decoder parallel = selfparam_fixture::tiny_decoder(tok->vocab_size());
  auto report = selfparam::inject(parallel, in, o, selfparam::Objective::Distill, *comm);
  EXPECT_EQ(report.steps, 2 * ((3 + world - 1) / world));
  EXPECT_EQ(report.teacher_cache_bytes > 0, GetParam());

  auto local = dist::make_local_communicator(std::chrono::seconds(60));
  o.batch = world;
  model::Decoder single = selfparam_fixture::tiny_decoder(tok->vocab_size());
  selfparam::inject(single, in, o, selfparam::Objective::Distill, *local);

  auto expected = single->named_parameters();
  for (const auto& p : parallel->named_parameters())
    EXPECT_LE((p.value() - expected[p.key()]).abs().max().item<double>(), 2e-5) << p.key();
  // Every rank holds the same weights.
  at::Tensor flat = torch::cat({parallel->named_parameters()["blocks.0.attn.q.weight"].flatten()});
  at::Tensor gathered = comm->all_gather(flat);
  for (int64_t r = 1; r < world; ++r) EXPECT_TRUE(torch::equal(gathered[r], gathered[0]));
}

INSTANTIATE_TEST_SUITE_P(TeacherCache, ParallelSelfParam, ::testing::Bool());

}  // namespace
