#pragma once
// GPT-2 byte-level BPE, read from Hugging Face's `vocab.json` (token -> id) and `merges.txt`
// (one merge "a b" per line, rank = line order, an optional first "#version" line).
//
// Encoding: the text is split into pre-tokens by GPT-2's regex (PCRE2, UTF + UCP, JIT); each
// pre-token starts as one symbol per byte and adjacent symbols are merged, lowest rank first,
// until no adjacent pair has a merge. Internally every token is kept as the raw bytes it stands
// for (vocab.json spells bytes through GPT-2's byte-to-unicode table), so encoding never builds
// unicode strings and decoding is a concatenation of byte strings.
//
// Choices that differ from nothing but are worth knowing:
//  - Special tokens in the text are NOT special: "<|endoftext|>" inside a string is encoded as
//    ordinary text ("<|", "endoftext", "|>" with the real GPT-2 merges), as Hugging Face's GPT-2
//    tokenizer does by default. Callers append eos_id() themselves; text cannot inject it.
//  - Any byte string is accepted, valid UTF-8 or not. The regex runs with
//    PCRE2_MATCH_INVALID_UTF, which never matches across invalid bytes; each run of bytes the
//    regex leaves between matches becomes a pre-token of its own. Every byte has a token, so
//    decode(encode(s)) == s holds for ANY std::string, NUL bytes included.
#include <array>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "text/tokenizer.h"

namespace engram::text {

// GPT-2's byte-to-unicode table as UTF-8 strings: bytes 33-126, 161-172 and 174-255 stand for
// the code point of the same value; the other 68 bytes, in increasing order, for 256, 257, ...
const std::array<std::string, 256>& gpt2_byte_to_unicode();

// Splits text into GPT-2 pre-tokens (their concatenation is the text). Exposed for tests.
std::vector<std::string> gpt2_pretokenize(const std::string& text);

class Gpt2BpeTokenizer : public Tokenizer {
 public:
  // Pre-tokens repeat (" the", " of", ...), so their BPE result is cached: up to `cache_entries`
  // distinct pre-tokens (0 disables the cache; a full shard is cleared and refilled).
  static constexpr std::size_t kDefaultCacheEntries = 1 << 18;

  // Throws core::UserError for a missing or malformed file (naming it, and the line in merges.txt).
  Gpt2BpeTokenizer(const std::string& vocab_json, const std::string& merges_txt,
                   std::size_t cache_entries = kDefaultCacheEntries);
  ~Gpt2BpeTokenizer() override;

  // Thread-safe: the word cache is sharded under mutexes; everything else is read-only.
  std::vector<int32_t> encode(const std::string& text) const override;
  // Ids outside [0, vocab_size()) or unused by vocab.json -> core::UserError.
  std::string decode(const std::vector<int32_t>& ids) const override;
  int32_t vocab_size() const override;  // largest id + 1
  // <|endoftext|> serves as all three; -1 when vocab.json has no such token.
  int32_t bos_id() const override;
  int32_t eos_id() const override;
  int32_t pad_id() const override;
  std::string name() const override;  // "gpt2-bpe:<folder of vocab.json>"

  // The vocab.json spelling of an id (e.g. "Ġthe"); for tests and debugging.
  std::string token_string(int32_t id) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace engram::text
