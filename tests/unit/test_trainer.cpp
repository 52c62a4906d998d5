// The trainer on one process (Local backend): bit-exact resume, stop signals, checkpoint
// commit protocol. Multi-rank training and resuming at another world size are tested under
// mpirun (tests/mpi, tests/cli).
#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>
#include <limits>
#include <fstream>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "core/error.h"
#include "core/signals.h"
#include "dist/local_communicator.h"
#include "train/checkpoint.h"
#include "train/precision.h"
#include "train/trainer.h"
#include "../common/regression_problem.h"

namespace fs = std::filesystem;
using namespace engram;

namespace {

// 37 examples, 8 -> 16 -> 4.
struct Problem : checks::RegressionProblem {
  explicit Problem(uint64_t seed) : RegressionProblem(seed, 37, 8, 16, 4) {}
};

train::TrainOptions options(const std::string& dir, int64_t steps) {
  train::TrainOptions o;
  o.steps = steps;
  o.micro_batch = 5;
  o.accumulation = 2;
  o.lr = 1e-2;
  o.warmup_steps = 3;
  o.log_every = 4;
  o.out_dir = dir;
  o.seed = 77;
  return o;
}

std::string fresh_dir(const std::string& name) {
  std::string dir = ::testing::TempDir() + name;
  fs::remove_all(dir);
  return dir;
}

}  // namespace

TEST(Trainer, LossGoesDown) {
  auto comm = dist::make_local_communicator(std::chrono::milliseconds(10000));
  Problem p(1);
  p.model->eval();  // no dropout noise: a clean signal
  train::Trainer trainer(options(fresh_dir("train_down"), 60), p.parameters(), *comm, {}, 37, "", 1.0);
  at::Tensor before = torch::mse_loss(p.model->forward(p.x), p.y);
  auto result = trainer.run(p.loss());
  at::Tensor after = torch::mse_loss(p.model->forward(p.x), p.y);
  EXPECT_EQ(result.last_step, 60);
  EXPECT_LT(after.item<double>(), 0.7 * before.item<double>());
  // Metrics: one line per logged step (every 4, and the last).
  std::ifstream metrics(::testing::TempDir() + "train_down/metrics.jsonl");
  int lines = 0;
  for (std::string line; std::getline(metrics, line);) ++lines;
  EXPECT_EQ(lines, 15);
}

