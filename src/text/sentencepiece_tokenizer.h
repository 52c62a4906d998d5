#pragma once
// SentencePiece models: loading one (SentencePieceTokenizer) and training one with the library's
// own trainer (train_sentencepiece). libsentencepiece is reached through a module loaded at run
// time, libengram_sentencepiece.so (src/text/CMakeLists.txt says why); it is looked for at
// $ENGRAM_SENTENCEPIECE_MODULE, in the build tree, then next to the executable and in ../lib.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "text/tokenizer.h"

namespace engram::text {

class SentencePieceTokenizer : public Tokenizer {
 public:
  // Loads a `.model` file; a missing or unreadable file -> core::UserError naming it.
  explicit SentencePieceTokenizer(const std::string& model_path);
  ~SentencePieceTokenizer() override;

  // Thread-safe (SentencePieceProcessor's encode/decode are const).
  std::vector<int32_t> encode(const std::string& text) const override;
  // Ids outside the vocabulary -> core::UserError.
  std::string decode(const std::vector<int32_t>& ids) const override;
  int32_t vocab_size() const override;
  // As the model defines them; -1 where the model disabled one.
  int32_t bos_id() const override;
  int32_t eos_id() const override;
  int32_t pad_id() const override;
  int32_t unk_id() const;
  std::string name() const override;  // "sentencepiece:<model path>"

 private:
  std::string path_;
  void* processor_ = nullptr;  // owned; a handle of the SentencePiece module
};

struct SentencePieceTrainOptions {
  std::string input;         // text file, one sentence / document per line
  std::string model_prefix;  // writes <model_prefix>.model and <model_prefix>.vocab
  int vocab_size = 8000;     // includes the 4 special ids and, with byte fallback, 256 byte pieces
  std::string model_type = "unigram";  // "unigram" or "bpe"
  double character_coverage = 1.0;
  int max_sentence_length = 16384;  // bytes; longer lines are skipped for training
  int64_t input_sentence_size = 0;  // sample at most this many lines; 0 = all
  uint32_t seed = 1;                // for the line sampling and shuffling
  // Lossless by default, so decode(encode(s)) == s for any valid UTF-8: no NFKC, spaces kept as
  // they are. Set "nmt_nfkc" and true for SentencePiece's own defaults.
  std::string normalization_rule = "identity";
  bool remove_extra_whitespaces = false;
  // Digits as separate pieces (as LLaMA does). Off: frequent numbers (years) may be one piece.
  bool split_digits = true;
};

// Trains with sentencepiece::SentencePieceTrainer. Fixed choices: pad=0 unk=1 bos=2 eos=3,
// byte_fallback (unseen characters become byte pieces, never <unk>). The trainer's
// INFO logging is silenced. Failures (missing input, vocab_size too large for the corpus, ...)
// -> core::UserError carrying the trainer's message.
// Note: the seed and the log level are process-wide settings of the SentencePiece library.
void train_sentencepiece(const SentencePieceTrainOptions& options, int num_threads = 1);

}  // namespace engram::text
