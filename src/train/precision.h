#pragma once
// Whether bf16 autocast (train.bf16: auto) pays on the device a model trains on. On CPUs that
// multiply bf16 natively (AMX, AVX512-BF16) LibTorch's bf16 matmul runs through oneDNN at several
// times float32's rate; elsewhere it is emulated, and was measured at 1/20 of float32's rate on an
// AVX2-only CPU: there bf16 would turn a 15-minute run into hours. Measuring beats guessing from
// CPU flags: what counts is the rate this LibTorch build reaches.
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

namespace engram::dist {
class Communicator;
}

namespace engram::train {

// GFLOP/s of an n x n x n matmul in `dtype` on this process's CPU threads: the best of three
// after a warm-up.
double cpu_matmul_gflops(int64_t n, at::ScalarType dtype = at::kFloat);

struct Bf16Probe {
  double float32_gflops = 0;
  double bf16_gflops = 0;
  bool pays = false;  // bf16 reaches at least kBf16PaysRatio x float32's rate
};
constexpr double kBf16PaysRatio = 1.5;

// The two CPU matmul rates at n (512: about 0.1 s where bf16 is emulated, milliseconds elsewhere).
Bf16Probe probe_cpu_bf16(int64_t n = 512);

// Resolves train.bf16 = auto for a model on `device`: CUDA devices always (bf16 tensor cores, as
// every preset that sets bf16 assumes); CPUs where probe_cpu_bf16 says it pays on every rank, so
// that all ranks train alike. Collective over `comm`.
bool bf16_pays_on(const c10::Device& device, dist::Communicator& comm);

}  // namespace engram::train
