#pragma once
// LongMem's long-term memory (specs/longmem.md 1.3 and 5), with the reference's pitfalls fixed
// (section 6). Per attention head it holds the token keys and values of the frozen backbone's
// memory layer, grouped into chunks of `chunk` consecutive tokens; a chunk is found by the mean
// of its token keys (searched by raw inner product, exact, through one faiss IndexFlatIP per
// head) and gives all its tokens.
//
// Fixed against the reference:
// - FIFO is a ring, one chunk at a time: when full, a new chunk overwrites the oldest one in place
//   (in the faiss index too), instead of dropping two forward passes' worth and shifting (whose
//   faiss round trip the reference pays every other step). Occupancy stays at capacity.
// - Slots past the chunks held are masked (`valid`), never gathered through faiss's id -1.
// - It works on the CPU (the reference's CPU path is broken), in float32.
// Retrieve-before-write is the caller's order (the memory layer retrieves, then the segment's
// keys and values are written); writes can simply not be made at inference.
#include <cstdint>
#include <memory>
#include <string>

#include <ATen/core/Tensor.h>

namespace engram::io {
class H5File;
}

namespace engram::longmem {

struct MemoryShape {
  int64_t heads = 4;
  int64_t head_dim = 32;
  int64_t chunk = 4;                 // tokens per chunk (csz)
  int64_t capacity_tokens = 8192;    // M (a whole number of chunks)
};

// Approximate search (faiss IndexIVFFlat per head, inner product): 0 lists = exact search only.
// The coarse quantizer is trained once the memory holds 39 chunks per list (faiss's minimum for a
// sound k-means); until then, and after clear(), the search is exact. Overwritten slots are
// removed from and re-added to the inverted lists; ids are slots, as in the exact index.
struct MemorySearch {
  int64_t ivf_lists = 0;
  int64_t ivf_probe = 8;  // lists visited per query (= ivf_lists: the exact top-k)
};

class ChunkMemory {
 public:
  explicit ChunkMemory(MemoryShape shape, MemorySearch search = {});  // bad sizes -> core::UserError
  ~ChunkMemory();
  ChunkMemory(ChunkMemory&&) noexcept;
  ChunkMemory& operator=(ChunkMemory&&) noexcept;

  const MemoryShape& shape() const { return shape_; }
  const MemorySearch& search() const { return search_; }
  bool approximate() const;  // the IVF index is trained and answers retrieve()
  int64_t capacity_chunks() const { return shape_.capacity_tokens / shape_.chunk; }
  int64_t size() const;                      // chunks held
  int64_t written() const { return written_; }  // chunks ever written: the next chunk's id

  // Appends the keys and values [N, H, d] of N consecutive tokens (converted to float32). Only
  // whole chunks are kept: the last N mod chunk tokens are dropped, as in the reference.
  void write(const at::Tensor& keys, const at::Tensor& values);

  struct Retrieved {
    at::Tensor keys, values;  // [Q, H, T, d], T = chunks x chunk tokens: each head's best chunks, best first
    at::Tensor valid;         // [Q, H, T] bool: false past the chunks held (their keys and values are 0)
    at::Tensor chunk_ids;     // [Q, H, chunks] int64: the retrieved chunks' ids (write order), -1 where none
    at::Tensor scores;        // [Q, H, chunks] float: query . chunk key, -inf where none
  };
  // For queries [Q, H, d], each head's best `chunks` chunks by query . mean key.
  Retrieved retrieve(const at::Tensor& queries, int64_t chunks) const;

  void clear();

  // The whole memory as one float64 tensor (written count, keys, values) and back, for the
  // trainer's per-rank state (a resumed run reads the memory it had). restore() of a state of
  // another shape -> core::UserError.
  at::Tensor state() const;
  void restore(const at::Tensor& state);

  // The whole memory under `group` of an open file (rank 0's view: call on the rank that writes).
  void save(io::H5File& file, const std::string& group) const;
  static ChunkMemory load(const io::H5File& file, const std::string& group, MemorySearch search = {});

 private:
  struct Index;  // the faiss indexes (memory.cpp): keeps faiss's headers out of this one
  void index_chunks(const at::Tensor& means, int64_t first_slot);
  void train_ivf_when_ready();

  MemoryShape shape_;
  MemorySearch search_;
  at::Tensor keys_, values_;  // [H, C, chunk, d]
  at::Tensor chunk_ids_;      // [C] int64: the id of the chunk in each slot, -1 while empty
  int64_t written_ = 0;
  std::unique_ptr<Index> index_;
};

}  // namespace engram::longmem
