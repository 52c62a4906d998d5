// Sharded optimizer state (train.zero 1 and 2) against plain data parallelism, with real ranks
// (mpirun -np 2 and -np 3): the same losses and weights over 20 steps, with uneven shards and
// several buckets, and per-rank state of 1/W of the whole.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "dist/mpi_communicator.h"
#include "mpi_test_util.h"
#include "train/trainer.h"
#include "../common/regression_problem.h"

using namespace engram;

namespace {
using mpi_test::make_comm;
using mpi_test::shared_dir;

// 43 examples, 7 -> 13 -> 3: 104 + 13 + 39 + 3 = 159 values, uneven on 2 and on 3 ranks.
struct Problem : checks::RegressionProblem {
  Problem() : RegressionProblem(9, 43, 7, 13, 3) {}
};
constexpr int64_t kValues = 7 * 13 + 13 + 13 * 3 + 3;

struct TrainedRun {
  std::vector<double> losses;  // every step's mean loss over the ranks
  std::vector<at::Tensor> weights;
  int64_t state_values = 0;
};

TrainedRun train_with(int zero, dist::Communicator& comm, const std::string& name, int64_t bucket_bytes) {
  train::TrainOptions o;
  o.steps = 20;
  o.micro_batch = 3;
  o.accumulation = 2;
  o.lr = 2e-2;
  o.warmup_steps = 2;
  o.weight_decay = 0.1;
  o.clip_norm = 0.5;  // clipped on most steps: the sharded norm must be the global one
  o.log_every = 1;
  o.zero = zero;
  o.bucket_bytes = bucket_bytes;
  o.out_dir = shared_dir(comm, name);
  o.seed = 17;
  Problem problem;
  TrainedRun run;
  {
    train::Trainer trainer(o, problem.parameters(), comm, dist::MpiHandle::world(), 43, "", 1.0);
    trainer.run(problem.loss());
    run.state_values = trainer.optimizer_state_values();
  }
  for (auto& [n, p] : problem.parameters()) run.weights.push_back(p.detach().clone());
  std::ifstream metrics(o.out_dir + "/metrics.jsonl");
  for (std::string line; std::getline(metrics, line);) run.losses.push_back(nlohmann::json::parse(line)["loss"]);
  return run;
}

}  // namespace

TEST(Zero, StagesOneAndTwoFollowPlainDataParallelism) {
  auto comm = make_comm();
  const int world = comm->world_size();
  // 160-byte buckets: each parameter starts a bucket of its own (40 values), so there are 4
  // buckets of 104, 13, 39 and 3 values, each split unevenly (3 values on 2 or 3 ranks).
  const TrainedRun plain = train_with(0, *comm, "zero0", 160);
  EXPECT_EQ(plain.state_values, 2 * kValues);
  for (int zero : {1, 2}) {
    const TrainedRun sharded = train_with(zero, *comm, "zero" + std::to_string(zero), 160);
    if (comm->rank() == 0) {  // rank 0 wrote metrics.jsonl
      ASSERT_EQ(sharded.losses.size(), 20u);
      ASSERT_EQ(plain.losses.size(), 20u);
      // Float tolerance: the norm and the reductions add in another order; 1e-5 relative.
      for (size_t s = 0; s < 20; ++s)
        EXPECT_NEAR(sharded.losses[s], plain.losses[s], 1e-5 * std::abs(plain.losses[s])) << "zero " << zero << " step " << s + 1;
      const auto mean = [&](size_t from) { return (plain.losses[from] + plain.losses[from + 1] + plain.losses[from + 2]) / 3; };
      EXPECT_LT(mean(17), 0.9 * mean(0)) << "it trains";
    }
    for (size_t k = 0; k < plain.weights.size(); ++k)
      EXPECT_TRUE(at::allclose(sharded.weights[k], plain.weights[k], 1e-5, 1e-6)) << "zero " << zero << " tensor " << k;
    // Every rank holds the same weights.
    for (const auto& w : sharded.weights) {
      at::Tensor copy = w.clone();
      comm->broadcast(copy, 0);
      EXPECT_TRUE(copy.equal(w));
    }
    // exp_avg and exp_avg_sq of this rank's slice of each bucket: ceil(n / W) values per bucket.
    int64_t expected = 0;
    for (int64_t n : {7 * 13, 13, 13 * 3, 3}) expected += 2 * ((n + world - 1) / world);
    EXPECT_EQ(sharded.state_values, expected) << "zero " << zero;
    EXPECT_LE(sharded.state_values, 2 * kValues / world + 2 * 4) << "1/W of the whole, plus a value per bucket";
  }
  comm->barrier();
}

TEST(Zero, OneBucketShardsEvenlyUpToOneValue) {
  auto comm = make_comm();
  const int world = comm->world_size();
  const TrainedRun sharded = train_with(2, *comm, "zero2_one_bucket", 25 << 20);
  EXPECT_EQ(sharded.state_values, 2 * ((kValues + world - 1) / world));
  comm->barrier();
}
