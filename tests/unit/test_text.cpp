// Tokenizers: GPT-2 byte-level BPE on the hand-made fixture tests/fixtures/gpt2_tiny, and
// SentencePiece trained here on tests/fixtures/text/corpus.txt.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "text/gpt2_bpe.h"
#include "text/sentencepiece_tokenizer.h"
#include "text/tokenizer.h"

using namespace engram::text;
using engram::core::UserError;
namespace fs = std::filesystem;
using Ids = std::vector<int32_t>;
using Strings = std::vector<std::string>;

namespace {

const std::string kFixtures = ENGRAM_FIXTURES;
const std::string kGpt2Tiny = kFixtures + "/gpt2_tiny";
const std::string kCorpus = kFixtures + "/text/corpus.txt";

// A fresh folder per call, removed by the destructor.
class TempDir {
 public:
  TempDir() {
    static int counter = 0;
    path_ = fs::temp_directory_path() /
            ("engram_test_text_" + std::to_string(getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  std::string path() const { return path_.string(); }
  // Writes `content` to `name` and returns its path.
  std::string write(const std::string& name, const std::string& content) const {
    std::ofstream(file(name), std::ios::binary) << content;
    return file(name);
  }

 private:
  fs::path path_;
};

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

Strings read_lines(const std::string& path) {
  std::ifstream in(path);
  Strings lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// Runs `load` and returns the UserError message ("" when nothing was thrown).
template <typename F>
std::string user_error(F&& load) {
  try {
    load();
  } catch (const UserError& e) {
    return e.what();
  }
  return "";
}

#define EXPECT_CONTAINS(haystack, needle) \
  EXPECT_NE(std::string(haystack).find(needle), std::string::npos) << "in: " << (haystack)

const Gpt2BpeTokenizer& tiny() {
  static const Gpt2BpeTokenizer tokenizer(kGpt2Tiny + "/vocab.json", kGpt2Tiny + "/merges.txt");
  return tokenizer;
}

// Fixture ids (see tests/fixtures/gpt2_tiny): single bytes 0..255 in GPT-2's order, so a
// printable ASCII byte b has id b - 33 and the space byte 'Ġ' has id 220, newline 'Ċ' 198;
// merge results follow in merges.txt order from 256; <|endoftext|> is 290.
int32_t ascii(char c) { return c - 33; }
constexpr int32_t kSpace = 220, kNewline = 198;
constexpr int32_t kHe = 257, kThe = 258, kWorld = 270, kHello = 272, kApostropheT = 281,
                  kDon = 282, kSpace1 = 283, kNewline2 = 287, kLtBar = 288, kBarGt = 289,
                  kEndOfText = 290;

// Strings that stress decode(encode(s)) == s.
Strings tricky_strings() {
  Strings s = {
      "",
      "hello world",
      "The quick brown fox jumps over the lazy dog. It's 12:45, isn't it?",
      "   leading and trailing   ",
      "a  b\t\tc\n\n\nd\r\n",
      "👩‍👩‍👧‍👦 family, 🏳️‍🌈 flag, 👍🏽 thumbs",  // ZWJ sequences, variation selector, skin tone
      "日本語のテキストと中文字符，한국어도",
      "e\u0301 a\u0300\u0323 Z\u0351\u0354\u0356",  // combining marks
      "tab\there\rcr \x01\x02\x1f del\x7f",
      std::string("nul\0inside\0\0", 13),
      "\xff\xfe invalid \xc3\x28 \xe2\x82 truncated \xf0\x9f\x98",  // invalid UTF-8
      "\xed\xa0\x80 surrogate, \xc0\xaf overlong",
      "<|endoftext|> is plain text here",
      "don't won't I'd we're they've you'll she's",
      "12345 3.14159 -42 1e10 0x1F ١٢٣",
      std::string(3000, 'a'),
      std::string(3000, ' ') + "x",
  };
  // Seeded random byte strings (mostly invalid UTF-8) and random mixes of the above.
  std::mt19937 rng(20240607);
  for (int i = 0; i < 200; ++i) {
    std::string bytes(rng() % 1500, '\0');
    for (char& c : bytes) c = static_cast<char>(rng() & 0xFF);
    s.push_back(bytes);
  }
  const std::size_t base = s.size();
  for (int i = 0; i < 100; ++i) {
    std::string mix;
    for (int k = 0; k < 5; ++k) mix += s[rng() % base].substr(0, 50);
    s.push_back(mix);
  }
  return s;
}

}  // namespace

// ------------------------------------------------------------------------------------------------
// GPT-2 byte-level BPE

TEST(Gpt2ByteTable, MatchesGpt2) {
  const auto& table = gpt2_byte_to_unicode();
  EXPECT_EQ(table['!'], "!");
  EXPECT_EQ(table['~'], "~");
  EXPECT_EQ(table[0xA1], "\u00A1");
  EXPECT_EQ(table[0xAE], "\u00AE");
  EXPECT_EQ(table[0xFF], "\u00FF");
  // The 68 others in increasing byte order from U+0100: 0x00..0x20, then 0x7F..0xA0, then 0xAD.
  EXPECT_EQ(table[0x00], "\u0100");
  EXPECT_EQ(table[' '], "\u0120");   // 'Ġ'
  EXPECT_EQ(table['\n'], "\u010A");  // 'Ċ'
  EXPECT_EQ(table[0x7F], "\u0121");
  EXPECT_EQ(table[0xA0], "\u0142");
  EXPECT_EQ(table[0xAD], "\u0143");
}

TEST(Gpt2Pretokenize, Contractions) {
  EXPECT_EQ(gpt2_pretokenize("don't"), (Strings{"don", "'t"}));
  EXPECT_EQ(gpt2_pretokenize("I'm sure you'll see we're done, they've said, he'd go, it's"),
            (Strings{"I", "'m", " sure", " you", "'ll", " see", " we", "'re", " done", ",",
                     " they", "'ve", " said", ",", " he", "'d", " go", ",", " it", "'s"}));
}

TEST(Gpt2Pretokenize, NumbersAndPunctuation) {
  EXPECT_EQ(gpt2_pretokenize("abc 12345 x2 3.5"),
            (Strings{"abc", " 12345", " x", "2", " 3", ".", "5"}));
  EXPECT_EQ(gpt2_pretokenize("hello!!! (ok)?"), (Strings{"hello", "!!!", " (", "ok", ")?"}));
}

TEST(Gpt2Pretokenize, WhitespaceLookahead) {
  // The last space of a run goes with the next word.
  EXPECT_EQ(gpt2_pretokenize("a  b"), (Strings{"a", " ", " b"}));
  EXPECT_EQ(gpt2_pretokenize("a    b"), (Strings{"a", "   ", " b"}));
  EXPECT_EQ(gpt2_pretokenize("a   "), (Strings{"a", "   "}));
  EXPECT_EQ(gpt2_pretokenize("a\n\nb"), (Strings{"a", "\n", "\n", "b"}));
}

TEST(Gpt2Pretokenize, UnicodeClasses) {
  EXPECT_EQ(gpt2_pretokenize("héllo wörld"), (Strings{"héllo", " wörld"}));
  EXPECT_EQ(gpt2_pretokenize("日本語 テスト"), (Strings{"日本語", " テスト"}));
  EXPECT_EQ(gpt2_pretokenize("x ١٢٣"), (Strings{"x", " ١٢٣"}));  // Arabic-Indic digits are \p{N}
}

TEST(Gpt2Pretokenize, InvalidUtf8BytesArePreTokensOfTheirOwn) {
  EXPECT_EQ(gpt2_pretokenize("ab\xff" "cd"), (Strings{"ab", "\xff", "cd"}));
  EXPECT_EQ(gpt2_pretokenize("\xc3\x28x"), (Strings{"\xc3", "(", "x"}));
}

TEST(Gpt2Pretokenize, PiecesCoverTheText) {
  for (const std::string& s : tricky_strings()) {
    std::string joined;
    for (const std::string& piece : gpt2_pretokenize(s)) {
      EXPECT_FALSE(piece.empty());
      joined += piece;
    }
    ASSERT_EQ(joined, s);
  }
}

TEST(Gpt2Bpe, LoadsFixture) {
  EXPECT_EQ(tiny().vocab_size(), 291);
  EXPECT_EQ(tiny().bos_id(), kEndOfText);
  EXPECT_EQ(tiny().eos_id(), kEndOfText);
  EXPECT_EQ(tiny().pad_id(), kEndOfText);
  EXPECT_EQ(tiny().token_string(kThe), "\u0120the");
  EXPECT_EQ(tiny().token_string(kEndOfText), "<|endoftext|>");
  EXPECT_EQ(tiny().name(), "gpt2-bpe:" + kGpt2Tiny);
}

TEST(Gpt2Bpe, ExactIdsFromTheMerges) {
  // "hello": h+e (rank 1) -> he; l+l (rank 9) -> ll; he+ll (15) -> hell; hell+o (16) -> hello.
  // " world": Ġ+w (7), o+r (11), l+d (12), then Ġw+or (13) -> Ġwor, Ġwor+ld (14) -> Ġworld.
  EXPECT_EQ(tiny().encode("hello world"), (Ids{kHello, kWorld}));
  // Ġ+t (0) -> Ġt and h+e (1) -> he, then Ġt+he (2) -> Ġthe.
  EXPECT_EQ(tiny().encode(" the"), (Ids{kThe}));
  // Without the space only h+e applies: there is no merge t+he.
  EXPECT_EQ(tiny().encode("the"), (Ids{ascii('t'), kHe}));
  // Pre-tokens "don" (o+n -> on, d+on -> don) and "'t" ('+t -> 't).
  EXPECT_EQ(tiny().encode("don't"), (Ids{kDon, kApostropheT}));
  // " 123": Ġ+1 (rank 27) beats 1+2 (rank 28) and then blocks it.
  EXPECT_EQ(tiny().encode(" 123"), (Ids{kSpace1, ascii('2'), ascii('3')}));
  EXPECT_EQ(tiny().encode("123"), (Ids{284, ascii('3')}));  // here 1+2 -> "12" (id 284) applies
  // "a", " ", " b": the lone spaces stay bytes (Ġ+Ġ never sees both in one pre-token).
  EXPECT_EQ(tiny().encode("a  b"), (Ids{ascii('a'), kSpace, kSpace, ascii('b')}));
  EXPECT_EQ(tiny().encode("\n\n"), (Ids{kNewline2}));
  EXPECT_EQ(tiny().encode("a\n\nb"), (Ids{ascii('a'), kNewline, kNewline, ascii('b')}));
  EXPECT_EQ(tiny().encode(""), Ids{});
}

// GPT-2's original algorithm (encoder.py), spelled out on token strings: merge every occurrence
// of the best-ranked pair, left to right, until none is left. The tokenizer must agree with it.
Ids reference_encode(const std::string& text) {
  std::map<std::pair<std::string, std::string>, int> ranks;
  int rank = 0;
  for (const std::string& line : read_lines(kGpt2Tiny + "/merges.txt")) {
    if (line.rfind("#version", 0) == 0) continue;
    const std::size_t space = line.find(' ');
    ranks[{line.substr(0, space), line.substr(space + 1)}] = rank++;
  }
  const nlohmann::json vocab = nlohmann::json::parse(read_file(kGpt2Tiny + "/vocab.json"));
  Ids ids;
  for (const std::string& word : gpt2_pretokenize(text)) {
    Strings symbols;
    for (unsigned char b : word) symbols.push_back(gpt2_byte_to_unicode()[b]);
    while (symbols.size() > 1) {
      int best = INT32_MAX;
      std::pair<std::string, std::string> pair;
      for (std::size_t i = 0; i + 1 < symbols.size(); ++i) {
        const auto it = ranks.find({symbols[i], symbols[i + 1]});
        if (it != ranks.end() && it->second < best) best = it->second, pair = it->first;
      }
      if (best == INT32_MAX) break;
      Strings merged;
      for (std::size_t i = 0; i < symbols.size(); ++i) {
        if (i + 1 < symbols.size() && symbols[i] == pair.first && symbols[i + 1] == pair.second) {
          merged.push_back(pair.first + pair.second);
          ++i;
        } else {
          merged.push_back(symbols[i]);
        }
      }
      symbols = merged;
    }
    for (const std::string& symbol : symbols) ids.push_back(vocab.at(symbol).get<int32_t>());
  }
  return ids;
}

TEST(Gpt2Bpe, AgreesWithReferenceAlgorithm) {
  // Random texts over pieces the fixture's merges act on, so many merges interact.
  const Strings pieces = {"the", " the", "he", "ll", "hello", " world", "in", "ing", " and", "an",
                          "d", "don", "'t", " 1", "12", "  ", "\n\n", "es", "<|", "|>", "or", "o",
                          "r", "e", "s", " ", "t", "h", "l", "w", "a", "1", "2"};
  std::mt19937 rng(99);
  for (int i = 0; i < 500; ++i) {
    std::string text;
    for (int k = rng() % 30; k > 0; --k) text += pieces[rng() % pieces.size()];
    ASSERT_EQ(tiny().encode(text), reference_encode(text)) << text;
  }
}

TEST(Gpt2Bpe, SpecialTokenTextIsPlainText) {
  const Ids ids = tiny().encode("<|endoftext|>");
  Ids expected = {kLtBar};
  for (char c : std::string("endoftext")) expected.push_back(ascii(c));  // no merge applies
  expected.push_back(kBarGt);
  EXPECT_EQ(ids, expected);
  EXPECT_EQ(tiny().decode({kEndOfText}), "<|endoftext|>");
}

TEST(Gpt2Bpe, RoundTripsAnyBytes) {
  for (const std::string& s : tricky_strings()) ASSERT_EQ(tiny().decode(tiny().encode(s)), s);
}

TEST(Gpt2Bpe, HugeWordsAndRuns) {
  // One pre-token of 1 MB (merged pairwise by l+l), and long runs the regex must not choke on.
  const std::string ls(1 << 20, 'l');
  EXPECT_EQ(tiny().encode(ls), Ids(1 << 19, 265));  // 265 = "ll"
  std::string accents;
  for (int i = 0; i < (1 << 19); ++i) accents += "é";
  for (const std::string& s : {std::string(1 << 20, ' ') + "x", std::string(1 << 20, '!'), accents})
    ASSERT_EQ(tiny().decode(tiny().encode(s)), s);
}

TEST(Gpt2Bpe, CacheDoesNotChangeResults) {
  const Gpt2BpeTokenizer uncached(kGpt2Tiny + "/vocab.json", kGpt2Tiny + "/merges.txt", 0);
  const Gpt2BpeTokenizer small(kGpt2Tiny + "/vocab.json", kGpt2Tiny + "/merges.txt", 4);
  for (const std::string& s : tricky_strings()) {
    const Ids expected = uncached.encode(s);
    ASSERT_EQ(tiny().encode(s), expected);
    ASSERT_EQ(small.encode(s), expected);  // evicts all the time
  }
}

TEST(Gpt2Bpe, ThreadsShareOneTokenizer) {
  const Strings strings = tricky_strings();
  std::vector<Ids> expected;
  for (const std::string& s : strings) expected.push_back(tiny().encode(s));
  const Gpt2BpeTokenizer shared(kGpt2Tiny + "/vocab.json", kGpt2Tiny + "/merges.txt", 64);
  std::vector<int> mismatches(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int round = 0; round < 3; ++round)
        for (std::size_t i = t; i < strings.size(); i += 1 + t % 2)
          mismatches[t] += shared.encode(strings[i]) != expected[i];
    });
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(mismatches, std::vector<int>(4, 0));
}

TEST(Gpt2Bpe, DecodeRejectsUnknownIds) {
  EXPECT_CONTAINS(user_error([] { tiny().decode({5, 291}); }), "id 291 is not in the vocabulary");
  EXPECT_CONTAINS(user_error([] { tiny().decode({-1}); }), "id -1");
}

// ---- load errors

class Gpt2LoadErrors : public ::testing::Test {
 protected:
  // Writes a GPT-2 folder: the fixture, with vocab.json / merges.txt replaced where given.
  std::string folder(const std::string* vocab, const std::string* merges) {
    dir_.write("vocab.json", vocab ? *vocab : read_file(kGpt2Tiny + "/vocab.json"));
    dir_.write("merges.txt", merges ? *merges : read_file(kGpt2Tiny + "/merges.txt"));
    return dir_.path();
  }
  std::string load_error(const std::string& vocab) { return error(&vocab, nullptr); }
  std::string merges_error(const std::string& merges) { return error(nullptr, &merges); }
  std::string error(const std::string* vocab, const std::string* merges) {
    const std::string path = folder(vocab, merges);
    return user_error([&] { load_tokenizer(path); });
  }
  nlohmann::json fixture_vocab() { return nlohmann::json::parse(read_file(kGpt2Tiny + "/vocab.json")); }
  TempDir dir_;
};

TEST_F(Gpt2LoadErrors, FixtureLoadsThroughEveryAcceptedPath) {
  EXPECT_EQ(load_tokenizer(kGpt2Tiny)->encode("hello world"), (Ids{kHello, kWorld}));
  EXPECT_EQ(load_tokenizer(kGpt2Tiny + "/vocab.json")->name(), "gpt2-bpe:" + kGpt2Tiny);
  EXPECT_EQ(folder(nullptr, nullptr), dir_.path());  // the copy loads too
  EXPECT_EQ(load_tokenizer(dir_.path())->vocab_size(), 291);
}

TEST_F(Gpt2LoadErrors, MissingFiles) {
  const std::string missing = user_error([] { load_tokenizer("/nonexistent/tok"); });
  EXPECT_CONTAINS(missing, "'/nonexistent/tok' does not exist");
  EXPECT_CONTAINS(missing, "vocab.json and merges.txt");
  EXPECT_CONTAINS(missing, ".model");

  dir_.write("vocab.json", read_file(kGpt2Tiny + "/vocab.json"));
  EXPECT_CONTAINS(user_error([&] { load_tokenizer(dir_.path()); }),
                  dir_.file("merges.txt") + "' is missing");
  EXPECT_CONTAINS(user_error([&] { load_tokenizer(dir_.file("vocab.json")); }),
                  dir_.file("merges.txt") + "' is missing");
  const std::string other = dir_.write("notes.txt", "x");
  EXPECT_CONTAINS(user_error([&] { load_tokenizer(other); }), "is neither kind");
  // The class itself, given a path that is not there.
  EXPECT_CONTAINS(user_error([&] { Gpt2BpeTokenizer(dir_.file("nope.json"), "m"); }),
                  "cannot open GPT-2 vocabulary '" + dir_.file("nope.json") + "'");
}

TEST_F(Gpt2LoadErrors, BadJson) {
  const std::string message = load_error("{\"a\": 1,");
  EXPECT_CONTAINS(message, dir_.file("vocab.json") + ": malformed JSON");
  EXPECT_CONTAINS(message, "expected a JSON object mapping GPT-2 token strings to integer ids");
  EXPECT_CONTAINS(load_error("[1, 2]"), "got a JSON array");
  EXPECT_CONTAINS(load_error("{\"a\": \"x\"}"), "token 'a' has id \"x\"; expected an integer");
  EXPECT_CONTAINS(load_error("{\"a\": -3}"), "token 'a' has id -3");
}

TEST_F(Gpt2LoadErrors, DuplicateIdsAndMissingBytes) {
  nlohmann::json vocab = fixture_vocab();
  vocab["zz"] = 5;
  EXPECT_CONTAINS(load_error(vocab.dump()), "id 5 is given to both");
  vocab = fixture_vocab();
  vocab.erase("a");
  EXPECT_CONTAINS(load_error(vocab.dump()), "no token for byte 0x61 (spelled 'a')");
  vocab = fixture_vocab();
  vocab["a b"] = 1000;  // a space is not in the byte alphabet (it is spelled 'Ġ')
  EXPECT_CONTAINS(load_error(vocab.dump()), "token 'a b' cannot be read: it contains U+0020");
}

TEST_F(Gpt2LoadErrors, BadMergesLinesNameFileAndLine) {
  const std::string merges_path = dir_.file("merges.txt");
  EXPECT_CONTAINS(merges_error("#version: 0.2\nh e\nh e l\n"),
                  merges_path + ":3: expected two tokens separated by one space");
  EXPECT_CONTAINS(merges_error("h e\nhe\n"), merges_path + ":2: expected two tokens");
  EXPECT_CONTAINS(merges_error("h  e\n"), merges_path + ":1: expected two tokens");
  EXPECT_CONTAINS(merges_error("h e\nq z\n"),
                  merges_path + ":2: the merge result 'qz' is not in vocab.json");
  EXPECT_CONTAINS(merges_error("h e\nhe xy\n"),
                  merges_path + ":2: token 'xy' is not in vocab.json");
  EXPECT_CONTAINS(merges_error("h \xff\n"), merges_path + ":1: token '\xff' cannot be read");
  // A CRLF file and a blank last line are fine.
  EXPECT_EQ(merges_error("#version: 0.2\r\nh e\r\n\r\n"), "");
}

// ------------------------------------------------------------------------------------------------
// SentencePiece

class SentencePieceTest : public ::testing::Test {
 protected:
  static constexpr int kVocab = 400;  // 4 special + 256 byte pieces + characters and pieces

