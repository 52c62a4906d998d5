// bench_allreduce: what engram's CPU data plane costs over raw MPI.
//
//  1. In-place float32 sum all-reduce, 1 KB .. 256 MB (x4 steps): raw MPI_Allreduce on a dup of
//     MPI_COMM_WORLD against Communicator::all_reduce (MPI backend) on the same buffer. The two are
//     interleaved per repeat (raw, comm, raw, comm, ...) so drift hits both alike.
//  2. Gradient averaging of many small tensors: GradReducer (bucketed, async) against one
//     Communicator::all_reduce(Avg) per tensor.
//
// Method (specs/systems-anchors.md 4.1, 4.5): barrier before every timed call, the time of a call
// is the maximum over ranks, the reported time is the median over repeats, after 3 warm-ups.
// algbw = S / t, busbw = algbw x 2(n-1)/n (nccl-tests). One JSON object per line, rank 0 only.
//
// Run with mpirun -np 2 --bind-to core (tools/bench/allreduce.sh).
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <fmt/format.h>

#include "bench_options.h"
#include "dist/communicator.h"
#include "dist/grad_reducer.h"
#include "dist/mpi_communicator.h"

namespace {

using engram::dist::Communicator;
using engram::dist::GradReducer;
using engram::dist::ReduceOp;


const char* kUsage =
    "usage: mpirun -np 2 --bind-to core bench_allreduce [--max-bytes N] [--quick] [--help]\n"
    "\n"
    "Benchmarks in-place float32 all-reduce: raw MPI_Allreduce vs engram's Communicator::all_reduce\n"
    "(MPI backend) from 1 KB to 256 MB in x4 steps, then GradReducer (bucketed) vs one\n"
    "all_reduce(Avg) per tensor over 200 tensors of 2000 floats. Prints JSON lines on rank 0:\n"
    "  {\"bench\":\"allreduce\",\"impl\":\"raw_mpi\"|\"communicator\",\"bytes\":..,\"time_us\":median,...}\n"
    "  {\"bench\":\"allreduce_overhead\",\"bytes\":..,\"communicator_vs_raw\":time ratio}\n"
    "  {\"bench\":\"grad_reduce\",\"impl\":\"bucketed\"|\"per_tensor\",...}\n"
    "  {\"bench\":\"grad_reduce_speedup\",\"ratio\":per_tensor/bucketed}\n"
    "Times are the max over ranks of one call, median over repeats, after warm-ups.\n";

struct Options {
  int64_t max_bytes = int64_t{256} << 20;
  bool quick = false;
};

// Returns "" on success, else the reason the byte count is wrong.
std::string parse_bytes(const std::string& text, int64_t* out) {
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  if (digits == 0) return fmt::format("--max-bytes: '{}' is not a byte count", text);
  std::string suffix = text.substr(digits);
  int shift = 0;
  if (suffix == "" || suffix == "B") shift = 0;
  else if (suffix == "K" || suffix == "k" || suffix == "KB" || suffix == "KiB") shift = 10;
  else if (suffix == "M" || suffix == "MB" || suffix == "MiB") shift = 20;
  else if (suffix == "G" || suffix == "GB" || suffix == "GiB") shift = 30;
  else return fmt::format("--max-bytes: unknown suffix '{}' in '{}' (use K, M or G)", suffix, text);
  if (digits > 12) return fmt::format("--max-bytes: '{}' is too large", text);
  int64_t value = std::stoll(text.substr(0, digits));
  if (value > (int64_t{1} << 40) >> shift) return fmt::format("--max-bytes: '{}' is too large", text);
  *out = value << shift;
  return "";
}

bench::Parsed parse_options(int argc, char** argv, Options* options, bool print) {
  std::string max_bytes = "256M";
  bench::po::options_description described("options");
  described.add_options()
      ("max-bytes", bench::po::value(&max_bytes)->default_value(max_bytes),
       "largest all-reduce size in bytes (suffix K, M or G = 2^10, 2^20, 2^30; 0 skips the size sweep)")
      ("quick", bench::po::bool_switch(&options->quick), "few repeats, for smoke runs (figures are noisy)");
  bench::po::variables_map values;
  bench::Parsed parsed = bench::parse_command_line(argc, argv, "bench_allreduce", kUsage, described, &values, print);
  if (parsed != bench::Parsed::Run) return parsed;
  const std::string error = parse_bytes(max_bytes, &options->max_bytes);
  return error.empty() ? parsed : bench::fail("bench_allreduce", error, print);
}

void check(int rc, const char* call) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(rc, text, &length);
  throw std::runtime_error(fmt::format("{} failed: {}", call, std::string(text, length)));
}
#define BENCH_MPI(call) check((call), #call)

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Times calls the way nccl-tests/osu do: barrier on `ctl`, run, max of the per-rank time over ranks.
class Timer {
 public:
  explicit Timer(MPI_Comm ctl) : ctl_(ctl) {}
  double seconds(const std::function<void()>& fn) const {
    BENCH_MPI(MPI_Barrier(ctl_));
    auto t0 = std::chrono::steady_clock::now();
    fn();
    auto t1 = std::chrono::steady_clock::now();
    double local = std::chrono::duration<double>(t1 - t0).count(), slowest = 0;
    BENCH_MPI(MPI_Allreduce(&local, &slowest, 1, MPI_DOUBLE, MPI_MAX, ctl_));
    return slowest;
  }

