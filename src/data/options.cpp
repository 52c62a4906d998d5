#include "data/options.h"

#include "config/config.h"

namespace engram::data {

void declare_data_options(config::Schema& schema) {
  schema.add_string("data.on_bad_row", "error",
                    "a malformed row: error stops with file and line; skip counts it and reads on", {"error", "skip"});
  schema.add_float("data.max_document_mb", 8,
                   "a document whose text is longer is a bad row (a whole file read into one field, or a book to split)",
                   config::Range::at_least(0.001));
  schema.add_bool("data.archival_full_passage", false, "ArchivalQA: read the whole article (ans_text), not the paragraph");
}

ReadOptions read_options_from(const config::Config& config) {
  ReadOptions options;
  options.skip_bad_rows = config.get_string("data.on_bad_row") == "skip";
  options.archival_full_passage = config.get_bool("data.archival_full_passage");
  options.max_document_bytes = config.get_float("data.max_document_mb") * 1e6;
  return options;
}

}  // namespace engram::data
