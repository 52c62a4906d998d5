#pragma once
// The tokenizer interface every model and method uses. Implementations: SentencePiece
// (sentencepiece_tokenizer.h) and GPT-2 byte-level BPE (gpt2_bpe.h). Ids are int32 (vocabularies
// are far below 2^31), so a sequence is a std::vector<int32_t>.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace engram::text {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  virtual std::vector<int32_t> encode(const std::string& text) const = 0;
  virtual std::string decode(const std::vector<int32_t>& ids) const = 0;
  virtual int32_t vocab_size() const = 0;
  // Special ids; -1 where the tokenizer has none (GPT-2 has only <|endoftext|>, used as all three).
  virtual int32_t bos_id() const = 0;
  virtual int32_t eos_id() const = 0;
  virtual int32_t pad_id() const = 0;
  virtual std::string name() const = 0;  // "sentencepiece:/path/x.model", "gpt2-bpe:/path"
};

// Opens a tokenizer from a path: a SentencePiece `.model` file, or a folder (or a vocab.json)
// holding GPT-2's vocab.json + merges.txt. Bad or missing files -> core::UserError naming them.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path);

// Copies the tokenizer at `path` (either kind) into `folder`, under the Hugging Face names
// (tokenizer.model, or vocab.json + merges.txt), so a model saved there is self-contained; returns
// the path load_tokenizer opens it by. Nothing is copied onto itself.
std::string copy_tokenizer_into(const std::string& path, const std::string& folder);

}  // namespace engram::text
