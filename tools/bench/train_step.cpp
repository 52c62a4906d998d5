// bench_train_step: training throughput of the decoder: forward + loss + backward + bucketed
// gradient all_reduce + AdamW, on random tokens, the way engram's trainer runs a step. Prints one
// JSON line (rank 0): tokens/s over all ranks, achieved GFLOP/s (6 x parameters x tokens / time),
// and the GFLOP/s of a 2048^3 matmul on the same threads in the same run (the machine's ceiling).
//
//   mpirun -np R bench_train_step [--layers L] [--d D] [--heads H] [--vocab V] [--seq T]
//                                 [--batch B] [--threads N] [--steps S] [--warmup W]
//                                 [--profile FILE] [--loss engram|torch] [--attention fused|ops]
//                                 [--d-ff F] [--positions P] [--bf16]      (--help: all of them)
// --batch is per rank. --profile writes a Chrome trace (chrome://tracing, Perfetto) of rank 0's
// timed steps: where a step spends its time, op by op (profiling slows the steps down). --loss
// torch uses LibTorch's cross_entropy instead of engram's train::token_cross_entropy, --attention ops
// the op-by-op attention instead of the fused one (model::causal_attention): with both, the step as
// it ran before those kernels, for a baseline in the same run (tools/bench/kernels.sh). Compare
// with PyTorch eager on the same LibTorch (DESIGN.md, CPU facts).
#include <mpi.h>

#include <chrono>
#include <cstdio>
#include <string>

#include <ATen/Parallel.h>
#include <torch/csrc/autograd/profiler_legacy.h>
#include <torch/torch.h>

#include "bench_options.h"
#include "core/allocator.h"
#include "dist/grad_reducer.h"
#include "dist/local_communicator.h"
#include "dist/mpi_communicator.h"
#include "model/decoder.h"
#include "train/autocast.h"
#include "train/cross_entropy.h"
#include "train/precision.h"