TEST(Trainer, ANonFiniteGradientStopsTheRunBeforeTheWeightsChange) {
  auto comm = dist::make_local_communicator(std::chrono::milliseconds(10000));
  Problem p(1);
  const std::string dir = fresh_dir("train_nan");
  train::Trainer trainer(options(dir, 8), p.parameters(), *comm, {}, 37, "", 1.0);
  auto base = p.loss();
  int calls = 0;
  std::vector<at::Tensor> at_step_3;
  auto loss = [&](const std::vector<int64_t>& indices) {
    train::MicroBatchLoss micro = base(indices);
    if (++calls == 7) {  // step 4's first micro-batch: a loss of 0/0, as a batch with no trained token
      for (const auto& [name, t] : p.parameters()) at_step_3.push_back(t.detach().clone());
      micro.loss = micro.loss * std::numeric_limits<double>::quiet_NaN();
    }
    return micro;
  };
  try {
    trainer.run(loss);
    FAIL() << "a NaN gradient did not stop the run";
  } catch (const core::UserError& e) {
    EXPECT_NE(std::string(e.what()).find("diverged at step 4"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("learning rate"), std::string::npos) << e.what();
  }
  ASSERT_EQ(at_step_3.size(), p.parameters().size());
  for (size_t i = 0; i < at_step_3.size(); ++i) EXPECT_TRUE(at_step_3[i].equal(p.parameters()[i].second)) << i;
}

TEST(Trainer, FiguresOfTheLossFunctionAreLoggedAsWindowMeans) {
  auto comm = dist::make_local_communicator(std::chrono::milliseconds(10000));
  Problem p(1);
  const std::string dir = fresh_dir("train_figures");
  train::Trainer trainer(options(dir, 8), p.parameters(), *comm, {}, 37, "", 1.0);
  int calls = 0;
  auto base = p.loss();
  trainer.run([&](const std::vector<int64_t>& indices) {
    train::MicroBatchLoss micro = base(indices);
    micro.figures["call"] = ++calls;
    micro.figures["half"] = 0.5;
    return micro;
  });
  // Two micro-batches a step, four steps a window: calls 1..8, then 9..16.
  std::ifstream metrics(dir + "/metrics.jsonl");
  std::vector<nlohmann::json> lines;
  for (std::string line; std::getline(metrics, line);) lines.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_DOUBLE_EQ(lines[0]["call"].get<double>(), 4.5);
  EXPECT_DOUBLE_EQ(lines[1]["call"].get<double>(), 12.5);
  EXPECT_DOUBLE_EQ(lines[1]["half"].get<double>(), 0.5);
  EXPECT_TRUE(lines[1].contains("loss"));
}

TEST(Trainer, TenStepsResumeTenStepsEqualsTwentySteps) {
  auto comm = dist::make_local_communicator(std::chrono::milliseconds(10000));
  Problem straight(5);
  train::Trainer a(options(fresh_dir("train_straight"), 20), straight.parameters(), *comm, {}, 37, "", 1.0);
  a.run(straight.loss());

  // The same 20-step run (same schedule), interrupted after step 10 (as SLURM's pre-timeout signal
  // would), then resumed.
  const std::string dir = fresh_dir("train_resumed");
  core::install_stop_signal_handlers();
  core::clear_stop_request();
  {
    Problem first(5);
    train::Trainer b(options(dir, 20), first.parameters(), *comm, {}, 37, "", 1.0);
    auto stopped = b.run(first.loss(), [](int64_t step) {
      if (step == 10) std::raise(SIGUSR1);
    });
    ASSERT_TRUE(stopped.stopped);
    ASSERT_EQ(stopped.last_step, 10);
  }
  core::clear_stop_request();
  // As a fresh process would be: the same data, but other weights and another generator state;
  // everything the run depends on must come from the checkpoint.
  Problem second(5);
  {
    torch::NoGradGuard no_grad;
    for (auto& [name, p] : second.parameters()) p.uniform_(-1, 1);
  }
  torch::manual_seed(999);
  train::Trainer c(options(dir, 20), second.parameters(), *comm, {}, 37, "", 1.0);
  EXPECT_EQ(c.resume(), 10);
  c.run(second.loss());
  auto pa = straight.parameters(), pc = second.parameters();
  ASSERT_EQ(pa.size(), pc.size());
  for (size_t k = 0; k < pa.size(); ++k) EXPECT_TRUE(pa[k].second.equal(pc[k].second)) << pa[k].first;
}

namespace {

// A loss with state of its own, as MAC's retriever pool: each micro-batch's loss is pulled towards
// the detached mean prediction of the last micro-batches (a queue of 3 rows of 4 floats, newest
// first, plus a count in int64 to show that dtypes are kept).
struct QueueLoss {
  at::Tensor queue = torch::zeros({0, 4});
  at::Tensor count = torch::zeros({1}, torch::kLong);
  train::LossFn wrap(Problem& p) {
    auto base = p.loss();
    return [this, base, &p](const std::vector<int64_t>& indices) {
      train::MicroBatchLoss micro = base(indices);
      at::Tensor pred = p.model->forward(p.x.index_select(0, torch::tensor(indices, torch::kLong)));
      if (queue.size(0) > 0) micro.loss = micro.loss + (pred - queue.mean(0)).pow(2).mean();
      queue = torch::cat({pred.detach().mean(0, true), queue}, 0).narrow(0, 0, std::min<int64_t>(queue.size(0) + 1, 3));
      count += 1;
      return micro;
    };
  }
  void keep(train::Trainer& trainer) {
    trainer.keep_rank_state("queue", [this] { return queue; }, [this](const at::Tensor& flat) { queue = flat.view({-1, 4}); });
    trainer.keep_rank_state("count.v1", [this] { return count; }, [this](const at::Tensor& flat) { count = flat.clone(); });
  }
};

// 6 steps straight, or 3 + a stop + a resume in a fresh trainer + 3; the queue kept or not.
std::vector<std::pair<std::string, at::Tensor>> run_with_queue(const std::string& name, bool interrupt, bool keep,
                                                               int64_t* count = nullptr) {
  auto comm = dist::make_local_communicator(std::chrono::milliseconds(10000));
  const std::string dir = fresh_dir(name);
  core::install_stop_signal_handlers();
  core::clear_stop_request();
  auto p = std::make_shared<Problem>(8);
  QueueLoss state;
  {
    train::Trainer t(options(dir, 6), p->parameters(), *comm, {}, 37, "", 1.0);
    if (keep) state.keep(t);
    t.run(state.wrap(*p), [&](int64_t step) {
      if (interrupt && step == 3) std::raise(SIGUSR1);
    });
  }
  core::clear_stop_request();
  if (interrupt) {
    QueueLoss fresh;  // as a new process would have it: empty
    auto q = std::make_shared<Problem>(8);
    train::Trainer t(options(dir, 6), q->parameters(), *comm, {}, 37, "", 1.0);
    if (keep) fresh.keep(t);
    EXPECT_EQ(t.resume(), 3);
    if (keep) {
      EXPECT_EQ(fresh.queue.size(0), 3);
    }
    t.run(fresh.wrap(*q));
    p = q;
    state = fresh;
  }
  if (count) *count = state.count.item<int64_t>();
  return p->parameters();
}

}  // namespace

TEST(Trainer, TheCallersRankStateIsCheckpointedForABitExactResume) {
  int64_t straight_count = 0, resumed_count = 0;
  auto straight = run_with_queue("queue_straight", false, true, &straight_count);
  auto resumed = run_with_queue("queue_resumed", true, true, &resumed_count);
  auto forgotten = run_with_queue("queue_forgotten", true, false);
  EXPECT_EQ(straight_count, 12);  // 6 steps x 2 micro-batches
  EXPECT_EQ(resumed_count, 12);   // the int64 counter came back too
  bool forgotten_differs = false;
  for (size_t k = 0; k < straight.size(); ++k) {
    EXPECT_TRUE(straight[k].second.equal(resumed[k].second)) << straight[k].first;
    forgotten_differs = forgotten_differs || !straight[k].second.equal(forgotten[k].second);
  }
  // Without keep_rank_state the resumed run starts with an empty queue: the state mattered.
  EXPECT_TRUE(forgotten_differs);
  // An empty state (a queue before its first entry) is saved and comes back empty.
  {
    auto comm = dist::make_local_communicator(std::chrono::milliseconds(10000));
    const std::string dir = fresh_dir("queue_empty");
    for (int round = 0; round < 2; ++round) {
      Problem p(1);
      at::Tensor empty = torch::zeros({0}), restored = torch::ones({3});
      train::Trainer t(options(dir, 1 + round), p.parameters(), *comm, {}, 37, "", 1.0);
      t.keep_rank_state("empty", [&] { return empty; }, [&](const at::Tensor& flat) { restored = flat; });
      EXPECT_EQ(t.resume(), round);
      if (round == 1) {
        EXPECT_EQ(restored.numel(), 0);
      }
      t.run(p.loss());
    }
  }
  // Names that are not plain HDF5 path components are refused.
  auto comm = dist::make_local_communicator(std::chrono::milliseconds(10000));
  Problem p(1);
  train::Trainer t(options(fresh_dir("queue_names"), 1), p.parameters(), *comm, {}, 37, "", 1.0);
  EXPECT_THROW(t.keep_rank_state("a/b", [] { return torch::zeros({1}); }, [](const at::Tensor&) {}), core::UserError);
}

TEST(Trainer, StopSignalSavesTheStepAndResumes) {
  auto comm = dist::make_local_communicator(std::chrono::milliseconds(10000));
  core::install_stop_signal_handlers();
  core::clear_stop_request();
  const std::string dir = fresh_dir("train_stop");
  Problem p(2);
  train::Trainer t(options(dir, 30), p.parameters(), *comm, {}, 37, "", 1.0);
  auto result = t.run(p.loss(), [](int64_t step) {
    if (step == 7) std::raise(SIGTERM);
  });
  core::clear_stop_request();
  EXPECT_TRUE(result.stopped);
  EXPECT_EQ(result.last_step, 7);
  EXPECT_TRUE(fs::exists(dir + "/checkpoints/step_00000007.h5"));
  EXPECT_TRUE(fs::exists(dir + "/checkpoints/step_00000007.done"));
  Problem q(3);
  train::Trainer again(options(dir, 30), q.parameters(), *comm, {}, 37, "", 1.0);
  EXPECT_EQ(again.resume(), 7);
  EXPECT_EQ(again.run(q.loss()).last_step, 30);
}

TEST(Checkpoint, OnlyCommittedStepsCountAndOldOnesArePruned) {
  auto comm = dist::make_local_communicator(std::chrono::milliseconds(10000));
  const std::string dir = fresh_dir("ckpt_store");
  train::CheckpointStore store(dir, *comm, {}, 2);
  EXPECT_FALSE(store.latest().has_value());
  for (int64_t step : {1, 2, 3}) {
    train::CheckpointData data;
    data.step = step;
    data.model = {{"w", at::full({2, 2}, static_cast<float>(step))}};
    data.optim = {{"w/exp_avg", at::arange(7, at::kFloat)}};
    data.counters["examples_seen"] = step * 10;
    data.rng = at::arange(5, at::kByte);
    data.data = at::full({1}, step, at::kLong);
    store.save(data);
  }
  EXPECT_EQ(*store.latest(), 3);
  EXPECT_FALSE(fs::exists(dir + "/step_00000001.h5"));  // keep_last = 2
  EXPECT_TRUE(fs::exists(dir + "/step_00000002.h5"));
  // A crash mid-save: a file without its commit marker, and a leftover temporary, are ignored.
  fs::copy_file(dir + "/step_00000003.h5", dir + "/step_00000009.h5");
  std::ofstream(dir + "/step_00000010.h5.tmp") << "partial";
  EXPECT_EQ(*store.latest(), 3);
  auto loaded = store.load(3);
  EXPECT_EQ(loaded.counters["examples_seen"], 30);
  EXPECT_TRUE(loaded.model[0].second.equal(at::full({2, 2}, 3.0f)));
  EXPECT_TRUE(loaded.optim[0].second.equal(at::arange(7, at::kFloat)));
  EXPECT_TRUE(loaded.rng.equal(at::arange(5, at::kByte)));
  // A file that is not a checkpoint.
  std::ofstream(dir + "/step_00000011.h5") << "junk";
  std::ofstream(dir + "/step_00000011.done") << "step 11";
  EXPECT_THROW(store.load(11), core::UserError);
}

TEST(Trainer, Bf16AutocastTrainsAndKeepsFloat32Weights) {
  auto comm = dist::make_local_communicator(std::chrono::milliseconds(10000));
  Problem p(1);
  p.model->eval();
  auto o = options(fresh_dir("train_bf16"), 60);
  o.bf16 = train::Bf16::On;
  train::Trainer trainer(o, p.parameters(), *comm, {}, 37, "", 1.0);
  at::Tensor before = torch::mse_loss(p.model->forward(p.x), p.y);
  bool saw_bf16 = false;
  auto loss = p.loss();
  auto result = trainer.run([&](const std::vector<int64_t>& indices) {
    auto out = loss(indices);
    // Under autocast the linear layers compute in bf16; the loss is promoted back to float.
    saw_bf16 = saw_bf16 || p.model->forward(p.x.narrow(0, 0, 2)).scalar_type() == at::kBFloat16;
    return out;
  });
  EXPECT_TRUE(saw_bf16);
  EXPECT_TRUE(result.bf16);
  for (auto& [name, param] : p.parameters()) EXPECT_EQ(param.scalar_type(), at::kFloat) << name;
  at::Tensor after = torch::mse_loss(p.model->forward(p.x), p.y);
  EXPECT_LT(after.item<double>(), 0.8 * before.item<double>());
}

// bf16 = auto: autocast exactly where the matmul probe finds bf16 paying on this CPU (on an AMX
// Xeon 6.8x float32's rate, on an AVX2-only EPYC 1/20 of it: far from the 1.5x line on both).
TEST(Trainer, Bf16AutoFollowsTheMatmulProbe) {
  const train::Bf16Probe probe = train::probe_cpu_bf16();
  EXPECT_GT(probe.float32_gflops, 0);
  EXPECT_GT(probe.bf16_gflops, 0);
  EXPECT_EQ(probe.pays, probe.bf16_gflops >= train::kBf16PaysRatio * probe.float32_gflops);
  auto comm = dist::make_local_communicator(std::chrono::milliseconds(10000));
  Problem p(1);
  auto o = options(fresh_dir("train_bf16_auto"), 2);
  o.bf16 = train::Bf16::Auto;
  train::Trainer trainer(o, p.parameters(), *comm, {}, 37, "", 1.0);
  at::ScalarType seen = at::kDouble;
  auto loss = p.loss();
  auto result = trainer.run([&](const std::vector<int64_t>& indices) {
    seen = p.model->forward(p.x.narrow(0, 0, 2)).scalar_type();
    return loss(indices);
  });
  EXPECT_EQ(result.bf16, probe.pays) << probe.bf16_gflops << " vs " << probe.float32_gflops << " GFLOP/s";
  EXPECT_EQ(seen, result.bf16 ? at::kBFloat16 : at::kFloat);
}

// train.profile_steps: steps 4 and 5 of 7 profiled into a Chrome trace and a table of ms per step
// by op and input shapes, biggest first.
TEST(Trainer, ProfileStepsWritesATraceAndAnOpTable) {
  auto comm = dist::make_local_communicator(std::chrono::milliseconds(10000));
  Problem p(1);
  const std::string dir = fresh_dir("train_profile");
  auto o = options(dir, 7);
  o.profile_steps = 2;
  train::Trainer trainer(o, p.parameters(), *comm, {}, 37, "", 1.0);
  trainer.run(p.loss());
  std::ifstream trace_file(dir + "/profile.json");
  ASSERT_TRUE(trace_file.good());
  const auto trace = nlohmann::json::parse(trace_file);
  const auto& events = trace.is_array() ? trace : trace.at("traceEvents");
  EXPECT_GT(events.size(), 10u);
  std::ifstream table_file(dir + "/profile_ops.txt");
  std::string header, first, line, all;
  std::getline(table_file, header);
  EXPECT_NE(header.find("2 profiled steps"), std::string::npos) << header;
  std::getline(table_file, first);
  double previous = std::stod(first);
  bool shapes_of_the_model = false;
  while (std::getline(table_file, line)) {
    EXPECT_LE(std::stod(line), previous) << line;  // sorted by time
    previous = std::stod(line);
    // An op of the model's forward, with its input shapes.
    shapes_of_the_model = shapes_of_the_model || (line.find("aten::") != std::string::npos &&
                                                  line.find(" [5,") != std::string::npos);
  }
  EXPECT_TRUE(shapes_of_the_model);
}
