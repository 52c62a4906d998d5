#include "text/gpt2_bpe.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <optional>
#include <queue>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace engram::text {
namespace {

// ---------------------------------------------------------------------------------------------
// Byte <-> unicode alphabet

// Code points used by the table: 0..255 for the printable bytes, 256..323 for the other 68.
constexpr uint32_t kAlphabetEnd = 256 + 68;

std::string utf8_encode(uint32_t cp) {
  std::string out;
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return out;
}

// Decodes the code point at s[i], advancing i; nullopt for malformed (or overlong) UTF-8.
std::optional<uint32_t> utf8_next(std::string_view s, std::size_t& i) {
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char lead = byte(i);
  std::size_t len;
  uint32_t cp;
  uint32_t min_cp;
  if (lead < 0x80) {
    ++i;
    return lead;
  } else if ((lead & 0xE0) == 0xC0) {
    len = 2, cp = lead & 0x1F, min_cp = 0x80;
  } else if ((lead & 0xF0) == 0xE0) {
    len = 3, cp = lead & 0x0F, min_cp = 0x800;
  } else if ((lead & 0xF8) == 0xF0) {
    len = 4, cp = lead & 0x07, min_cp = 0x10000;
  } else {
    return std::nullopt;
  }
  if (i + len > s.size()) return std::nullopt;
  for (std::size_t k = 1; k < len; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return std::nullopt;
    cp = (cp << 6) | (byte(i + k) & 0x3F);
  }
  if (cp < min_cp || cp > 0x10FFFF) return std::nullopt;
  i += len;
  return cp;
}

struct ByteAlphabet {
  std::array<uint32_t, 256> code_point{};
  std::array<std::string, 256> spelling;        // code_point as UTF-8
  std::array<int16_t, kAlphabetEnd> byte_of{};  // inverse; -1 for code points not in the table

  ByteAlphabet() {
    byte_of.fill(-1);
    uint32_t next_extra = 256;
    for (uint32_t b = 0; b < 256; ++b) {
      // GPT-2 keeps printable Latin-1 bytes as themselves and moves the rest (controls, space,
      // DEL, NBSP, soft hyphen) to fresh code points, so that every token is visible text.
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
      code_point[b] = printable ? b : next_extra++;
      spelling[b] = utf8_encode(code_point[b]);
      byte_of[code_point[b]] = static_cast<int16_t>(b);
    }
  }
};

const ByteAlphabet& alphabet() {
  static const ByteAlphabet table;
  return table;
}

// The bytes a vocab.json / merges.txt spelling stands for; nullopt (and `why`) if it is not
// spelled in GPT-2's byte alphabet.
std::optional<std::string> spelling_to_bytes(std::string_view spelling, std::string& why) {
  std::string bytes;
  bytes.reserve(spelling.size());
  for (std::size_t i = 0; i < spelling.size();) {
    const std::optional<uint32_t> cp = utf8_next(spelling, i);
    if (!cp) {
      why = "it is not valid UTF-8";
      return std::nullopt;
    }
    if (*cp >= kAlphabetEnd || alphabet().byte_of[*cp] < 0) {
      why = fmt::format("it contains U+{:04X}, which is not in GPT-2's byte-to-unicode alphabet",
                        *cp);
      return std::nullopt;
    }
    bytes += static_cast<char>(alphabet().byte_of[*cp]);
  }
  return bytes;
}

std::string bytes_to_spelling(std::string_view bytes) {
  std::string out;
  for (unsigned char b : bytes) out += alphabet().spelling[b];
  return out;
}

// ---------------------------------------------------------------------------------------------
// Pre-tokenizer

// GPT-2's pattern. \s+(?!\S) leaves the last space of a run to the next word, so "a  b" splits as
// "a", " ", " b" and a word keeps its leading space.
constexpr const char* kPattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// The compiled pattern, shared by all threads (PCRE2 code is read-only while matching; each call
// has its own match data).
class Gpt2Regex {
 public:
  Gpt2Regex() {
    int error = 0;
    PCRE2_SIZE error_offset = 0;
    // UCP: \s, \p{L}, \p{N} follow Unicode. MATCH_INVALID_UTF: invalid bytes never match and
    // never make pcre2_match fail, and the whole-subject UTF check per call is skipped (which
    // would otherwise make matching quadratic).
    code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(kPattern), PCRE2_ZERO_TERMINATED,
                          PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &error, &error_offset,
                          nullptr);
    ENGRAM_CHECK(code_ != nullptr, "GPT-2 pattern does not compile: {}", message(error));
    // Without JIT (e.g. a platform PCRE2 lacks it for) pcre2_match interprets: slower, same result.
    pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE);
  }
  ~Gpt2Regex() { pcre2_code_free(code_); }
  Gpt2Regex(const Gpt2Regex&) = delete;
  Gpt2Regex& operator=(const Gpt2Regex&) = delete;

  // Calls emit(piece) for consecutive pieces covering all of `text`.
  template <typename Emit>
  void split(std::string_view text, Emit&& emit) const {
    std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> match(
        pcre2_match_data_create_from_pattern(code_, nullptr), &pcre2_match_data_free);
    ENGRAM_CHECK(match != nullptr, "out of memory for PCRE2 match data");
    const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    std::size_t done = 0;  // text[0, done) has been emitted
    while (done < text.size()) {
      const int rc = pcre2_match(code_, subject, text.size(), done, 0, match.get(), nullptr);
      if (rc == PCRE2_ERROR_NOMATCH) break;
      if (rc < 0) core::fail("GPT-2 pre-tokenizer: PCRE2 matching failed: {}", message(rc));
      const PCRE2_SIZE* span = pcre2_get_ovector_pointer(match.get());
      ENGRAM_CHECK(span[1] > span[0], "empty pre-token at byte {}", span[0]);
      // Bytes skipped by the regex are invalid UTF-8 (every valid character matches some
      // alternative); keep them as a pre-token of their own so no byte is lost.
      if (span[0] > done) emit(text.substr(done, span[0] - done));
      emit(text.substr(span[0], span[1] - span[0]));
      done = span[1];
    }
    if (done < text.size()) emit(text.substr(done));
  }

 private:
  static std::string message(int code) {
    PCRE2_UCHAR buffer[256];
    pcre2_get_error_message(code, buffer, sizeof(buffer));
    return reinterpret_cast<const char*>(buffer);
  }
  pcre2_code* code_ = nullptr;
};

