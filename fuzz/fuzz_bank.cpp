// libFuzzer target: the MAC memory-bank loader (methods/mac/bank.h) on arbitrary bytes written as
// a bank file: open, check the fingerprint, read every row's summaries, keys, ids and times. A bad
// file must end in a UserError; any other exception or a sanitizer report in engram's code is a
// finding. (The input is what HDF5 itself parses first: a crash inside libhdf5 shows in its frames.)
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <string>

#include "core/error.h"
#include "methods/mac/bank.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = "/tmp/engram_fuzz_" + std::to_string(::getpid()) + ".h5";
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  try {
    engram::mac::BankReader bank(path);
    bank.require_fingerprint(bank.meta().fingerprint);
    constexpr int64_t kChunk = 64;  // rows per read, as answering reads them
    for (int64_t begin = 0; begin < bank.rows(); begin += kChunk) {
      const int64_t count = std::min(kChunk, bank.rows() - begin);
      if (bank.summaries(begin, count).size(0) != count) __builtin_trap();
      if (bank.meta().key_dim > 0 && bank.keys(begin, count).size(0) != count) __builtin_trap();
      if (static_cast<int64_t>(bank.doc_ids(begin, count).size()) != count) __builtin_trap();
      if (static_cast<int64_t>(bank.times(begin, count).size()) != count) __builtin_trap();
    }
  } catch (const engram::core::UserError&) {
  }
  return 0;
}
