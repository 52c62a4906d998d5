#include "text/tokenizer.h"

#include <filesystem>

#include "core/error.h"
#include "text/gpt2_bpe.h"
#include "text/sentencepiece_tokenizer.h"

namespace engram::text {
namespace {

namespace fs = std::filesystem;

constexpr const char* kAccepted =
    "expected a SentencePiece '.model' file, or a GPT-2 folder holding vocab.json and merges.txt "
    "(or the path of that vocab.json)";

std::unique_ptr<Tokenizer> load_gpt2(const fs::path& vocab, const fs::path& merges) {
  for (const fs::path& file : {vocab, merges}) {
    std::error_code ec;
    if (!fs::is_regular_file(file, ec))
      core::fail("GPT-2 tokenizer: '{}' is missing; {}", file.string(), kAccepted);
  }
  return std::make_unique<Gpt2BpeTokenizer>(vocab.string(), merges.string());
}

}  // namespace

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path) {
  const fs::path p(path);
  std::error_code ec;
  if (!fs::exists(p, ec)) core::fail("tokenizer path '{}' does not exist; {}", path, kAccepted);
  if (fs::is_directory(p, ec)) return load_gpt2(p / "vocab.json", p / "merges.txt");
  if (p.extension() == ".model") return std::make_unique<SentencePieceTokenizer>(path);
  if (p.extension() == ".json") return load_gpt2(p, p.parent_path() / "merges.txt");
  core::fail("tokenizer path '{}' is neither kind; {}", path, kAccepted);
}

std::string copy_tokenizer_into(const std::string& path, const std::string& folder) {
  const fs::path p(path);
  auto copy = [&](const fs::path& from, const char* name) {
    const fs::path to = fs::path(folder) / name;
    std::error_code ec;
    if (!fs::equivalent(from, to, ec)) fs::copy_file(from, to, fs::copy_options::overwrite_existing);
    return to.string();
  };
  fs::create_directories(folder);
  if (fs::is_directory(p)) {
    copy(p / "merges.txt", "merges.txt");
    return copy(p / "vocab.json", "vocab.json");
  }
  if (p.extension() == ".json") {
    copy(p.parent_path() / "merges.txt", "merges.txt");
    return copy(p, "vocab.json");
  }
  return copy(p, "tokenizer.model");
}

}  // namespace engram::text