const Gpt2Regex& gpt2_regex() {
  static const Gpt2Regex regex;
  return regex;
}

// ---------------------------------------------------------------------------------------------
// Files

constexpr const char* kVocabExpected = "a JSON object mapping GPT-2 token strings to integer ids";

std::ifstream open_or_fail(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) core::fail("cannot open {} '{}': {}", what, path, std::strerror(errno));
  return in;
}

uint64_t pair_key(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) |
         static_cast<uint32_t>(right);
}

}  // namespace

const std::array<std::string, 256>& gpt2_byte_to_unicode() { return alphabet().spelling; }

std::vector<std::string> gpt2_pretokenize(const std::string& text) {
  std::vector<std::string> pieces;
  gpt2_regex().split(text, [&](std::string_view piece) { pieces.emplace_back(piece); });
  return pieces;
}

// ---------------------------------------------------------------------------------------------
// Tokenizer

struct Gpt2BpeTokenizer::Impl {
  struct Merge {
    int32_t rank;
    int32_t result;
  };
  // A shard of the word cache; sharding keeps threads that encode at once from queueing on one
  // mutex.
  struct CacheShard {
    std::mutex mutex;
    std::unordered_map<std::string, std::vector<int32_t>> words;
  };
  static constexpr std::size_t kShards = 16;

  std::string folder;
  std::vector<std::string> bytes_of;  // id -> the bytes it stands for
  std::vector<bool> used;             // id -> present in vocab.json
  std::array<int32_t, 256> byte_id{};
  std::unordered_map<uint64_t, Merge> merges;  // pair_key(left, right) -> rank and result
  int32_t end_of_text = -1;
  std::size_t shard_capacity = 0;  // 0: no cache
  mutable std::array<CacheShard, kShards> cache;

  void load_vocab(const std::string& path, std::unordered_map<std::string, int32_t>& id_of);
  void load_merges(const std::string& path, const std::unordered_map<std::string, int32_t>& id_of);
  std::vector<int32_t> merge_word(std::string_view word) const;
  void encode_word(std::string_view word, std::vector<int32_t>& out) const;
};

