#include <gtest/gtest.h>

#include "dist/shard_spec.h"

using namespace engram::dist;

TEST(ShardSpec, UnevenRowsGoToTheFirstRanks) {
  ShardSpec spec(10, 4);
  EXPECT_EQ(spec.range(0).begin, 0);
  EXPECT_EQ(spec.range(0).end, 3);
  EXPECT_EQ(spec.range(1).end, 6);
  EXPECT_EQ(spec.range(2).begin, 6);
  EXPECT_EQ(spec.range(2).end, 8);
  EXPECT_EQ(spec.range(3).end, 10);
  EXPECT_EQ(ShardSpec(2, 3).range(2).size(), 0);
}

TEST(ShardSpec, PropertiesForManySizes) {
  for (int64_t n : {0, 1, 2, 3, 7, 10, 64, 97, 1000, 1001}) {
    for (int w = 1; w <= 9; ++w) {
      ShardSpec spec(n, w);
      int64_t next = 0, smallest = n, largest = 0;
      for (int r = 0; r < w; ++r) {
        RowRange range = spec.range(r);
        EXPECT_EQ(range.begin, next) << n << " rows, world " << w << ", rank " << r;  // contiguous, disjoint
        next = range.end;
        smallest = std::min(smallest, range.size());
        largest = std::max(largest, range.size());
        for (int64_t row = range.begin; row < range.end; ++row) ASSERT_EQ(spec.owner(row), r);
      }
      EXPECT_EQ(next, n);                 // covers every row
      EXPECT_LE(largest - smallest, 1);   // balanced
    }
  }
}

TEST(ReslicePlan, MovesEveryRowOnceToItsNewOwner) {
  for (int64_t n : {0, 1, 5, 10, 97, 1000}) {
    for (int from = 1; from <= 6; ++from) {
      for (int to = 1; to <= 6; ++to) {
        ShardSpec old_spec(n, from), new_spec(n, to);
        std::vector<int> seen(static_cast<size_t>(n), 0);
        for (const ReslicePiece& p : reslice_plan(n, from, to)) {
          ASSERT_GT(p.count, 0);
          RowRange src = old_spec.range(p.from_rank), dst = new_spec.range(p.to_rank);
          ASSERT_LE(p.from_offset + p.count, src.size());
          ASSERT_LE(p.to_offset + p.count, dst.size());
          ASSERT_EQ(src.begin + p.from_offset, dst.begin + p.to_offset);  // same global rows
          for (int64_t k = 0; k < p.count; ++k) ++seen[static_cast<size_t>(dst.begin + p.to_offset + k)];
        }
        for (int64_t row = 0; row < n; ++row) ASSERT_EQ(seen[static_cast<size_t>(row)], 1) << n << " " << from << "->" << to;
      }
    }
  }
}

TEST(ReslicePlan, TwoToThreeExample) {
  // 7 rows: old ranks [0,4) [4,7); new ranks [0,3) [3,5) [5,7).
  auto plan = reslice_plan(7, 2, 3);
  ASSERT_EQ(plan.size(), 4u);
  EXPECT_EQ(plan[1].from_rank, 0);
  EXPECT_EQ(plan[1].to_rank, 1);
  EXPECT_EQ(plan[1].count, 1);
  EXPECT_EQ(plan[2].from_rank, 1);
  EXPECT_EQ(plan[2].from_offset, 0);
  EXPECT_EQ(plan[2].to_offset, 1);
}
