// bench_tokenize: single-thread encode speed of the GPT-2 byte-level BPE and the SentencePiece
// tokenizers, in MB/s of input text. One JSON line per measurement on stdout.
//
//   bench_tokenize [--gpt2 DIR] [--spm MODEL] [--text FILE] [--mb N]
//
//   --gpt2 DIR    folder with vocab.json + merges.txt (default: tests/fixtures/gpt2_tiny)
//   --spm MODEL   SentencePiece .model (default: one trained on tests/fixtures/text/corpus.txt
//                 into /tmp/engram_bench_tokenize/)
//   --text FILE   text to encode, line by line (default: N MB of generated pseudo-English)
//   --mb N        size of the generated text (default 20)
//
// The GPT-2 tokenizer is measured three ways: a fresh tokenizer (cold word cache), the same one
// again (warm cache), and with the cache off (the raw regex + BPE cost).
#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "bench_options.h"
#include "core/error.h"
#include "text/gpt2_bpe.h"
#include "text/sentencepiece_tokenizer.h"

namespace {

using engram::text::Tokenizer;

// Deterministic pseudo-English: words built from syllables with a Zipf-like choice, so that a few
// words are very common (as in real text) and there is a long tail of rare ones (which the word
// cache cannot hold all of), plus capitals, punctuation, numbers and paragraph breaks.
std::vector<std::string> generate_text(std::size_t bytes) {
  static const char* const kSyllables[] = {
      "the", "an", "in", "re", "con", "ing", "ed", "er", "tion", "al", "ment", "pro", "de", "ex",
      "ous", "ly", "com", "per", "ter", "ble", "for", "is", "at", "on", "ver", "di", "mi", "ca",
      "lo", "na", "po", "si", "ta", "us", "or", "ar", "ic", "ist", "ful", "less"};
  constexpr int kSyllableCount = sizeof(kSyllables) / sizeof(kSyllables[0]);
  std::mt19937_64 rng(42);
  // A lexicon of 60k words; word i is chosen with probability ~ 1/(i+1).
  std::vector<std::string> lexicon;
  for (int i = 0; i < 60000; ++i) {
    std::string word;
    for (int k = 1 + static_cast<int>(rng() % 4); k > 0; --k) word += kSyllables[rng() % kSyllableCount];
    lexicon.push_back(word);
  }
  // Inverse CDF of P(i) ~ 1/(i+1): i = e^u - 1 with u uniform in [0, ln(N+1)).
  const double log_n = std::log(static_cast<double>(lexicon.size()) + 1);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  const auto zipf = [&] {
    const auto i = static_cast<std::size_t>(std::exp(unit(rng) * log_n)) - 1;
    return std::min(i, lexicon.size() - 1);
  };
  std::vector<std::string> lines;
  std::size_t total = 0;
  while (total < bytes) {
    std::string line;
    for (int sentence = 1 + static_cast<int>(rng() % 6); sentence > 0; --sentence) {
      std::string s = lexicon[zipf()];
      s[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(s[0])));
      for (int w = 4 + static_cast<int>(rng() % 14); w > 0; --w) {
        const uint64_t r = rng() % 100;
        if (r < 3) s += fmt::format(" {}", rng() % 10000);
        else if (r < 8) s += ",";
        else if (r < 10) s += "'s";
        s += " " + lexicon[zipf()];
      }
      s += (rng() % 10 == 0) ? "?" : ".";
      line += (line.empty() ? "" : " ") + s;
    }
    total += line.size() + 1;
    lines.push_back(std::move(line));
  }
  return lines;
}

std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) engram::core::fail("cannot open text file '{}'", path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// Encodes every line once and prints one JSON line.
void measure(const Tokenizer& tokenizer, const std::vector<std::string>& lines,
             const std::string& variant) {
  std::size_t bytes = 0, tokens = 0;
  const auto start = std::chrono::steady_clock::now();
  for (const std::string& line : lines) {
    bytes += line.size();
    tokens += tokenizer.encode(line).size();
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double mb = bytes / 1e6;
  std::printf("%s\n", fmt::format(R"({{"bench":"tokenize","tokenizer":"{}","variant":"{}",)"
                                  R"("mb":{:.2f},"tokens":{},"bytes_per_token":{:.2f},)"
                                  R"("seconds":{:.3f},"mb_per_s":{:.2f},"threads":1}})",
                                  tokenizer.name(), variant, mb, tokens,
                                  static_cast<double>(bytes) / std::max<std::size_t>(tokens, 1),
                                  seconds, mb / seconds)
                          .c_str());
  std::fflush(stdout);
}

int run(int argc, char** argv) {
  const std::string source = ENGRAM_SOURCE_DIR;
  std::string gpt2_dir = source + "/tests/fixtures/gpt2_tiny";
  std::string spm_model, text_file;
  double generated_mb = 20;
  bench::po::options_description options("options");
  options.add_options()
      ("gpt2", bench::po::value(&gpt2_dir)->default_value(gpt2_dir), "folder with vocab.json + merges.txt")
      ("spm", bench::po::value(&spm_model), "SentencePiece .model (default: one trained on tests/fixtures/text/corpus.txt)")
      ("text", bench::po::value(&text_file), "text to encode, line by line (default: generated pseudo-English)")
      ("mb", bench::po::value(&generated_mb)->default_value(generated_mb), "size of the generated text, MB");
  bench::po::variables_map values;
  bench::Parsed parsed = bench::parse_command_line(
      argc, argv, "bench_tokenize",
      "usage: bench_tokenize [options]\nSingle-thread encode MB/s of GPT-2 BPE (cache cold, warm, off) and "
      "SentencePiece; JSON lines.",
      options, &values);
  if (parsed == bench::Parsed::Run && !(generated_mb > 0)) parsed = bench::fail("bench_tokenize", "--mb must be positive");
  if (parsed != bench::Parsed::Run) return bench::exit_status(parsed);
  if (spm_model.empty()) {
    const std::string dir = "/tmp/engram_bench_tokenize";
    std::filesystem::create_directories(dir);
    engram::text::SentencePieceTrainOptions options;
    options.input = source + "/tests/fixtures/text/corpus.txt";
    options.model_prefix = dir + "/spm";
    options.vocab_size = 400;
    engram::text::train_sentencepiece(options);
    spm_model = options.model_prefix + ".model";
  }
  const std::vector<std::string> lines =
      text_file.empty() ? generate_text(static_cast<std::size_t>(generated_mb * 1e6))
                        : read_lines(text_file);

  const std::string vocab = gpt2_dir + "/vocab.json", merges = gpt2_dir + "/merges.txt";
  {
    const engram::text::Gpt2BpeTokenizer gpt2(vocab, merges);
    measure(gpt2, lines, "cache-cold");
    measure(gpt2, lines, "cache-warm");
  }
  measure(engram::text::Gpt2BpeTokenizer(vocab, merges, 0), lines, "no-cache");
  measure(engram::text::SentencePieceTokenizer(spm_model), lines, "sentencepiece");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const engram::core::UserError& e) {
    std::fprintf(stderr, "bench_tokenize: %s\n", e.what());
    return e.exit_code();
  }
}