void Gpt2BpeTokenizer::Impl::load_vocab(const std::string& path,
                                        std::unordered_map<std::string, int32_t>& id_of) {
  std::ifstream in = open_or_fail(path, "GPT-2 vocabulary");
  nlohmann::json vocab;
  try {
    vocab = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    core::fail("{}: malformed JSON ({}); expected {}", path, e.what(), kVocabExpected);
  }
  if (!vocab.is_object()) core::fail("{}: expected {}, got a JSON {}", path, kVocabExpected,
                                     vocab.type_name());

  // Ids number the tokens from 0; a few gaps are tolerated, but an id far past the count would
  // only make the id tables huge (a lying file must not exhaust memory).
  const int64_t max_id = static_cast<int64_t>(vocab.size()) + 65535;
  std::unordered_map<int32_t, std::string> spelling_of;  // to name both tokens of a duplicate id
  for (const auto& [spelling, value] : vocab.items()) {
    if (!value.is_number_integer() || value.get<int64_t>() < 0 || value.get<int64_t>() > max_id)
      core::fail("{}: token '{}' has id {}; expected an integer in [0, {}]", path, spelling,
                 value.dump(), max_id);
    const auto id = static_cast<int32_t>(value.get<int64_t>());
    if (auto [it, fresh] = spelling_of.emplace(id, spelling); !fresh)
      core::fail("{}: id {} is given to both '{}' and '{}'; ids must be unique", path, id,
                 it->second, spelling);
    std::string why;
    const std::optional<std::string> bytes = spelling_to_bytes(spelling, why);
    if (!bytes) core::fail("{}: token '{}' cannot be read: {}", path, spelling, why);
    if (static_cast<std::size_t>(id) >= bytes_of.size()) {
      bytes_of.resize(id + 1);
      used.resize(id + 1, false);
    }
    bytes_of[id] = *bytes;
    used[id] = true;
    id_of.emplace(*bytes, id);
    if (spelling == "<|endoftext|>") end_of_text = id;
  }
  // Every byte needs a token, or some text could not be encoded at all.
  for (int b = 0; b < 256; ++b) {
    const auto it = id_of.find(std::string(1, static_cast<char>(b)));
    if (it == id_of.end())
      core::fail("{}: no token for byte 0x{:02X} (spelled '{}'); a GPT-2 vocabulary holds all 256 "
                 "single-byte tokens",
                 path, b, alphabet().spelling[b]);
    byte_id[b] = it->second;
  }
}

void Gpt2BpeTokenizer::Impl::load_merges(const std::string& path,
                                         const std::unordered_map<std::string, int32_t>& id_of) {
  std::ifstream in = open_or_fail(path, "GPT-2 merges file");
  std::string line;
  int32_t rank = 0;
  for (int line_no = 1; std::getline(in, line); ++line_no) {
    if (!line.empty() && line.back() == '\r') line.pop_back();  // tolerate CRLF files
    if (line.empty() || (line_no == 1 && line.rfind("#version", 0) == 0)) continue;
    const std::size_t space = line.find(' ');
    if (space == 0 || space == std::string::npos || space + 1 == line.size() ||
        line.find(' ', space + 1) != std::string::npos)
      core::fail("{}:{}: expected two tokens separated by one space (e.g. 'Ġ t'), got '{}'", path,
                 line_no, line);
    int32_t ids[2];
    std::string joined;
    for (int side = 0; side < 2; ++side) {
      const std::string_view part = side == 0 ? std::string_view(line).substr(0, space)
                                              : std::string_view(line).substr(space + 1);
      std::string why;
      const std::optional<std::string> bytes = spelling_to_bytes(part, why);
      if (!bytes) core::fail("{}:{}: token '{}' cannot be read: {}", path, line_no, part, why);
      const auto it = id_of.find(*bytes);
      if (it == id_of.end())
        core::fail("{}:{}: token '{}' is not in vocab.json", path, line_no, part);
      ids[side] = it->second;
      joined += *bytes;
    }
    const auto result = id_of.find(joined);
    if (result == id_of.end())
      core::fail("{}:{}: the merge result '{}' is not in vocab.json", path, line_no,
                 bytes_to_spelling(joined));
    // A repeated pair keeps its first (best) rank, as a lookup by rank would.
    merges.emplace(pair_key(ids[0], ids[1]), Merge{rank++, result->second});
  }
  if (in.bad()) core::fail("error reading GPT-2 merges file '{}'", path);
}

