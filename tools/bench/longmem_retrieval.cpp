// bench_longmem_retrieval: LongMem's retrieval over a full memory (src/methods/longmem/memory.h):
// queries/s of ChunkMemory::retrieve (per-head faiss search, then the gather of each chunk's tokens
// and the masks) against faiss IndexFlatIP searched directly (search only) and a dense matmul +
// topk over the chunk keys (search only), at the quickstart's heads (4 x 32) and the reference's
// (16 x 64); then faiss IndexIVFFlat's recall@k against the exact top-k and its speed, per nprobe.
// Memory contents are random Gaussian keys (no structure: IVF's recall here is a lower bound).
//
//   bench_longmem_retrieval [--tokens M] [--chunk C] [--queries Q] [--k K] [--reps R]   (--help)
// JSON lines on stdout (tools/bench/longmem.sh runs it).
#include <algorithm>
#include <cmath>
#include <chrono>
#include <cstdio>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <faiss/IndexFlat.h>
#include <faiss/IndexIVFFlat.h>
#include <fmt/format.h>

#include "bench_options.h"
#include "methods/longmem/memory.h"

namespace {

struct Options {
  int64_t tokens = 65536;
  int64_t chunk = 4;
  int64_t queries = 2048;
  int64_t k = 64;
  int reps = 3;
};

const char* kUsage =
    "usage: bench_longmem_retrieval [options]\n"
    "Fills a LongMem memory of M tokens in chunks of C (default 65536, 4) with random keys and values,\n"
    "then times Q queries (default 2048: 8 rows x 256 tokens) retrieving K tokens per head (K / C\n"
    "chunks) three ways, and faiss IVF's recall and speed. JSON lines on stdout.\n";

template <typename F>
double median_seconds(int reps, F&& f) {
  std::vector<double> times;
  for (int r = 0; r < reps; ++r) {
    const auto start = std::chrono::steady_clock::now();
    f();
    times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

void exact_three_ways(const Options& o, int64_t heads, int64_t dim) {
  engram::longmem::ChunkMemory memory({heads, dim, o.chunk, o.tokens});
  at::manual_seed(1);
  memory.write(at::randn({o.tokens, heads, dim}), at::randn({o.tokens, heads, dim}));
  const at::Tensor queries = at::randn({o.queries, heads, dim});
  const int64_t chunks = o.k / o.chunk, n = memory.capacity_chunks();
  const double engram_s = median_seconds(o.reps, [&] { memory.retrieve(queries, chunks); });
  // faiss directly: one index per head over the same chunk means, search only.
  const at::Tensor means = at::randn({heads, n, dim});
  std::vector<faiss::IndexFlatIP> indexes;
  for (int64_t h = 0; h < heads; ++h) {
    indexes.emplace_back(dim);
    indexes.back().add(n, means[h].contiguous().data_ptr<float>());
  }
  const at::Tensor by_head = queries.permute({1, 0, 2}).contiguous();
  std::vector<float> scores(static_cast<size_t>(o.queries * chunks));
  std::vector<faiss::Index::idx_t> ids(scores.size());
  const double faiss_s = median_seconds(o.reps, [&] {
    for (int64_t h = 0; h < heads; ++h)
      indexes[static_cast<size_t>(h)].search(o.queries, by_head[h].data_ptr<float>(), chunks, scores.data(), ids.data());
  });
  const double dense_s = median_seconds(o.reps, [&] { at::topk(at::bmm(by_head, means.transpose(1, 2)), chunks); });
  std::printf("%s\n", fmt::format("{{\"bench\":\"exact\",\"heads\":{},\"head_dim\":{},\"memory_tokens\":{},\"chunk\":{},"
                                  "\"queries\":{},\"k\":{},\"engram_queries_per_s\":{:.0f},\"faiss_flat_queries_per_s\":{:.0f},"
                                  "\"matmul_topk_queries_per_s\":{:.0f},\"threads\":{}}}",
                                  heads, dim, o.tokens, o.chunk, o.queries, o.k, o.queries / engram_s,
                                  o.queries / faiss_s, o.queries / dense_s, at::get_num_threads())
                          .c_str());
}

void ivf_recall(const Options& o, int64_t dim) {
  const int64_t n = o.tokens / o.chunk, chunks = o.k / o.chunk;
  at::manual_seed(2);
  const at::Tensor keys = at::randn({n, dim}), queries = at::randn({o.queries, dim});
  faiss::IndexFlatIP exact(dim);
  exact.add(n, keys.data_ptr<float>());
  std::vector<float> scores(static_cast<size_t>(o.queries * chunks));
  std::vector<faiss::Index::idx_t> truth(scores.size()), found(scores.size());
  const double exact_s =
      median_seconds(o.reps, [&] { exact.search(o.queries, queries.data_ptr<float>(), chunks, scores.data(), truth.data()); });
  const int64_t lists = std::max<int64_t>(16, static_cast<int64_t>(std::sqrt(static_cast<double>(n))) * 4);
  faiss::IndexFlatIP quantizer(dim);
  faiss::IndexIVFFlat ivf(&quantizer, dim, lists, faiss::METRIC_INNER_PRODUCT);
  ivf.train(n, keys.data_ptr<float>());
  ivf.add(n, keys.data_ptr<float>());
  for (int64_t nprobe : {1, 4, 16, 64}) {
    ivf.nprobe = nprobe;
    const double s =
        median_seconds(o.reps, [&] { ivf.search(o.queries, queries.data_ptr<float>(), chunks, scores.data(), found.data()); });
    int64_t hits = 0;
    for (int64_t q = 0; q < o.queries; ++q) {
      auto t0 = truth.begin() + q * chunks, f0 = found.begin() + q * chunks;
      for (int64_t j = 0; j < chunks; ++j) hits += std::find(t0, t0 + chunks, f0[j]) != t0 + chunks;
    }
    std::printf("%s\n", fmt::format("{{\"bench\":\"ivf\",\"head_dim\":{},\"chunks_indexed\":{},\"lists\":{},\"nprobe\":{},"
                                    "\"recall_at_k\":{:.4f},\"queries_per_s\":{:.0f},\"exact_queries_per_s\":{:.0f}}}",
                                    dim, n, lists, nprobe, static_cast<double>(hits) / static_cast<double>(o.queries * chunks),
                                    o.queries / s, o.queries / exact_s)
                            .c_str());
  }
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  bench::po::options_description options("options");
  options.add_options()
      ("tokens", bench::po::value(&o.tokens)->default_value(o.tokens), "memory tokens (M)")
      ("chunk", bench::po::value(&o.chunk)->default_value(o.chunk), "tokens per chunk (C)")
      ("queries", bench::po::value(&o.queries)->default_value(o.queries), "queries per timed call (Q)")
      ("k", bench::po::value(&o.k)->default_value(o.k), "tokens retrieved per query and head (K)")
      ("reps", bench::po::value(&o.reps)->default_value(o.reps), "timed repetitions (median)");
  bench::po::variables_map values;
  const bench::Parsed parsed = bench::parse_command_line(argc, argv, "bench_longmem_retrieval", kUsage, options, &values);
  if (parsed != bench::Parsed::Run) return parsed == bench::Parsed::Help ? 0 : 2;
  if (o.tokens % o.chunk != 0 || o.k % o.chunk != 0 || o.k > o.tokens) {
    std::fprintf(stderr, "bench_longmem_retrieval: --tokens and --k must be multiples of --chunk, k <= tokens\n");
    return 2;
  }
  exact_three_ways(o, 4, 32);   // the quickstart's memory layer
  exact_three_ways(o, 16, 64);  // the reference's
  ivf_recall(o, 32);
  return 0;
}
