#pragma once
// Which global rows each rank owns: N rows on W ranks as contiguous ranges, the first N % W
// ranks one row longer. And how to move rows written by W ranks to W' ranks (re-slicing a bank or
// an optimizer state at another world size).
#include <cstdint>
#include <vector>

namespace engram::dist {

struct RowRange {
  int64_t begin = 0;
  int64_t end = 0;  // exclusive
  int64_t size() const { return end - begin; }
};

class ShardSpec {
 public:
  ShardSpec(int64_t rows, int world);
  int64_t rows() const { return rows_; }
  int world() const { return world_; }
  RowRange range(int rank) const;
  int owner(int64_t row) const;  // the rank whose range holds `row`

 private:
  int64_t rows_;
  int world_;
};

// One contiguous run of rows that moves from an old rank to a new rank.
struct ReslicePiece {
  int from_rank = 0;
  int64_t from_offset = 0;  // row offset inside the old rank's range
  int to_rank = 0;
  int64_t to_offset = 0;    // row offset inside the new rank's range
  int64_t count = 0;
};

// Pieces ordered by new rank, then by row: together they cover every row exactly once.
std::vector<ReslicePiece> reslice_plan(int64_t rows, int from_world, int to_world);

}  // namespace engram::dist
