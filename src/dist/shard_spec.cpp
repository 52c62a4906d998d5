#include "dist/shard_spec.h"

#include <algorithm>

#include "core/error.h"

namespace engram::dist {

ShardSpec::ShardSpec(int64_t rows, int world) : rows_(rows), world_(world) {
  ENGRAM_CHECK(rows >= 0, "ShardSpec: {} rows", rows);
  ENGRAM_CHECK(world >= 1, "ShardSpec: world {}", world);
}

RowRange ShardSpec::range(int rank) const {
  ENGRAM_CHECK(rank >= 0 && rank < world_, "ShardSpec: rank {} outside world {}", rank, world_);
  int64_t base = rows_ / world_, extra = rows_ % world_;
  int64_t begin = rank * base + std::min<int64_t>(rank, extra);
  return RowRange{begin, begin + base + (rank < extra ? 1 : 0)};
}

int ShardSpec::owner(int64_t row) const {
  ENGRAM_CHECK(row >= 0 && row < rows_, "ShardSpec: row {} outside {} rows", row, rows_);
  int64_t base = rows_ / world_, extra = rows_ % world_;
  int64_t long_rows = extra * (base + 1);  // rows held by the ranks that have one extra
  if (row < long_rows) return static_cast<int>(row / (base + 1));
  return static_cast<int>(extra + (row - long_rows) / base);
}

std::vector<ReslicePiece> reslice_plan(int64_t rows, int from_world, int to_world) {
  ShardSpec from(rows, from_world), to(rows, to_world);
  std::vector<ReslicePiece> plan;
  for (int r = 0; r < to_world; ++r) {
    RowRange target = to.range(r);
    int64_t row = target.begin;
    while (row < target.end) {
      int old = from.owner(row);
      RowRange source = from.range(old);
      int64_t count = std::min(target.end, source.end) - row;
      plan.push_back(ReslicePiece{old, row - source.begin, r, row - target.begin, count});
      row += count;
    }
  }
  return plan;
}

}  // namespace engram::dist
