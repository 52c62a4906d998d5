// Parallel HDF5 and the trainer with real ranks (mpirun -np 2 and -np 3).
#include <gtest/gtest.h>
#include <mpi.h>

#include <csignal>
#include <filesystem>

#include <torch/torch.h>

#include "core/signals.h"
#include "dist/mpi_communicator.h"
#include "dist/shard_spec.h"
#include "io/h5file.h"
#include "mpi_test_util.h"
#include "train/checkpoint.h"
#include "train/trainer.h"
#include "../common/regression_problem.h"

namespace fs = std::filesystem;
using namespace engram;

namespace {
using mpi_test::kWorld;
using mpi_test::make_comm;
using mpi_test::shared_dir;
}  // namespace

TEST(ParallelH5, EveryRankWritesItsRowsOfOneDataset) {
  auto comm = make_comm();
  const std::string path = shared_dir(*comm, "h5") + "/bank.h5";
  const int64_t rows = 23;
  dist::RowRange mine = dist::ShardSpec(rows, comm->world_size()).range(comm->rank());
  {
    io::H5File file(path, io::H5File::Mode::Create, dist::MpiHandle::world());
    file.create_dataset("/summaries", at::kFloat, {rows, 3}, 4, true, true);
    at::Tensor block = at::arange(mine.begin * 3, mine.end * 3, at::kFloat).view({mine.size(), 3});
    file.write_rows("/summaries", mine.begin, block);
    file.set_attr("/", "format", std::string("engram-bank"));
  }
  comm->barrier();
  // Read back whole by one process (serially), as h5py or another world size would.
  if (comm->rank() == 0) {
    io::H5File file(path, io::H5File::Mode::Read);
    EXPECT_TRUE(file.read_tensor("/summaries").equal(at::arange(rows * 3, at::kFloat).view({rows, 3})));
    EXPECT_EQ(file.attr_string("/", "format"), "engram-bank");
  }
  comm->barrier();
}

namespace {
// 41 examples, 6 -> 12 -> 2.
struct Problem : checks::RegressionProblem {
  Problem() : RegressionProblem(5, 41, 6, 12, 2) {}
};
train::TrainOptions options(const std::string& dir) {
  train::TrainOptions o;
  o.steps = 20;
  o.micro_batch = 3;
  o.accumulation = 2;
  o.lr = 5e-3;
  o.warmup_steps = 2;
  o.log_every = 5;
  o.out_dir = dir;
  o.seed = 11;
  return o;
}
}  // namespace

TEST(ParallelTrainer, RanksStayIdenticalAndResumeIsBitExact) {
  auto comm = make_comm();
  Problem straight;
  {
    train::Trainer t(options(shared_dir(*comm, "straight")), straight.parameters(), *comm, dist::MpiHandle::world(), 41, "", 1.0);
    t.run(straight.loss());
  }
  // Data parallel: every rank ends with the same weights.
  for (auto& [name, p] : straight.parameters()) {
    at::Tensor copy = p.detach().clone();
    comm->broadcast(copy, 0);
    EXPECT_TRUE(copy.equal(p.detach())) << name << " differs between ranks";
  }
  const std::string dir = shared_dir(*comm, "resumed");
  core::install_stop_signal_handlers();
  core::clear_stop_request();
  {
    Problem first;
    train::Trainer t(options(dir), first.parameters(), *comm, dist::MpiHandle::world(), 41, "", 1.0);
    // Only rank 0 gets the signal: the ranks must still agree to stop at the same step.
    auto r = t.run(first.loss(), [&](int64_t step) {
      if (step == 10 && comm->rank() == 0) std::raise(SIGTERM);
    });
    EXPECT_TRUE(r.stopped);
    EXPECT_EQ(r.last_step, 10);  // every rank sees the flag at the next step boundary
  }
  core::clear_stop_request();
  Problem second;
  {
    torch::NoGradGuard no_grad;
    for (auto& [name, p] : second.parameters()) p.zero_();
  }
  train::Trainer t(options(dir), second.parameters(), *comm, dist::MpiHandle::world(), 41, "", 1.0);
  EXPECT_EQ(t.resume(), 10);
  t.run(second.loss());
  auto a = straight.parameters(), b = second.parameters();
  for (size_t k = 0; k < a.size(); ++k) EXPECT_TRUE(a[k].second.equal(b[k].second)) << a[k].first;
}

TEST(ParallelCheckpoint, EmptyPerRankStateResumesAtTheSameWorldSize) {
  // A rank's state may be empty (MAC's retriever pool with mac.retriever.pool 0) on some ranks
  // or all: it comes back empty, the others' whole, each on its own rank.
  auto comm = make_comm();
  const int rank = comm->rank();
  train::CheckpointStore store(shared_dir(*comm, "empty_state"), *comm, dist::MpiHandle::world());
  train::CheckpointData data;
  data.step = 7;
  data.world = comm->world_size();
  // Sizes like a small model's: the failure this guards against did not show with a few bytes.
  // The model and optimizer state are the same on every rank (each saves its share of them).
  torch::manual_seed(11);
  data.model.emplace_back("w", torch::arange(6, torch::kFloat));
  data.model.emplace_back("big", torch::randn({1 << 20}));
  data.optim.emplace_back("big/exp_avg", torch::randn({1 << 20}));
  data.rng = torch::full({4}, rank, torch::kByte);
  data.data = torch::tensor({int64_t{rank}});
  data.rank_state["pool"] = torch::empty({0}, torch::kLong);
  data.rank_state["mixed"] = rank == 0 ? torch::empty({0}) : torch::full({rank + 1}, 1.5f);
  store.save(data);
  train::CheckpointData back = store.load(7);
  EXPECT_EQ(back.step, 7);
  ASSERT_EQ(back.model.size(), 2u);
  for (const auto& [name, tensor] : back.model)  // in the file's (alphabetical) order
    EXPECT_TRUE(tensor.equal(name == "w" ? data.model.at(0).second : data.model.at(1).second)) << name;
  EXPECT_EQ(back.rank_state.at("pool").numel(), 0);
  EXPECT_EQ(back.rank_state.at("pool").scalar_type(), torch::kLong);
  EXPECT_TRUE(back.rank_state.at("mixed").equal(data.rank_state.at("mixed")));
  EXPECT_TRUE(back.data.equal(data.data));
  comm->barrier();
}
