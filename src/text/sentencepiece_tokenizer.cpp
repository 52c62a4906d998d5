#include "text/sentencepiece_tokenizer.h"

#include <dlfcn.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <unordered_map>

#include "core/error.h"
#include "text/sentencepiece_module.h"

namespace engram::text {
namespace {

namespace fs = std::filesystem;

// Opens the module once per process. RTLD_LOCAL keeps SentencePiece's protobuf symbols out of
// the global scope (so LibTorch's libprotobuf never binds to them); RTLD_DEEPBIND makes
// SentencePiece bind to its own copy rather than to LibTorch's.
const spm_module::Api* open_module() {
  std::vector<std::string> candidates;
  if (const char* env = std::getenv("ENGRAM_SENTENCEPIECE_MODULE")) candidates.emplace_back(env);
  candidates.emplace_back(ENGRAM_SENTENCEPIECE_MODULE);
  std::error_code ec;
  const fs::path exe_dir = fs::read_symlink("/proc/self/exe", ec).parent_path();
  if (!ec) {
    candidates.push_back((exe_dir / spm_module::kFileName).string());
    candidates.push_back((exe_dir / ".." / "lib" / spm_module::kFileName).string());
  }
  std::string tried;
  for (const std::string& path : candidates) {
    if (!fs::exists(path, ec)) {
      tried += fmt::format("\n  {}: not found", path);
      continue;
    }
    void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
    if (handle == nullptr) {
      tried += fmt::format("\n  {}: {}", path, dlerror());
      continue;
    }
    const auto get_api =
        reinterpret_cast<spm_module::GetApi>(dlsym(handle, spm_module::kApiSymbol));
    const spm_module::Api* api = get_api ? get_api() : nullptr;
    if (api != nullptr && api->version == spm_module::kApiVersion) return api;  // stays loaded
    tried += fmt::format("\n  {}: not a matching engram SentencePiece module", path);
    dlclose(handle);
  }
  core::fail("SentencePiece support is unavailable: cannot load {} (set ENGRAM_SENTENCEPIECE_MODULE "
             "to its path). Tried:{}",
             spm_module::kFileName, tried);
}

const spm_module::Api& api() {
  static const spm_module::Api* const loaded = open_module();  // retried if it threw
  return *loaded;
}

}  // namespace

SentencePieceTokenizer::SentencePieceTokenizer(const std::string& model_path) : path_(model_path) {
  // Checked here because the library's own message for a missing file is less clear.
  std::error_code ec;
  if (!fs::is_regular_file(model_path, ec))
    core::fail("SentencePiece model '{}' does not exist or is not a file", model_path);
  std::string error;
  processor_ = api().load(model_path, &error);
  if (processor_ == nullptr)
    core::fail("cannot load SentencePiece model '{}': {}; expected a .model file written by "
               "SentencePiece's trainer",
               model_path, error);
}

SentencePieceTokenizer::~SentencePieceTokenizer() {
  if (processor_ != nullptr) api().release(processor_);
}

std::vector<int32_t> SentencePieceTokenizer::encode(const std::string& text) const {
  std::vector<int> ids;
  std::string error;
  if (!api().encode(processor_, text, &ids, &error))
    core::fail("{}: encode failed: {}", name(), error);
  return {ids.begin(), ids.end()};
}

std::string SentencePieceTokenizer::decode(const std::vector<int32_t>& ids) const {
  // Checked here: the library's out-of-range message does not name the id.
  for (int32_t id : ids)
    if (id < 0 || id >= vocab_size())
      core::fail("{}: decode: id {} is not in the vocabulary (size {})", name(), id, vocab_size());
  std::string text, error;
  if (!api().decode(processor_, std::vector<int>(ids.begin(), ids.end()), &text, &error))
    core::fail("{}: decode failed: {}", name(), error);
  return text;
}

int32_t SentencePieceTokenizer::vocab_size() const { return api().piece_size(processor_); }
int32_t SentencePieceTokenizer::bos_id() const {
  return api().special_id(processor_, spm_module::Special::kBos);
}
int32_t SentencePieceTokenizer::eos_id() const {
  return api().special_id(processor_, spm_module::Special::kEos);
}
int32_t SentencePieceTokenizer::pad_id() const {
  return api().special_id(processor_, spm_module::Special::kPad);
}
int32_t SentencePieceTokenizer::unk_id() const {
  return api().special_id(processor_, spm_module::Special::kUnk);
}
std::string SentencePieceTokenizer::name() const { return "sentencepiece:" + path_; }

void train_sentencepiece(const SentencePieceTrainOptions& options, int num_threads) {
  std::error_code ec;
  if (!fs::is_regular_file(options.input, ec))
    core::fail("SentencePiece training input '{}' does not exist or is not a file", options.input);
  if (options.model_type != "unigram" && options.model_type != "bpe")
    core::fail("SentencePiece model_type '{}' is not supported; expected 'unigram' or 'bpe'",
               options.model_type);
  if (options.vocab_size <= 4)
    core::fail("SentencePiece vocab_size {} is too small; it must exceed the 4 special ids",
               options.vocab_size);
  const fs::path out_dir = fs::path(options.model_prefix).parent_path();
  if (!out_dir.empty() && !fs::is_directory(out_dir, ec))
    core::fail("SentencePiece model_prefix '{}': folder '{}' does not exist",
               options.model_prefix, out_dir.string());

  const auto flag = [](bool b) { return std::string(b ? "true" : "false"); };
  const std::unordered_map<std::string, std::string> flags = {
      {"input", options.input},
      {"model_prefix", options.model_prefix},
      {"vocab_size", std::to_string(options.vocab_size)},
      {"model_type", options.model_type},
      {"character_coverage", std::to_string(options.character_coverage)},
      {"max_sentence_length", std::to_string(options.max_sentence_length)},
      {"input_sentence_size", std::to_string(options.input_sentence_size)},
      {"shuffle_input_sentence", "true"},
      {"normalization_rule_name", options.normalization_rule},
      {"remove_extra_whitespaces", flag(options.remove_extra_whitespaces)},
      {"pad_id", "0"},
      {"unk_id", "1"},
      {"bos_id", "2"},
      {"eos_id", "3"},
      {"byte_fallback", "true"},
      {"split_digits", options.split_digits ? "true" : "false"},
      {"num_threads", std::to_string(std::max(1, num_threads))},
      // 0.1.97 reads this key before parsing the others: it sets the library's log level, and 1
      // drops the INFO lines (progress of every EM step) the trainer prints to stderr.
      {"minloglevel", "1"},
  };
  std::string error;
  if (!api().train(flags, options.seed, &error))
    core::fail("SentencePiece training on '{}' (vocab_size {}, {}) failed: {}", options.input,
               options.vocab_size, options.model_type, error);
}

}  // namespace engram::text
