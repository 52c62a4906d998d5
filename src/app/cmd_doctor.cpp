// engram doctor: is this installation and this launch healthy? Prints build info, the BLAS and
// its matmul speed, the rank/host table, the backend and why, checks every collective on every
// rank against computed expectations, and probes all_reduce bandwidth.
#include <algorithm>
#include <fstream>
#include <iostream>

#include <ATen/ATen.h>
#include <spdlog/spdlog.h>

#include "app/command.h"
#include "core/error.h"
#include "core/timer.h"
#include "dist/runtime.h"
#include "train/precision.h"

namespace engram::app {
namespace {

// The BLAS library mapped into this process (Debian's LibTorch calls the system BLAS, and the
// reference BLAS is ~50x slower than OpenBLAS: DESIGN.md, CPU performance facts).
std::string blas_in_use() {
  std::ifstream maps("/proc/self/maps");
  std::string line, found;
  while (std::getline(maps, line)) {
    auto slash = line.rfind('/');
    if (slash == std::string::npos) continue;
    std::string file = line.substr(slash + 1);
    if (file.find("openblas") != std::string::npos || file.find("libmkl") != std::string::npos ||
        file.find("libblis") != std::string::npos) return line.substr(line.find('/'));
    if (found.empty() && file.rfind("libblas", 0) == 0) found = line.substr(line.find('/'));
  }
  return found.empty() ? "unknown" : found + " (reference BLAS? install libopenblas0-openmp)";
}

// Every collective and dtype, checked against values every rank can compute for itself.
int health_check(dist::Communicator& comm) {
  const int w = comm.world_size(), r = comm.rank();
  int failures = 0;
  auto expect = [&](bool ok, const std::string& what) {
    if (!ok) {
      spdlog::error("health check failed on rank {}: {}", r, what);
      ++failures;
    }
  };
  for (auto dtype : {at::kFloat, at::kDouble, at::kBFloat16, at::kHalf, at::kInt, at::kLong}) {
    std::string name = c10::toString(dtype);
    at::Tensor t = at::full({17}, r + 1, at::TensorOptions().dtype(dtype));
    comm.all_reduce(t, dist::ReduceOp::Sum);
    expect(t.to(at::kDouble).eq(w * (w + 1) / 2.0).all().item<bool>(), "all_reduce sum " + name);
    at::Tensor m = at::full({5}, r, at::TensorOptions().dtype(dtype));
    comm.all_reduce(m, dist::ReduceOp::Max);
    expect(m.to(at::kDouble).eq(w - 1).all().item<bool>(), "all_reduce max " + name);
    at::Tensor b = at::full({3}, r == w - 1 ? 42 : 0, at::TensorOptions().dtype(dtype));
    comm.broadcast(b, w - 1);
    expect(b.to(at::kDouble).eq(42).all().item<bool>(), "broadcast " + name);
    at::Tensor g = comm.all_gather(at::full({2}, r, at::TensorOptions().dtype(dtype)));
    at::Tensor want = at::arange(w, at::kDouble).unsqueeze(1).expand({w, 2});
    expect(g.to(at::kDouble).equal(want), "all_gather " + name);
  }
  std::vector<std::string> names = comm.all_gather_bytes("rank" + std::to_string(r));
  expect(static_cast<int>(names.size()) == w && names[w - 1] == "rank" + std::to_string(w - 1), "all_gather_bytes");
  comm.barrier();
  at::Tensor failed = at::full({1}, failures, at::kInt);
  comm.all_reduce(failed, dist::ReduceOp::Sum);
  return failed.item<int>();
}

// Median time of an all_reduce of `bytes`; nccl-tests' algbw and busbw.
void bandwidth_probe(dist::Communicator& comm) {
  const int w = comm.world_size();
  if (w == 1) {
    spdlog::info("bandwidth probe: n/a (one rank)");
    return;
  }
  std::string table = "all_reduce bandwidth (float32, median of 5):\n      size     time_us   algbw_GB/s   busbw_GB/s\n";
  for (int64_t bytes : {int64_t(1) << 20, int64_t(16) << 20, int64_t(64) << 20}) {
    at::Tensor t = at::ones({bytes / 4});
    comm.all_reduce(t);  // warm-up
    std::vector<double> times;
    for (int i = 0; i < 5; ++i) {
      comm.barrier();
      core::Stopwatch clock;
      comm.all_reduce(t);
      at::Tensor elapsed = at::full({1}, clock.seconds(), at::kDouble);
      comm.all_reduce(elapsed, dist::ReduceOp::Max);
      times.push_back(elapsed.item<double>());
    }
    std::sort(times.begin(), times.end());
    double s = times[2];
    double algbw = bytes / s / 1e9;
    table += fmt::format("{:>7} MB {:>11.1f} {:>12.2f} {:>12.2f}\n", bytes >> 20, s * 1e6, algbw,
                         algbw * 2.0 * (w - 1) / w);
  }
  if (comm.rank() == 0) std::cout << table;
}

int run_doctor(CommandContext& ctx) {
  dist::Runtime& rt = *ctx.runtime;
  dist::Communicator& comm = rt.comm();
  const bool rank0 = comm.rank() == 0;
  double gflops = train::cpu_matmul_gflops(1024);
  // What train.bf16 = auto decides from (train/precision.h), at the same size.
  train::Bf16Probe bf16 = train::probe_cpu_bf16();
  std::string blas = blas_in_use();
  if (rank0) {
    std::cout << version_text() << "BLAS     " << blas << "\n"
              << fmt::format("matmul   {:.1f} GFLOP/s (1024^3 float32, {} thread(s), rank 0)\n", gflops, rt.threads())
              << fmt::format("matmul   {:.1f} GFLOP/s in bf16 against {:.1f} in float32 (512^3: {:.2f}x; train.bf16 auto: {})\n\n",
                             bf16.bf16_gflops, bf16.float32_gflops, bf16.bf16_gflops / bf16.float32_gflops,
                             bf16.pays ? "on here" : "off here");
  }
  auto table = rt.rank_table();
  if (rank0) {
    std::cout << fmt::format("{:>5} {:>6} {:<24} {:>8} {:<8} {:>7}\n", "rank", "local", "host", "pid", "device", "threads");
    for (const auto& row : table)
      std::cout << fmt::format("{:>5} {:>6} {:<24} {:>8} {:<8} {:>7}\n", row.rank, row.local_rank, row.host, row.pid,
                               row.device, row.threads);
    std::cout << fmt::format("\nbackend  {} ({}), {} rank(s) on {} node(s), dist.timeout_s {}\n",
                             comm.backend_name(), rt.backend_reason(), comm.world_size(), rt.topology().nodes,
                             ctx.config.get_float("dist.timeout_s"));
  }
  int failures = health_check(comm);
  if (rank0)
    std::cout << (failures == 0 ? fmt::format("health   all collectives correct on all {} rank(s)\n", comm.world_size())
                                : fmt::format("health   {} FAILED check(s); see the errors above\n", failures));
  bandwidth_probe(comm);
  std::cout.flush();
  return failures == 0 ? 0 : 1;
}

}  // namespace

Command doctor_command() {
  Command c;
  c.name = "doctor";
  c.summary = "check the installation and the launch: versions, BLAS, ranks, collectives, bandwidth";
  c.description =
      "Prints build information (engram, LibTorch, MPI, HDF5, NCCL), the BLAS in use and its matmul\n"
      "speed, a table of every rank (host, pid, device, threads), the chosen backend and why, then\n"
      "checks every collective in every dtype on every rank against computed values and measures\n"
      "all_reduce bandwidth. Exits 0 when everything is correct.\n\n"
      "example: mpirun -np 2 engram doctor";
  c.run = run_doctor;
  return c;
}

}  // namespace engram::app