// BPE of one pre-token: symbols in a linked list, candidate merges in a min-heap ordered by
// (rank, position). Stale candidates (a side already merged away or grown) are skipped when
// popped, so each merge costs O(log n) instead of a rescan of the word. Lowest rank first, leftmost
// first among equals, as Hugging Face's tokenizers do.
std::vector<int32_t> Gpt2BpeTokenizer::Impl::merge_word(std::string_view word) const {
  struct Symbol {
    int32_t id;  // -1 once merged into its left neighbour
    int32_t prev;
    int32_t next;
  };
  struct Candidate {
    int32_t rank;
    int32_t left;  // position of the left symbol
    int32_t left_id;
    int32_t right_id;
    int32_t result;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : left > o.left;
    }
  };
  const auto n = static_cast<int32_t>(word.size());
  std::vector<Symbol> symbols(n);
  for (int32_t i = 0; i < n; ++i)
    symbols[i] = {byte_id[static_cast<unsigned char>(word[i])], i - 1, i + 1 < n ? i + 1 : -1};

  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> heap;
  const auto consider = [&](int32_t left) {
    const Symbol& l = symbols[left];
    if (l.next < 0) return;
    const auto it = merges.find(pair_key(l.id, symbols[l.next].id));
    if (it != merges.end()) heap.push({it->second.rank, left, l.id, symbols[l.next].id, it->second.result});
  };
  for (int32_t i = 0; i + 1 < n; ++i) consider(i);

  while (!heap.empty()) {
    const Candidate c = heap.top();
    heap.pop();
    Symbol& l = symbols[c.left];
    // A symbol's id only ever grows into longer tokens, so matching ids means the pair is intact.
    if (l.id != c.left_id || l.next < 0 || symbols[l.next].id != c.right_id) continue;
    Symbol& r = symbols[l.next];
    l.id = c.result;
    l.next = r.next;
    if (r.next >= 0) symbols[r.next].prev = c.left;
    r.id = -1;
    if (l.prev >= 0) consider(l.prev);
    consider(c.left);
  }
  std::vector<int32_t> ids;
  for (int32_t i = 0; i >= 0 && i < n; i = symbols[i].next) ids.push_back(symbols[i].id);
  return ids;
}

void Gpt2BpeTokenizer::Impl::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  if (word.size() == 1) {  // nothing to merge, nothing worth caching
    out.push_back(byte_id[static_cast<unsigned char>(word[0])]);
    return;
  }
  if (shard_capacity == 0) {
    const std::vector<int32_t> ids = merge_word(word);
    out.insert(out.end(), ids.begin(), ids.end());
    return;
  }
  std::string key(word);
  CacheShard& shard = cache[std::hash<std::string>{}(key) % kShards];
  {
    std::lock_guard<std::mutex> lock(shard.mutex);
    const auto it = shard.words.find(key);
    if (it != shard.words.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> ids = merge_word(word);  // outside the lock: other threads keep going
  out.insert(out.end(), ids.begin(), ids.end());
  std::lock_guard<std::mutex> lock(shard.mutex);
  // Bounded memory on endless streams of new words (numbers, URLs): start the shard afresh.
  if (shard.words.size() >= shard_capacity) shard.words.clear();
  shard.words.emplace(std::move(key), std::move(ids));
}

Gpt2BpeTokenizer::Gpt2BpeTokenizer(const std::string& vocab_json, const std::string& merges_txt,
                                   std::size_t cache_entries)
    : impl_(std::make_unique<Impl>()) {
  impl_->folder = std::filesystem::path(vocab_json).parent_path().string();
  if (impl_->folder.empty()) impl_->folder = ".";
  impl_->shard_capacity = (cache_entries + Impl::kShards - 1) / Impl::kShards;
  std::unordered_map<std::string, int32_t> id_of;  // token bytes -> id, needed only to load
  impl_->load_vocab(vocab_json, id_of);
  impl_->load_merges(merges_txt, id_of);
}

Gpt2BpeTokenizer::~Gpt2BpeTokenizer() = default;

std::vector<int32_t> Gpt2BpeTokenizer::encode(const std::string& text) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3);  // English runs at about 4 bytes per token
  gpt2_regex().split(text, [&](std::string_view word) { impl_->encode_word(word, ids); });
  return ids;
}

std::string Gpt2BpeTokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string text;
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab_size() || !impl_->used[id])
      core::fail("gpt2-bpe decode: id {} is not in the vocabulary of {} (size {})", id,
                 impl_->folder, vocab_size());
    text += impl_->bytes_of[id];
  }
  return text;
}

std::string Gpt2BpeTokenizer::token_string(int32_t id) const {
  if (id < 0 || id >= vocab_size() || !impl_->used[id])
    core::fail("gpt2-bpe: id {} is not in the vocabulary (size {})", id, vocab_size());
  return bytes_to_spelling(impl_->bytes_of[id]);
}

int32_t Gpt2BpeTokenizer::vocab_size() const {
  return static_cast<int32_t>(impl_->bytes_of.size());
}
int32_t Gpt2BpeTokenizer::bos_id() const { return impl_->end_of_text; }
int32_t Gpt2BpeTokenizer::eos_id() const { return impl_->end_of_text; }
int32_t Gpt2BpeTokenizer::pad_id() const { return impl_->end_of_text; }
std::string Gpt2BpeTokenizer::name() const { return "gpt2-bpe:" + impl_->folder; }

}  // namespace engram::text
