// bench_bank_write: collective write speed of MAC's memory bank (src/methods/mac/bank.h) against
// the disk's sequential write speed measured by dd in the same run.
//
// Every rank contributes its ShardSpec share of --docs documents of T x d float32 summaries, and
// mac::write_bank writes them into one HDF5 file with parallel HDF5. A timed write is the whole
// call: the rank agreement, the collective write to <bank>.tmp, closing it, fsync, the rename and
// the directory's fsync, i.e. until the bank is durable. dd then writes the same number of bytes
// (the bank file's size) with conv=fdatasync, so both timings end with the data on disk. Bank
// writes and dd runs alternate (bank, dd, bank, dd, ...) so that drift hits both alike; a bank
// write's time is the maximum over ranks; reported times are medians over --reps.
// After the writes every rank reads its rows back and checks them bit for bit (the read time is
// from the page cache, not the disk). Then: appending 1000 documents to banks of 10k and 100k
// documents, R times each (bank_append: should take about the same time, appends are in place),
// each followed by dd writing the bytes it added (append_vs_dd: dd time / append time).
//
//   mpirun -np 2 bench_bank_write [--docs N] [--T T] [--d D] [--reps R] [--dir DIR]   (--help)
// JSON lines on rank 0 (tools/bench/bank_write.sh runs it).
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <fmt/format.h>

#include "bench_options.h"
#include "dist/mpi_communicator.h"
#include "dist/shard_spec.h"
#include "methods/mac/bank.h"

