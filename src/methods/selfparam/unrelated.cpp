#include "methods/selfparam/unrelated.h"

#include <fstream>

#include "core/error.h"
#include "data/readers.h"
#include "text/tokenizer.h"

namespace engram::selfparam {

UnrelatedText::UnrelatedText(std::string path, const text::Tokenizer& tokenizer, int64_t max_tokens, int rank,
                             int world)
    : path_(std::move(path)), tokenizer_(tokenizer), max_tokens_(max_tokens), rank_(rank), world_(world) {
  reopen();
  std::string first;
  if (!read_one(first)) core::fail("selfparam.unrelated_file '{}' holds no text", path_);
  reopen();
}

UnrelatedText::~UnrelatedText() = default;

void UnrelatedText::reopen() {
  const bool plain = path_.size() >= 4 && path_.compare(path_.size() - 4, 4, ".txt") == 0;
  if (plain) {
    auto in = std::make_unique<std::ifstream>(path_);
    if (!*in) core::fail("selfparam.unrelated_file '{}': cannot open", path_);
    lines_ = std::move(in);
    return;
  }
  data::ReadOptions options;
  options.skip_bad_rows = true;
  documents_ = std::make_unique<data::DocumentReader>(path_, options);
}

bool UnrelatedText::read_one(std::string& text) {
  if (lines_) {
    while (std::getline(*lines_, text))
      if (!text.empty()) return true;
    return false;
  }
  data::Document doc;
  while (documents_->next(doc))
    if (!doc.text.empty()) return text = doc.text, true;
  return false;
}

std::vector<int32_t> UnrelatedText::next() {
  // The first call passes over the texts of lower ranks; later calls over the other W - 1 ranks'.
  const int passes = started_ ? world_ : rank_ + 1;
  started_ = true;
  std::string text;
  for (int k = 0; k < passes; ++k) {
    if (read_one(text)) continue;
    reopen();
    if (!read_one(text)) core::fail("selfparam.unrelated_file '{}' holds no text", path_);
  }
  auto ids = tokenizer_.encode(text);
  if (static_cast<int64_t>(ids.size()) > max_tokens_) ids.resize(static_cast<size_t>(max_tokens_));
  return ids;
}

}  // namespace engram::selfparam