namespace {

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

int main(int argc, char** argv) {
  engram::core::keep_large_allocations_in_heap();  // as engram itself does
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  int rank = 0, world = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  int64_t layers = 2, d = 128, heads = 4, vocab = 4096, seq = 128, batch = 16, threads = 0, steps = 20, warmup = 3;
  int64_t d_ff = 0;
  std::string profile, loss_kind = "engram", positions = "learned", attention = "fused";
  bool bf16 = false;
  bench::po::options_description options("options");
  options.add_options()
      ("layers", bench::po::value(&layers)->default_value(layers), "decoder blocks")
      ("d", bench::po::value(&d)->default_value(d), "model width")
      ("d-ff", bench::po::value(&d_ff)->default_value(d_ff), "MLP width (0: 4d)")
      ("heads", bench::po::value(&heads)->default_value(heads), "attention heads")
      ("vocab", bench::po::value(&vocab)->default_value(vocab), "vocabulary size")
      ("seq", bench::po::value(&seq)->default_value(seq), "tokens per sequence")
      ("batch", bench::po::value(&batch)->default_value(batch), "sequences per step and rank")
      ("threads", bench::po::value(&threads)->default_value(threads), "LibTorch threads per rank (0: LibTorch's default)")
      ("steps", bench::po::value(&steps)->default_value(steps), "timed steps")
      ("warmup", bench::po::value(&warmup)->default_value(warmup), "untimed steps first")
      ("profile", bench::po::value(&profile), "write a Chrome trace of rank 0's timed steps to this file")
      ("loss", bench::po::value(&loss_kind)->default_value(loss_kind), "engram (train::token_cross_entropy) | torch")
      ("attention", bench::po::value(&attention)->default_value(attention),
       "fused (model::causal_attention, engram's default on CPU) | ops (the op-by-op form)")
      ("positions", bench::po::value(&positions)->default_value(positions), "learned | rope | alibi (model.positions)")
      ("bf16", bench::po::bool_switch(&bf16), "bf16 autocast, as train.bf16");
  bench::po::variables_map values;
  bench::Parsed parsed = bench::parse_command_line(
      argc, argv, "bench_train_step", "usage: mpirun -np R bench_train_step [options]   (tools/bench/train_step.sh)",
      options, &values, rank == 0);
  if (parsed == bench::Parsed::Run && loss_kind != "engram" && loss_kind != "torch")
    parsed = bench::fail("bench_train_step", "--loss expects engram or torch, got '" + loss_kind + "'", rank == 0);
  if (parsed == bench::Parsed::Run && attention != "fused" && attention != "ops")
    parsed = bench::fail("bench_train_step", "--attention expects fused or ops, got '" + attention + "'", rank == 0);
  if (parsed == bench::Parsed::Run && (d_ff < 0 || layers < 1 || d < 1 || heads < 1 || vocab < 2 || seq < 1 || batch < 1 ||
                                       steps < 1 || warmup < 0 || threads < 0 || d % heads != 0))
    parsed = bench::fail("bench_train_step", "sizes must be positive and --d a multiple of --heads", rank == 0);
  if (parsed != bench::Parsed::Run) {
    MPI_Finalize();
    return bench::exit_status(parsed);
  }
  if (threads > 0) at::set_num_threads(static_cast<int>(threads));
  at::globalContext().setFlushDenormal(true);
  torch::manual_seed(1);

  engram::model::DecoderConfig config = engram::model::DecoderConfig::preset("gpt2");
  config.vocab_size = vocab;
  config.d_model = d;
  config.n_layers = layers;
  config.n_heads = heads;
  config.d_ff = d_ff > 0 ? d_ff : 4 * d;
  config.max_positions = seq;
  config.positions = engram::core::parse_enum<engram::model::DecoderConfig::Positions>(positions, "--positions");
  engram::model::Decoder model(config);
  model->train();
  model->set_fused_attention(attention == "fused");
  auto comm = world > 1 ? engram::dist::make_mpi_communicator(MPI_COMM_WORLD, std::chrono::seconds(600))
                        : engram::dist::make_local_communicator(std::chrono::seconds(600));
  std::vector<at::Tensor> params = model->parameters();
  engram::dist::GradReducer reducer(*comm, params);
  torch::optim::AdamW optimizer(params, torch::optim::AdamWOptions(1e-3).weight_decay(0.01));

  auto ids = torch::randint(vocab, {batch, seq + 1}, torch::kLong);
  auto inputs = ids.narrow(1, 0, seq), targets = ids.narrow(1, 1, seq).reshape(-1);
  // Seconds spent in each phase over the timed steps (printed with the result).
  double t_forward = 0, t_backward = 0, t_reduce = 0, t_optimizer = 0;
  auto step = [&] {
    for (auto& p : params)
      if (p.grad().defined()) p.mutable_grad().zero_();
    auto t0 = std::chrono::steady_clock::now();
    engram::train::Bf16Autocast autocast(bf16);
    auto logits = model->forward(inputs).logits;
    auto loss = loss_kind == "torch"
                    ? torch::nn::functional::cross_entropy(logits.reshape({-1, vocab}), targets)
                    : engram::train::token_cross_entropy(logits, targets);
    auto t1 = std::chrono::steady_clock::now();
    loss.backward();
    auto t2 = std::chrono::steady_clock::now();
    reducer.after_backward(true);
    auto t3 = std::chrono::steady_clock::now();
    optimizer.step();
    t_forward += std::chrono::duration<double>(t1 - t0).count();
    t_backward += std::chrono::duration<double>(t2 - t1).count();
    t_reduce += std::chrono::duration<double>(t3 - t2).count();
    t_optimizer += seconds_since(t3);
  };
  for (int64_t i = 0; i < warmup; ++i) step();
  t_forward = t_backward = t_reduce = t_optimizer = 0;
  MPI_Barrier(MPI_COMM_WORLD);
  auto start = std::chrono::steady_clock::now();
  {
    std::unique_ptr<torch::autograd::profiler::RecordProfile> recording;
    if (rank == 0 && !profile.empty()) recording = std::make_unique<torch::autograd::profiler::RecordProfile>(profile);
    for (int64_t i = 0; i < steps; ++i) step();
  }
  double elapsed = seconds_since(start), slowest = 0;
  MPI_Allreduce(&elapsed, &slowest, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  const double tokens_per_s = static_cast<double>(batch * seq * world * steps) / slowest;
  const double gflops = 6.0 * static_cast<double>(model->num_parameters()) * tokens_per_s / 1e9;
  const double peak = engram::train::cpu_matmul_gflops(2048);  // the same probe as engram doctor's
  if (rank == 0)
    std::printf(
        "{\"bench\":\"train_step\",\"loss\":\"%s\",\"attention\":\"%s\",\"bf16\":%s,\"layers\":%ld,\"d\":%ld,\"d_ff\":%ld,\"heads\":%ld,\"vocab\":%ld,\"seq\":%ld,\"batch_per_rank\":%ld,"
        "\"ranks\":%d,\"threads_per_rank\":%d,\"parameters\":%ld,\"steps\":%ld,\"tokens_per_s\":%.0f,\"gflops\":%.2f,"
        "\"matmul_gflops\":%.1f,\"ms_per_step\":{\"forward\":%.1f,\"backward\":%.1f,\"reduce\":%.1f,"
        "\"optimizer\":%.1f}}\n",
        loss_kind.c_str(), attention.c_str(), bf16 ? "true" : "false", layers, d, config.d_ff, heads, vocab, seq, batch, world, at::get_num_threads(), model->num_parameters(), steps, tokens_per_s,
        gflops, peak, 1e3 * t_forward / steps, 1e3 * t_backward / steps, 1e3 * t_reduce / steps,
        1e3 * t_optimizer / steps);
  MPI_Finalize();
  return 0;
}