 private:
  MPI_Comm ctl_;
};

// Runs warmup + reps rounds of every function in `fns`, interleaved (a, b, a, b, ...); returns the
// kept per-call times of each.
std::vector<std::vector<double>> interleaved(const Timer& timer, const std::vector<std::function<void()>>& fns,
                                             int warmup, int reps) {
  std::vector<std::vector<double>> times(fns.size());
  for (int r = 0; r < warmup + reps; ++r)
    for (size_t f = 0; f < fns.size(); ++f) {
      double t = timer.seconds(fns[f]);
      if (r >= warmup) times[f].push_back(t);
    }
  return times;
}

int reps_for(int64_t bytes, bool quick) {
  if (bytes <= (64 << 10)) return quick ? 20 : 200;
  if (bytes <= (4 << 20)) return quick ? 10 : 50;
  if (bytes <= (64 << 20)) return quick ? 3 : 10;
  return quick ? 2 : 5;
}

std::string json_number(double x) {
  if (!std::isfinite(x)) return "null";
  return fmt::format("{:.6g}", x);
}

void emit(int rank, const std::string& line) {
  if (rank != 0) return;
  std::fputs(line.c_str(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

std::string library_version() {
  char text[MPI_MAX_LIBRARY_VERSION_STRING];
  int length = 0;
  MPI_Get_library_version(text, &length);
  std::string v(text, length);
  v = v.substr(0, v.find_first_of("\r\n,"));
  std::string escaped;
  for (char c : v)
    if (c != '"' && c != '\\') escaped += c;
  return escaped;
}

// Every rank fills `t` with rank+1, reduces it with `fn`, and checks the sum 1+2+..+W.
void verify_sum(at::Tensor& t, int rank, int world, const std::function<void()>& fn, const char* what) {
  t.fill_(static_cast<float>(rank + 1));
  fn();
  const float expect = 0.5f * world * (world + 1);
  float lo = t.min().item<float>(), hi = t.max().item<float>();
  if (lo != expect || hi != expect)
    throw std::runtime_error(fmt::format("{}: {} bytes reduced to [{}, {}], expected {}", what, t.nbytes(), lo,
                                         hi, expect));
}

void bench_sweep(Communicator& comm, MPI_Comm raw, const Timer& timer, const Options& options, int rank,
                 int world) {
  const int warmup = options.quick ? 1 : 3;
  const double bus_factor = world > 1 ? 2.0 * (world - 1) / world : 0.0;
  for (int64_t bytes = 1024; bytes <= options.max_bytes && bytes <= (int64_t{256} << 20); bytes *= 4) {
    const int reps = reps_for(bytes, options.quick);
    at::Tensor buf = at::empty({bytes / 4}, at::kFloat);
    float* data = buf.data_ptr<float>();
    const int count = static_cast<int>(buf.numel());
    auto raw_call = [&] { BENCH_MPI(MPI_Allreduce(MPI_IN_PLACE, data, count, MPI_FLOAT, MPI_SUM, raw)); };
    auto comm_call = [&] { comm.all_reduce(buf, ReduceOp::Sum); };
    verify_sum(buf, rank, world, raw_call, "raw MPI_Allreduce");
    verify_sum(buf, rank, world, comm_call, "Communicator::all_reduce");
    // Zeros stay zeros under repeated in-place sums: no overflow to inf over hundreds of repeats,
    // and the adds cost what any normal float add costs.
    buf.zero_();
    auto times = interleaved(timer, {raw_call, comm_call}, warmup, reps);
    double med[2];
    const char* impl[2] = {"raw_mpi", "communicator"};
    for (int k = 0; k < 2; ++k) {
      med[k] = median(times[k]);
      double lo = *std::min_element(times[k].begin(), times[k].end());
      double algbw = bytes / med[k] / 1e9;
      emit(rank, fmt::format("{{\"bench\":\"allreduce\",\"impl\":\"{}\",\"bytes\":{},\"ranks\":{},\"reps\":{},"
                             "\"time_us\":{},\"min_us\":{},\"algbw_GBps\":{},\"busbw_GBps\":{}}}",
                             impl[k], bytes, world, reps, json_number(med[k] * 1e6), json_number(lo * 1e6),
                             json_number(algbw), json_number(algbw * bus_factor)));
    }
    emit(rank, fmt::format("{{\"bench\":\"allreduce_overhead\",\"bytes\":{},\"ranks\":{},\"communicator_vs_raw\":{}}}",
                           bytes, world, json_number(med[1] / med[0])));
  }
}

// 200 gradients of `kNumel` floats each: 256 (1 KB, a LayerNorm of a small model), 768 (3 KB, a
// GPT-2 bias) and 2000 (8 KB).
void bench_grad_reduce(Communicator& comm, const Timer& timer, const Options& options, int rank, int world,
                       int64_t kNumel) {
  constexpr int kTensors = 200;
  std::vector<at::Tensor> params;
  for (int i = 0; i < kTensors; ++i) {
    at::Tensor p = at::zeros({kNumel}, at::kFloat).set_requires_grad(true);
    p.mutable_grad() = at::full({kNumel}, static_cast<float>(rank + 1), at::kFloat);
    params.push_back(p);
  }
  GradReducer reducer(comm, params, engram::dist::kDefaultBucketBytes, engram::dist::kDefaultFirstBucketBytes);
  const int64_t buckets = static_cast<int64_t>(reducer.bucket_layout().size());

  auto bucketed = [&] { reducer.after_backward(true); };
  auto per_tensor = [&] {
    for (auto& p : params) comm.all_reduce(p.mutable_grad(), ReduceOp::Avg);
  };
  // Grads of rank r are r+1, so their average is (W+1)/2 on every rank, and stays so.
  const float expect = 0.5f * (world + 1);
  auto check_avg = [&](const char* what) {
    for (auto& p : params) {
      float lo = p.grad().min().item<float>(), hi = p.grad().max().item<float>();
      if (lo != expect || hi != expect)
        throw std::runtime_error(fmt::format("{}: gradient averaged to [{}, {}], expected {}", what, lo, hi, expect));
    }
  };
  bucketed();
  check_avg("GradReducer");
  for (auto& p : params) p.mutable_grad().fill_(static_cast<float>(rank + 1));
  per_tensor();
  check_avg("per-tensor all_reduce(Avg)");

  const int warmup = options.quick ? 1 : 3;
  const int reps = options.quick ? 10 : 50;
  auto times = interleaved(timer, {bucketed, per_tensor}, warmup, reps);
  const int64_t bytes = kTensors * kNumel * 4;
  const char* impl[2] = {"bucketed", "per_tensor"};
  const int64_t collectives[2] = {buckets, kTensors};
  double med[2];
  for (int k = 0; k < 2; ++k) {
    med[k] = median(times[k]);
    double lo = *std::min_element(times[k].begin(), times[k].end());
    emit(rank, fmt::format("{{\"bench\":\"grad_reduce\",\"impl\":\"{}\",\"tensors\":{},\"numel\":{},\"bytes\":{},\"ranks\":{},"
                           "\"collectives\":{},\"reps\":{},\"time_us\":{},\"min_us\":{},\"algbw_GBps\":{}}}",
                           impl[k], kTensors, kNumel, bytes, world, collectives[k], reps, json_number(med[k] * 1e6),
                           json_number(lo * 1e6), json_number(bytes / med[k] / 1e9)));
  }
  emit(rank, fmt::format("{{\"bench\":\"grad_reduce_speedup\",\"tensors\":{},\"numel\":{},\"bytes\":{},\"ranks\":{},\"ratio\":{}}}",
                         kTensors, kNumel, bytes, world, json_number(med[1] / med[0])));
}

}  // namespace

int main(int argc, char** argv) {
  int provided = 0;
  if (MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided) != MPI_SUCCESS) {
    std::fprintf(stderr, "bench_allreduce: MPI_Init_thread failed\n");
    return 1;
  }
  int rank = 0, world = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world);

  Options options;
  const bench::Parsed parsed = parse_options(argc, argv, &options, rank == 0);
  if (parsed != bench::Parsed::Run) {
    MPI_Finalize();
    return bench::exit_status(parsed);
  }
  if (provided < MPI_THREAD_MULTIPLE) {
    if (rank == 0) std::fprintf(stderr, "bench_allreduce: MPI gives thread level %d, MPI_THREAD_MULTIPLE needed\n", provided);
    MPI_Finalize();
    return 1;
  }
  if (world < 2 && rank == 0)
    std::fprintf(stderr, "bench_allreduce: world size 1: nothing is communicated (grad_reduce skipped); run under mpirun -np 2\n");

  at::set_num_threads(1);
  at::globalContext().setFlushDenormal(true);

  int code = 0;
  try {
    MPI_Comm raw = MPI_COMM_NULL, ctl = MPI_COMM_NULL;
    BENCH_MPI(MPI_Comm_dup(MPI_COMM_WORLD, &raw));
    BENCH_MPI(MPI_Comm_dup(MPI_COMM_WORLD, &ctl));
    {
      std::unique_ptr<Communicator> comm =
          engram::dist::make_mpi_communicator(MPI_COMM_WORLD, std::chrono::seconds(600));
      Timer timer(ctl);
      emit(rank, fmt::format("{{\"bench\":\"meta\",\"ranks\":{},\"mpi\":\"{}\",\"torch_threads\":{},\"quick\":{},"
                             "\"max_bytes\":{}}}",
                             world, library_version(), at::get_num_threads(), options.quick ? "true" : "false",
                             options.max_bytes));
      bench_sweep(*comm, raw, timer, options, rank, world);
      // GradReducer communicates nothing at world size 1: there is nothing to compare.
      if (world > 1)
        for (int64_t numel : {256, 768, 2000}) bench_grad_reduce(*comm, timer, options, rank, world, numel);
      BENCH_MPI(MPI_Barrier(ctl));
    }  // the communicator (its queue and watchdog threads) goes before MPI does
    MPI_Comm_free(&raw);
    MPI_Comm_free(&ctl);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_allreduce: rank %d: %s\n", rank, e.what());
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
    code = 1;
  }
  MPI_Finalize();
  return code;
}
