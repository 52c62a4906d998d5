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
    io::H5File file(path, io::H5File::Mode::Create, &kWorld);
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
    train::Trainer t(options(shared_dir(*comm, "straight")), straight.parameters(), *comm, &kWorld, 41, "", 1.0);
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
    train::Trainer t(options(dir), first.parameters(), *comm, &kWorld, 41, "", 1.0);
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
  train::Trainer t(options(dir), second.parameters(), *comm, &kWorld, 41, "", 1.0);
  EXPECT_EQ(t.resume(), 10);
  t.run(second.loss());
  auto a = straight.parameters(), b = second.parameters();
  for (size_t k = 0; k < a.size(); ++k) EXPECT_TRUE(a[k].second.equal(b[k].second)) << a[k].first;
}
