// libFuzzer targets: the document readers (data/readers.h) on JSONL, CSV (StreamingQA and
// ArchivalQA) and SQuAD JSON, in both bad-row modes. FUZZ_EXTENSION (a compile definition) picks
// the format. A bad file must end in a UserError (BadRecord is one); any other exception, a
// sanitizer report, or a skip-mode read that counts wrong is a finding.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <string>

#include "core/error.h"
#include "data/readers.h"

namespace {

const std::string& path() {
  static const std::string p = "/tmp/engram_fuzz_" + std::to_string(::getpid()) + FUZZ_EXTENSION;
  return p;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  {
    std::ofstream out(path(), std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  for (bool skip : {false, true}) {
    engram::data::ReadOptions options;
    options.skip_bad_rows = skip;
    engram::data::ReadStats stats;
    try {
      const auto documents = engram::data::read_all(path(), options, &stats);
      if (stats.documents != static_cast<int64_t>(documents.size())) __builtin_trap();
      if (stats.rows != stats.documents + stats.bad_rows) __builtin_trap();
      for (const auto& doc : documents)
        if (doc.text.empty()) __builtin_trap();  // an empty text is a bad row
    } catch (const engram::core::UserError&) {
    }
  }
  return 0;
}
