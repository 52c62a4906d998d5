#include "train/precision.h"

#include <algorithm>

#include <ATen/ATen.h>
#include <spdlog/spdlog.h>

#include "core/timer.h"
#include "dist/communicator.h"

namespace engram::train {

double cpu_matmul_gflops(int64_t n, at::ScalarType dtype) {
  at::NoGradGuard no_grad;
  at::Tensor a = at::randn({n, n}).to(dtype), b = at::randn({n, n}).to(dtype);
  at::mm(a, b);  // warm-up: oneDNN builds its kernel on the first call
  double best = 0;
  for (int i = 0; i < 3; ++i) {
    core::Stopwatch clock;
    at::mm(a, b);
    best = std::max(best, 2.0 * static_cast<double>(n * n * n) / clock.seconds() / 1e9);
  }
  return best;
}

Bf16Probe probe_cpu_bf16(int64_t n) {
  Bf16Probe p;
  p.float32_gflops = cpu_matmul_gflops(n, at::kFloat);
  p.bf16_gflops = cpu_matmul_gflops(n, at::kBFloat16);
  p.pays = p.bf16_gflops >= kBf16PaysRatio * p.float32_gflops;
  return p;
}

bool bf16_pays_on(const c10::Device& device, dist::Communicator& comm) {
  int pays = 1;
  if (!device.is_cuda()) {
    Bf16Probe p = probe_cpu_bf16();
    pays = p.pays ? 1 : 0;
    spdlog::debug("bf16 probe: matmul {:.1f} GFLOP/s in bf16, {:.1f} in float32", p.bf16_gflops, p.float32_gflops);
  }
  at::Tensor flag = at::full({1}, pays, at::kInt);
  comm.all_reduce(flag, dist::ReduceOp::Min);
  return flag.item<int>() == 1;
}

}  // namespace engram::train
