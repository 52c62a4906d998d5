#pragma once
// MAC's memory bank on disk (DESIGN.md "Files users keep"): one HDF5 file, readable with h5py.
//   root attributes: format = "engram-bank", version = 2, model_fingerprint (the amortizer's,
//                    see MacModel::fingerprint), T, d, dtype ("float32" | "bfloat16"), rows (the
//                    committed row count: datasets may be longer, readers ignore the rest)
//   summaries [N, T, d]   chunked, extendible (new documents append)
//   summary_crc32 [N]     int64: zlib's CRC-32 of each row's stored bytes, checked on every read
//   doc_ids   [N]         fixed-length strings (documents are deduplicated by id)
//   times     [N]         int64 (the document's time, 0 when unknown)
//   keys      [N, K]      float32, only in banks of models with token keys (root attribute
//                         key_dim = K; mac.retriever.keys: tokens); absent (key_dim 0) otherwise;
//                         key_crc32 [N] beside it, as summary_crc32
//   (doc_ids and times carry HDF5's fletcher32 on their chunks. Version 1 banks, read only, had
//   fletcher32 on the summaries and keys and no CRC columns.)
// Rows are in stream order: the documents of the first write, then those of each append.
//
// Writing is collective: every rank encodes its share of the documents (ShardSpec over the new,
// deduplicated documents) and writes its rows by hyperslab into one file with parallel HDF5.
// A crash at any moment leaves the previous bank readable: a new bank is written under a
// temporary name and renamed; an append writes its rows past the committed ones in place, then
// raises `rows` (so it costs the new rows, not the bank), except when longer ids need the id
// column rebuilt, which happens on a copy that replaces the original when complete.
// Reading works at any world size: each rank reads only the rows it is asked for.
#include <cstdint>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "dist/mpi_handle.h"

namespace engram::dist {
class Communicator;
}

namespace engram::mac {

struct BankMeta {
  std::string fingerprint;  // of the amortizer that made the summaries
  int64_t T = 0;            // summary tokens per document
  int64_t d = 0;            // width of each summary token (the base LM's d_model)
  std::string dtype = "float32";  // on disk: float32 | bfloat16
  int64_t key_dim = 0;      // width of the stored retrieval keys; 0 = the bank stores none
};

// The rows one rank contributes to a write: summaries [n, T, d] (any float dtype; converted to
// meta.dtype), keys [n, meta.key_dim] when meta.key_dim > 0, and n ids and times. n may be 0.
struct BankRows {
  at::Tensor summaries;
  at::Tensor keys;
  std::vector<std::string> doc_ids;
  std::vector<int64_t> times;
};

// Which documents of a planned write are new: deduplication happens before encoding, so no
// rank spends time on a document the bank already holds.
//   `ids`: the ids of the documents this write offers, the same list on every rank, in stream
//   order. Returns the indices (into `ids`) to encode and store: those not in the existing bank
//   (when appending to `path`) and not repeated earlier in `ids`, in order.
// Collective only in the sense that every rank reads the same file; no communication.
std::vector<int64_t> new_document_indices(const std::string& path, bool append, const std::vector<std::string>& ids);

// Collective. Creates `path` (append = false; an existing file is replaced) or appends to it
// (append = true; the file must exist, with the same fingerprint, T, d, dtype and key_dim, else
// core::UserError naming the file and the mismatch). `rows` are this rank's rows; the global row
// order is rank 0's rows, then rank 1's, ... after any existing rows. `mpi_comm`: the job's MPI
// communicator handle (null for one process). Returns the total row count after the write.
int64_t write_bank(const std::string& path, const BankMeta& meta, const BankRows& rows, bool append,
                   dist::Communicator& comm, dist::MpiHandle mpi_comm);

// Read access (any world size; serial HDF5, each rank opens the file itself).
class BankReader {
 public:
  // Bad files -> core::UserError naming the file: missing, not HDF5, wrong format or version,
  // missing datasets, shapes that disagree with T/d/N.
  explicit BankReader(const std::string& path);
  ~BankReader();
  BankReader(const BankReader&) = delete;
  BankReader& operator=(const BankReader&) = delete;

  const BankMeta& meta() const { return meta_; }
  int64_t rows() const { return rows_; }
  int64_t version() const { return version_; }
  // core::UserError unless the bank was written by the amortizer with this fingerprint
  // ("bank F was built by amortizer X, this model is Y: rebuild it with engram mac-memorize").
  void require_fingerprint(const std::string& fingerprint) const;
  // Rows [begin, begin + count) as float32 [count, T, d]; a row that fails its checksum is a
  // core::UserError naming the bank and the row.
  at::Tensor summaries(int64_t begin, int64_t count) const;
  // Rows [begin, begin + count) of the keys as float32 [count, key_dim]; core::UserError when the
  // bank stores none.
  at::Tensor keys(int64_t begin, int64_t count) const;
  std::vector<std::string> doc_ids(int64_t begin, int64_t count) const;
  std::vector<int64_t> times(int64_t begin, int64_t count) const;

 private:
  struct File;
  std::string path_;
  BankMeta meta_;
  int64_t rows_ = 0;
  int64_t version_ = 0;
  File* file_ = nullptr;
};

}  // namespace engram::mac