  static SentencePieceTrainOptions options(const TempDir& dir, const std::string& name) {
    SentencePieceTrainOptions o;
    o.input = kCorpus;
    o.model_prefix = dir.file(name);
    o.vocab_size = kVocab;
    o.seed = 7;
    o.input_sentence_size = 150;  // of 400 lines: exercises the seeded sampling
    return o;
  }
  // One model for the suite: training takes a second or two.
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    train_sentencepiece(options(*dir_, "m"), 2);
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  static std::string model_path() { return dir_->file("m.model"); }
  static TempDir* dir_;
};
TempDir* SentencePieceTest::dir_ = nullptr;

TEST_F(SentencePieceTest, LoadsWithRequestedVocabAndSpecialIds) {
  const auto tokenizer = load_tokenizer(model_path());
  const auto* sp = dynamic_cast<const SentencePieceTokenizer*>(tokenizer.get());
  ASSERT_NE(sp, nullptr);
  EXPECT_EQ(sp->vocab_size(), kVocab);
  EXPECT_EQ(sp->pad_id(), 0);
  EXPECT_EQ(sp->unk_id(), 1);
  EXPECT_EQ(sp->bos_id(), 2);
  EXPECT_EQ(sp->eos_id(), 3);
  EXPECT_EQ(sp->name(), "sentencepiece:" + model_path());
  // Trained pieces make the corpus shorter than its bytes.
  std::size_t bytes = 0, tokens = 0;
  for (const std::string& line : read_lines(kCorpus)) {
    bytes += line.size();
    tokens += sp->encode(line).size();
  }
  EXPECT_LT(tokens, bytes * 7 / 10);  // ~0.59 with this small vocabulary; bytes would be 1.0
}

TEST_F(SentencePieceTest, RoundTripsCorpusAndUnseenScripts) {
  const auto sp = load_tokenizer(model_path());
  for (const std::string& line : read_lines(kCorpus)) ASSERT_EQ(sp->decode(sp->encode(line)), line);
  // Characters never seen in training fall back to byte pieces instead of <unk> (id 1).
  for (const char* s :
       {"👩‍👩‍👧‍👦 and 🏳️‍🌈", "日本語のテキスト", "e\u0301 combining", "tab\tand  two spaces",
        " leading space"}) {
    const Ids ids = sp->encode(s);
    EXPECT_EQ(std::count(ids.begin(), ids.end(), 1), 0) << s;
    EXPECT_EQ(sp->decode(ids), s);
  }
}

TEST_F(SentencePieceTest, SameSeedSameModel) {
  TempDir dir;
  train_sentencepiece(options(dir, "again"), 2);
  const SentencePieceTokenizer first(model_path()), second(dir.file("again.model"));
  for (const std::string& line : read_lines(kCorpus)) ASSERT_EQ(first.encode(line), second.encode(line));
  // The .vocab files list every piece with its score (the .model also records the output path).
  EXPECT_TRUE(read_file(dir_->file("m.vocab")) == read_file(dir.file("again.vocab")));
}

TEST_F(SentencePieceTest, TrainsBpeToo) {
  TempDir dir;
  SentencePieceTrainOptions o = options(dir, "bpe");
  o.model_type = "bpe";
  train_sentencepiece(o);
  const SentencePieceTokenizer sp(dir.file("bpe.model"));
  EXPECT_EQ(sp.vocab_size(), kVocab);
  const std::string line = read_lines(kCorpus).at(1);
  EXPECT_EQ(sp.decode(sp.encode(line)), line);
}

TEST_F(SentencePieceTest, TrainingErrors) {
  TempDir dir;
  SentencePieceTrainOptions o = options(dir, "x");
  o.vocab_size = 100000;
  const std::string too_big = user_error([&] { train_sentencepiece(o); });
  EXPECT_CONTAINS(too_big, "SentencePiece training on '" + kCorpus + "' (vocab_size 100000");
  EXPECT_CONTAINS(too_big, "Vocabulary size too high");  // the trainer's own words
  o = options(dir, "x");
  o.input = dir.file("absent.txt");
  EXPECT_CONTAINS(user_error([&] { train_sentencepiece(o); }),
                  "training input '" + o.input + "' does not exist");
  o = options(dir, "x");
  o.model_type = "wordpiece";
  EXPECT_CONTAINS(user_error([&] { train_sentencepiece(o); }), "expected 'unigram' or 'bpe'");
  o = options(dir, "missing_folder/x");
  EXPECT_CONTAINS(user_error([&] { train_sentencepiece(o); }), "does not exist");
}

TEST_F(SentencePieceTest, BadModelFiles) {
  TempDir dir;
  for (const std::string& content : {std::string("this is not a model\n"), std::string()}) {
    const std::string path = dir.write("bad.model", content);
    const std::string message = user_error([&] { load_tokenizer(path); });
    EXPECT_CONTAINS(message, "cannot load SentencePiece model '" + path + "'");
  }
  EXPECT_CONTAINS(user_error([&] { SentencePieceTokenizer(dir.file("none.model")); }),
                  "'" + dir.file("none.model") + "' does not exist");
  const SentencePieceTokenizer sp(model_path());
  EXPECT_CONTAINS(user_error([&] { sp.decode({3, kVocab}); }), "id 400 is not in the vocabulary");
}
