#pragma once
// The boundary between engram_text and libengram_sentencepiece.so, the module that alone links
// libsentencepiece and is loaded with dlopen(RTLD_LOCAL | RTLD_DEEPBIND) (src/text/CMakeLists.txt
// says why). Both sides are built together from this header, so passing std types is safe; the
// version guards against a stale module found on the search path.
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace engram::text::spm_module {

constexpr int kApiVersion = 1;
constexpr const char* kApiSymbol = "engram_sentencepiece_api";
constexpr const char* kFileName = "libengram_sentencepiece.so";

enum class Special { kBos, kEos, kPad, kUnk };

// Functions that can fail return false (or nullptr) and set *error to the library's message.
struct Api {
  int version;
  void* (*load)(const std::string& model_path, std::string* error);  // a processor handle
  void (*release)(void* processor);
  bool (*encode)(const void* processor, const std::string& text, std::vector<int>* ids,
                 std::string* error);
  bool (*decode)(const void* processor, const std::vector<int>& ids, std::string* text,
                 std::string* error);
  int (*piece_size)(const void* processor);
  int (*special_id)(const void* processor, Special which);
  // Runs SentencePieceTrainer::Train with these flags after seeding the library's RNG.
  bool (*train)(const std::unordered_map<std::string, std::string>& flags, uint32_t seed,
                std::string* error);
};

using GetApi = const Api* (*)();

}  // namespace engram::text::spm_module
