#pragma once
// Building a memory bank (specs/mac.md 5.2): one no-grad amortizer forward per document, the
// documents split across ranks by ShardSpec, one HDF5 bank written collectively (bank.h).
// Documents already in the bank (same id) or repeated in the input are skipped.
#include <cstdint>
#include <string>
#include <vector>

#include "dist/mpi_handle.h"
#include "data/document.h"
#include "methods/mac/system.h"

namespace engram::dist {
class Communicator;
}

namespace engram::mac {

struct MemorizeOptions {
  std::string bank_path;
  bool append = false;
  int64_t doc_tokens = 1022;
  int64_t batch = 16;              // documents encoded together
  std::string dtype = "float32";   // on disk: float32 | bfloat16
  bool progress = true;            // progress line with ETA (rank 0)
};

struct MemorizeReport {
  int64_t offered = 0;     // documents given
  int64_t added = 0;       // new rows written
  int64_t total_rows = 0;  // rows of the bank afterwards
  double encode_seconds = 0;  // slowest rank
  double seconds = 0;         // whole call, writing included
};

// Collective.
MemorizeReport memorize(MacSystem& system, const std::vector<data::Document>& documents,
                        const MemorizeOptions& options, dist::Communicator& comm, dist::MpiHandle mpi_comm);

}  // namespace engram::mac
