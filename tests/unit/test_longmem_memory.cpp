// LongMem's chunked key/value memory (specs/longmem.md 1.3, 5): chunk keys against a hand
// computation, FIFO eviction order, masked empty slots, per-head retrieval against a brute-force
// top-k, and a round trip through HDF5 that continues as the original does.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>

#include "core/error.h"
#include "io/h5file.h"
#include "methods/longmem/memory.h"

namespace engram::longmem {
namespace {

// Random keys or values of N tokens [N, H, d].
at::Tensor tokens(int64_t n, int64_t heads, int64_t dim, uint64_t seed) {
  torch::manual_seed(seed);
  return torch::randn({n, heads, dim});
}

TEST(LongMemMemory, ChunkKeyIsTheMeanOfItsTokenKeysAndAChunkGivesAllItsTokens) {
  ChunkMemory m({2, 3, 2, 8});
  // Two chunks of two tokens; head 1's keys are head 0's times -1.
  at::Tensor k0 = torch::tensor({{1.0f, 0.0f, 2.0f}, {3.0f, 0.0f, 0.0f}, {0.0f, 4.0f, 0.0f}, {0.0f, 2.0f, 2.0f}});
  at::Tensor keys = torch::stack({k0, -k0}, 1);  // [4, 2, 3]
  at::Tensor values = keys + 10;
  m.write(keys, values);
  EXPECT_EQ(m.size(), 2);
  at::Tensor q = torch::tensor({{1.0f, 1.0f, 1.0f}});
  auto r = m.retrieve(torch::stack({q, q}, 1), 2);  // [1, 2, 3]
  // Chunk 0's mean (2, 0, 1), chunk 1's (0, 3, 1): q . mean = 3 and 4; head 1 the negatives.
  EXPECT_EQ(r.chunk_ids[0][0][0].item<int64_t>(), 1);
  EXPECT_EQ(r.chunk_ids[0][0][1].item<int64_t>(), 0);
  EXPECT_FLOAT_EQ(r.scores[0][0][0].item<float>(), 4.0f);
  EXPECT_FLOAT_EQ(r.scores[0][0][1].item<float>(), 3.0f);
  EXPECT_EQ(r.chunk_ids[0][1][0].item<int64_t>(), 0);
  EXPECT_FLOAT_EQ(r.scores[0][1][0].item<float>(), -3.0f);
  // Head 0's best chunk first: tokens 2 and 3, then 0 and 1, with their values.
  EXPECT_TRUE(torch::equal(r.keys[0][0], torch::cat({k0.narrow(0, 2, 2), k0.narrow(0, 0, 2)})));
  EXPECT_TRUE(torch::equal(r.values[0][0], torch::cat({k0.narrow(0, 2, 2), k0.narrow(0, 0, 2)}) + 10));
  EXPECT_TRUE(r.valid.all().item<bool>());
}

TEST(LongMemMemory, FullMemoryForgetsTheOldestChunkFirst) {
  ChunkMemory m({1, 2, 2, 6});  // 3 chunks
  // Chunk c's keys point along (1, 0) with length 10 - c: older chunks match (1, 0) better.
  for (int64_t c = 0; c < 5; ++c) {
    at::Tensor k = torch::tensor({{10.0f - c, 0.0f}, {10.0f - c, 0.0f}}).view({2, 1, 2});
    m.write(k, k);
    EXPECT_EQ(m.written(), c + 1);
    EXPECT_EQ(m.size(), std::min<int64_t>(c + 1, 3));
  }
  auto r = m.retrieve(torch::tensor({{{1.0f, 0.0f}}}), 3);
  EXPECT_EQ(r.chunk_ids[0][0][0].item<int64_t>(), 2);  // 0 and 1 left, oldest first
  EXPECT_EQ(r.chunk_ids[0][0][1].item<int64_t>(), 3);
  EXPECT_EQ(r.chunk_ids[0][0][2].item<int64_t>(), 4);
  // One write of more than the capacity keeps its last chunks.
  ChunkMemory big({1, 2, 2, 6});
  big.write(torch::arange(20, torch::kFloat).view({10, 1, 2}), torch::zeros({10, 1, 2}));
  r = big.retrieve(torch::tensor({{{0.0f, 1.0f}}}), 3);
  EXPECT_EQ(big.written(), 5);
  std::vector<int64_t> ids = {r.chunk_ids[0][0][0].item<int64_t>(), r.chunk_ids[0][0][1].item<int64_t>(),
                              r.chunk_ids[0][0][2].item<int64_t>()};
  EXPECT_EQ(ids, (std::vector<int64_t>{4, 3, 2}));
}

TEST(LongMemMemory, SlotsPastTheChunksHeldAreMaskedNotGathered) {
  ChunkMemory m({2, 4, 4, 32});
  auto empty = m.retrieve(tokens(3, 2, 4, 1), 2);
  EXPECT_FALSE(empty.valid.any().item<bool>());
  EXPECT_EQ(empty.keys.abs().sum().item<float>(), 0.0f);
  EXPECT_TRUE((empty.chunk_ids == -1).all().item<bool>());
  m.write(tokens(6, 2, 4, 2), tokens(6, 2, 4, 3));  // one chunk; the last 2 tokens are dropped
  EXPECT_EQ(m.size(), 1);
  auto r = m.retrieve(tokens(3, 2, 4, 4), 3);
  ASSERT_EQ(r.valid.sizes(), (std::vector<int64_t>{3, 2, 12}));
  EXPECT_TRUE(r.valid.narrow(2, 0, 4).all().item<bool>());
  EXPECT_FALSE(r.valid.narrow(2, 4, 8).any().item<bool>());
  EXPECT_EQ(r.values.narrow(2, 4, 8).abs().sum().item<float>(), 0.0f);
  EXPECT_EQ(r.chunk_ids[1][1][1].item<int64_t>(), -1);
  EXPECT_TRUE(std::isinf(r.scores[1][1][2].item<float>()));
}

TEST(LongMemMemory, EachHeadRetrievesItsOwnBruteForceTopK) {
  const int64_t heads = 3, dim = 8, chunk = 4, held = 40;
  ChunkMemory m({heads, dim, chunk, 64 * chunk});
  at::Tensor keys = tokens(held * chunk, heads, dim, 5);
  m.write(keys.narrow(0, 0, 60), keys.narrow(0, 0, 60));  // in two writes, 60 tokens = 15 chunks
  m.write(keys.narrow(0, 60, held * chunk - 60), keys.narrow(0, 60, held * chunk - 60));
  at::Tensor queries = tokens(5, heads, dim, 6);
  auto r = m.retrieve(queries, 6);
  at::Tensor means = keys.view({held, chunk, heads, dim}).mean(1);  // [chunks, H, d]
  for (int64_t h = 0; h < heads; ++h) {
    at::Tensor scores = torch::matmul(queries.select(1, h), means.select(1, h).t());  // [Q, chunks]
    auto [best, ids] = scores.topk(6, 1);
    EXPECT_TRUE(torch::equal(r.chunk_ids.select(1, h), ids)) << "head " << h;
    EXPECT_TRUE(torch::allclose(r.scores.select(1, h), best, 1e-5, 1e-5)) << "head " << h;
  }
}

TEST(LongMemMemory, RoundTripThroughHdf5ContinuesAsTheOriginal) {
  const std::string path = ::testing::TempDir() + "longmem_memory.h5";
  std::filesystem::remove(path);
  ChunkMemory m({2, 4, 2, 10});  // 5 chunks
  m.write(tokens(14, 2, 4, 7), tokens(14, 2, 4, 8));  // 7 chunks: wrapped
  {
    io::H5File file(path, io::H5File::Mode::Create);
    m.save(file, "/memory");
  }
  io::H5File file(path, io::H5File::Mode::Read);
  ChunkMemory again = ChunkMemory::load(file, "/memory");
  EXPECT_EQ(again.written(), 7);
  for (ChunkMemory* x : {&m, &again}) x->write(tokens(4, 2, 4, 9), tokens(4, 2, 4, 10));
  const at::Tensor q = tokens(3, 2, 4, 11);
  auto a = m.retrieve(q, 4), b = again.retrieve(q, 4);
  EXPECT_TRUE(torch::equal(a.chunk_ids, b.chunk_ids));
  EXPECT_TRUE(torch::equal(a.keys, b.keys));
  EXPECT_TRUE(torch::equal(a.values, b.values));
  EXPECT_THROW(ChunkMemory::load(file, "/nothing"), core::UserError);
}

TEST(LongMemMemory, IvfSearchIsExactWhenItProbesEveryListAndFollowsOverwrites) {
  // 4 lists: trained once 156 chunks are held; 200 chunks of capacity, so later writes overwrite.
  const MemoryShape shape{2, 8, 2, 400};
  ChunkMemory exact(shape), all_lists(shape, {4, 4}), one_list(shape, {4, 1});
  auto write = [&](int64_t n, uint64_t seed) {
    for (ChunkMemory* m : {&exact, &all_lists, &one_list}) m->write(tokens(n, 2, 8, seed), tokens(n, 2, 8, seed + 1));
  };
  write(300, 20);  // 150 chunks: not yet trained, exact search
  EXPECT_FALSE(all_lists.approximate());
  write(40, 22);   // 170 chunks
  EXPECT_TRUE(all_lists.approximate());
  const at::Tensor q = tokens(50, 2, 8, 30);
  EXPECT_TRUE(torch::equal(all_lists.retrieve(q, 5).chunk_ids, exact.retrieve(q, 5).chunk_ids));
  write(200, 24);  // 270 chunks written: 70 slots overwritten
  const auto a = all_lists.retrieve(q, 5), e = exact.retrieve(q, 5), one = one_list.retrieve(q, 5);
  EXPECT_TRUE(torch::equal(a.chunk_ids, e.chunk_ids));
  EXPECT_TRUE(torch::equal(a.keys, e.keys));
  // One list of four finds part of the exact top 5, and only chunks that are held.
  int64_t found = 0;
  for (int64_t i = 0; i < 50; ++i)
    for (int64_t h = 0; h < 2; ++h)
      for (int64_t j = 0; j < 5; ++j)
        found += e.chunk_ids[i][h].eq(one.chunk_ids[i][h][j]).any().item<bool>();
  EXPECT_GT(found, 50 * 2 * 5 / 10);
  EXPECT_LT(found, 50 * 2 * 5);
  EXPECT_TRUE(one.chunk_ids.ge(70).logical_or(one.chunk_ids.eq(-1)).all().item<bool>());
  all_lists.clear();  // back to exact until enough chunks again
  EXPECT_FALSE(all_lists.approximate());
}

TEST(LongMemMemory, BadSizesAreAClearError) {
  EXPECT_THROW(ChunkMemory({2, 4, 4, 10}), core::UserError);  // not a multiple of the chunk
  EXPECT_THROW(ChunkMemory({0, 4, 4, 16}), core::UserError);
  EXPECT_THROW(ChunkMemory({2, 4, 4, 16}, {4, 5}), core::UserError);  // probe > lists
}

}  // namespace
}  // namespace engram::longmem