namespace {

struct Options {
  int64_t docs = 20000;
  int64_t T = 8;
  int64_t d = 128;
  int reps = 15;
  std::string dir = "/tmp/engram_bench_bank";
};

const char* kUsage =
    "usage: mpirun -np 2 bench_bank_write [options]\n"
    "Writes a float32 memory bank of N documents x T x d collectively (default 20000 x 8 x 128, ~82 MB)\n"
    "R times, alternating with dd writing as many bytes with conv=fdatasync, into DIR (removed\n"
    "afterwards). Prints JSON lines on rank 0.\n";

bench::Parsed parse(int argc, char** argv, Options* o, bool print) {
  bench::po::options_description options("options");
  options.add_options()
      ("docs", bench::po::value(&o->docs)->default_value(o->docs), "documents in the bank (N)")
      ("T", bench::po::value(&o->T)->default_value(o->T), "summary tokens per document")
      ("d", bench::po::value(&o->d)->default_value(o->d), "summary width")
      ("reps", bench::po::value(&o->reps)->default_value(o->reps), "bank writes and dd runs, alternating (R)")
      ("dir", bench::po::value(&o->dir)->default_value(o->dir), "where to write (DIR)");
  bench::po::variables_map values;
  bench::Parsed parsed = bench::parse_command_line(argc, argv, "bench_bank_write", kUsage, options, &values, print);
  if (parsed == bench::Parsed::Run && (o->docs < 1 || o->T < 1 || o->d < 1 || o->reps < 1))
    return bench::fail("bench_bank_write", "--docs, --T, --d and --reps must be >= 1", print);
  return parsed;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// The slowest rank's time: a collective write is done when its last rank is.
double max_over_ranks(double seconds) {
  double slowest = 0;
  MPI_Allreduce(&seconds, &slowest, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return slowest;
}

// This rank's share of the documents: random summaries (seeded by rank), ids, times.
engram::mac::BankRows make_rows(const Options& o, engram::dist::RowRange range, int rank) {
  engram::mac::BankRows rows;
  at::manual_seed(1000 + rank);
  rows.summaries = at::randn({range.size(), o.T, o.d});
  for (int64_t i = range.begin; i < range.end; ++i) {
    rows.doc_ids.push_back(fmt::format("doc-{:07d}", i));
    rows.times.push_back(1700000000 + i);
  }
  return rows;
}

// Seconds dd takes to write `bytes` to `path` and fdatasync them (the process start included,
// a few milliseconds). Throws if dd fails.
double time_dd(const std::string& path, int64_t bytes) {
  const std::string command = fmt::format(
      "dd if=/dev/zero of={} bs=1M count={} iflag=count_bytes conv=fdatasync status=none", path, bytes);
  auto t0 = std::chrono::steady_clock::now();
  const int rc = std::system(command.c_str());
  const double seconds = seconds_since(t0);
  if (rc != 0) throw std::runtime_error(command + " failed");
  return seconds;
}

std::string number(double x) { return fmt::format("{:.6g}", x); }

struct AppendTimes {
  double append_s = 0;  // median, the slowest rank's, until the append is committed and durable
  double dd_s = 0;      // median of dd writing as many bytes as each append added to the file
};

// Appending `count` documents to a bank of `base` documents (made first in appends of 20000), R
// times (the bank grows by count each time), each followed by dd writing the bytes it added.
// An append writes in place, so it should not depend on base.
AppendTimes time_append(const Options& o, const std::string& bank, int64_t base, int64_t count, int rank, int world,
                   engram::dist::Communicator& comm, const engram::mac::BankMeta& meta) {
  for (int64_t begin = 0; begin < base; begin += 20000) {
    const int64_t n = std::min<int64_t>(20000, base - begin);
    engram::dist::RowRange r = engram::dist::ShardSpec(n, world).range(rank);
    engram::mac::write_bank(bank, meta, make_rows(o, {begin + r.begin, begin + r.end}, rank), begin > 0, comm,
               engram::dist::MpiHandle::world());
  }
  std::vector<double> times, dd_times;
  for (int rep = 0; rep < o.reps; ++rep) {
    const int64_t bytes_before = rank == 0 ? static_cast<int64_t>(std::filesystem::file_size(bank)) : 0;
    const int64_t first = base + rep * count;
    engram::dist::RowRange r = engram::dist::ShardSpec(count, world).range(rank);
    const engram::mac::BankRows rows = make_rows(o, {first + r.begin, first + r.end}, rank);
    comm.barrier();
    auto t0 = std::chrono::steady_clock::now();
    engram::mac::write_bank(bank, meta, rows, /*append=*/true, comm, engram::dist::MpiHandle::world());
    times.push_back(max_over_ranks(seconds_since(t0)));
    if (rank == 0) {
      const std::string dd_file = bank + ".dd";
      dd_times.push_back(time_dd(dd_file, static_cast<int64_t>(std::filesystem::file_size(bank)) - bytes_before));
      std::filesystem::remove(dd_file);
    }
    comm.barrier();
  }
  if (rank == 0) std::filesystem::remove(bank);
  comm.barrier();
  return {median(times), rank == 0 ? median(dd_times) : 0.0};
}

int run(const Options& o, int rank, int world) {
  auto comm = engram::dist::make_mpi_communicator(MPI_COMM_WORLD, std::chrono::seconds(600));
  const std::string bank = o.dir + "/bank.h5", dd_file = o.dir + "/dd.bin";
  if (rank == 0) {
    std::filesystem::remove_all(o.dir);
    std::filesystem::create_directories(o.dir);
  }
  const engram::dist::RowRange mine = engram::dist::ShardSpec(o.docs, world).range(rank);
  const engram::mac::BankRows rows = make_rows(o, mine, rank);
  engram::mac::BankMeta meta;
  meta.fingerprint = "bench";
  meta.T = o.T;
  meta.d = o.d;
  comm->barrier();

  std::vector<double> bank_times, dd_times;
  int64_t file_bytes = 0;
  for (int rep = 0; rep < o.reps; ++rep) {
    comm->barrier();
    auto t0 = std::chrono::steady_clock::now();
    engram::mac::write_bank(bank, meta, rows, /*append=*/false, *comm, engram::dist::MpiHandle::world());
    bank_times.push_back(max_over_ranks(seconds_since(t0)));
    if (rank == 0) {
      file_bytes = static_cast<int64_t>(std::filesystem::file_size(bank));
      dd_times.push_back(time_dd(dd_file, file_bytes));
      std::filesystem::remove(dd_file);
    }
    comm->barrier();
  }

  // Read back this rank's rows, and check every bit.
  comm->barrier();
  auto t0 = std::chrono::steady_clock::now();
  engram::mac::BankReader reader(bank);
  at::Tensor back = reader.summaries(mine.begin, mine.size());
  std::vector<std::string> ids = reader.doc_ids(mine.begin, mine.size());
  const double read_s = max_over_ranks(seconds_since(t0));
  int bad = !(back.equal(rows.summaries) && ids == rows.doc_ids && reader.rows() == o.docs), any_bad = 0;
  MPI_Allreduce(&bad, &any_bad, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);

  const AppendTimes append_small = time_append(o, bank, 10000, 1000, rank, world, *comm, meta);
  const AppendTimes append_large = time_append(o, bank, 100000, 1000, rank, world, *comm, meta);

  const int64_t payload = o.docs * o.T * o.d * 4;
  if (rank == 0) {
    const double bank_s = median(bank_times), dd_s = median(dd_times);
    const double bank_mbps = file_bytes / bank_s / 1e6, dd_mbps = file_bytes / dd_s / 1e6;
    std::printf("%s\n", fmt::format("{{\"bench\":\"meta\",\"ranks\":{},\"docs\":{},\"T\":{},\"d\":{},"
                                    "\"dtype\":\"float32\",\"reps\":{},\"dir\":\"{}\"}}",
                                    world, o.docs, o.T, o.d, o.reps, o.dir).c_str());
    std::printf("%s\n", fmt::format("{{\"bench\":\"bank_write\",\"ranks\":{},\"bytes\":{},\"payload_bytes\":{},"
                                    "\"time_s\":{},\"min_s\":{},\"max_s\":{},\"MBps\":{},\"durable\":true}}",
                                    world, file_bytes, payload, number(bank_s),
                                    number(*std::min_element(bank_times.begin(), bank_times.end())),
                                    number(*std::max_element(bank_times.begin(), bank_times.end())),
                                    number(bank_mbps)).c_str());
    std::printf("%s\n", fmt::format("{{\"bench\":\"dd_write\",\"bytes\":{},\"time_s\":{},\"min_s\":{},\"max_s\":{},"
                                    "\"MBps\":{},\"flags\":\"bs=1M conv=fdatasync\"}}",
                                    file_bytes, number(dd_s),
                                    number(*std::min_element(dd_times.begin(), dd_times.end())),
                                    number(*std::max_element(dd_times.begin(), dd_times.end())),
                                    number(dd_mbps)).c_str());
    std::printf("%s\n", fmt::format("{{\"bench\":\"bank_read\",\"ranks\":{},\"bytes\":{},\"time_s\":{},\"MBps\":{},"
                                    "\"page_cache\":true,\"bit_exact\":{}}}",
                                    world, payload, number(read_s), number(payload / read_s / 1e6),
                                    any_bad ? "false" : "true").c_str());
    std::printf("%s\n", fmt::format("{{\"bench\":\"bank_vs_dd\",\"ratio\":{}}}", number(bank_mbps / dd_mbps)).c_str());
    std::printf("%s\n", fmt::format("{{\"bench\":\"bank_append\",\"docs\":1000,\"to_10k_s\":{},\"to_100k_s\":{},"
                                    "\"ratio_100k_vs_10k\":{},\"goal\":\"about 1\",\"durable\":true}}",
                                    number(append_small.append_s), number(append_large.append_s),
                                    number(append_large.append_s / append_small.append_s)).c_str());
    // dd's speed over the bytes of an append, against the append's (both until durable).
    std::printf("%s\n", fmt::format("{{\"bench\":\"append_vs_dd\",\"to_10k\":{},\"to_100k\":{},"
                                    "\"dd_s\":{},\"goal\":\">= 0.5\"}}",
                                    number(append_small.dd_s / append_small.append_s),
                                    number(append_large.dd_s / append_large.append_s),
                                    number(append_large.dd_s)).c_str());
    std::fflush(stdout);
    std::filesystem::remove_all(o.dir);
  }
  comm->barrier();
  if (any_bad && rank == 0)
    std::fprintf(stderr, "bench_bank_write: the bank read back differs from what was written\n");
  return any_bad ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  int rank = 0, world = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  Options options;
  const bench::Parsed parsed = parse(argc, argv, &options, rank == 0);
  if (parsed != bench::Parsed::Run) {
    MPI_Finalize();
    return bench::exit_status(parsed);
  }
  at::set_num_threads(1);
  int code = 0;
  try {
    code = run(options, rank, world);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_bank_write: rank %d: %s\n", rank, e.what());
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  MPI_Finalize();
  return code;
}
