// engram tokenizer: trains a SentencePiece model on a text corpus (by default the synthetic
// world's corpus.txt) with the library's own trainer, then checks it on a sample.
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

#include <spdlog/spdlog.h>

#include "app/command.h"
#include "core/error.h"
#include "core/timer.h"
#include "text/sentencepiece_tokenizer.h"

namespace engram::app {
namespace {

int run_tokenizer(CommandContext& ctx) {
  const auto& cfg = ctx.config;
  text::SentencePieceTrainOptions options;
  options.input = cfg.get_string("tokenizer.input");
  options.model_prefix = cfg.get_string("tokenizer.model");
  if (options.model_prefix.size() > 6 && options.model_prefix.substr(options.model_prefix.size() - 6) == ".model")
    options.model_prefix.resize(options.model_prefix.size() - 6);
  options.vocab_size = static_cast<int>(cfg.get_int("tokenizer.vocab_size"));
  options.model_type = cfg.get_string("tokenizer.type");
  options.input_sentence_size = cfg.get_int("tokenizer.max_lines");
  options.seed = static_cast<uint32_t>(cfg.get_int("run.seed"));
  options.split_digits = cfg.get_bool("tokenizer.split_digits");
  if (!std::filesystem::exists(options.input))
    core::fail("tokenizer.input: '{}' does not exist (run `engram synth` first, or point it at a text file)",
               options.input);
  auto parent = std::filesystem::path(options.model_prefix).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent);

  spdlog::info("tokenizer: training a {} SentencePiece model, vocab {}, on {}", options.model_type, options.vocab_size,
               options.input);
  core::Stopwatch clock;
  int threads = std::max(1u, std::thread::hardware_concurrency());
  text::train_sentencepiece(options, threads);
  const std::string model = options.model_prefix + ".model";
  text::SentencePieceTokenizer tokenizer(model);

  // Tokens per line on the first lines of the corpus: a quick look at the compression.
  std::ifstream in(options.input);
  std::string line;
  int64_t lines = 0, chars = 0, tokens = 0;
  while (lines < 1000 && std::getline(in, line)) {
    ++lines;
    chars += static_cast<int64_t>(line.size());
    tokens += static_cast<int64_t>(tokenizer.encode(line).size());
  }
  std::cout << fmt::format("wrote {} (vocab {}, pad {} unk {} bos {} eos {}) in {:.1f} s; {:.2f} bytes per token on "
                           "the first {} lines\n",
                           model, tokenizer.vocab_size(), tokenizer.pad_id(), tokenizer.unk_id(), tokenizer.bos_id(),
                           tokenizer.eos_id(), clock.seconds(), tokens ? double(chars) / tokens : 0.0, lines);
  return 0;
}

}  // namespace

void declare_tokenizer_options(config::Schema& schema) {
  schema.add_string("tokenizer.input", "runs/quickstart/data/corpus.txt", "text file to train on, one line per text");
  schema.add_string("tokenizer.model", "runs/quickstart/tokenizer.model",
                    "the SentencePiece model: written by `engram tokenizer`, read by the model commands");
  schema.add_int("tokenizer.vocab_size", 2048, "vocabulary size, including 4 special ids and 256 byte pieces", config::Range::at_least(261));
  schema.add_string("tokenizer.type", "unigram", "SentencePiece algorithm", {"unigram", "bpe"});
  schema.add_bool("tokenizer.split_digits", true, "every digit its own piece (LLaMA-style); false lets numbers merge");
  schema.add_int("tokenizer.max_lines", 0, "train on a random sample of at most this many lines; 0 = all", config::Range::at_least(0));
}

Command tokenizer_command() {
  Command c;
  c.name = "tokenizer";
  c.summary = "train a SentencePiece tokenizer on a text corpus";
  c.description =
      "Trains a SentencePiece model (tokenizer.type unigram or bpe, tokenizer.vocab_size) on\n"
      "tokenizer.input with the SentencePiece trainer and writes tokenizer.model. Special ids: pad 0,\n"
      "unk 1, bos 2, eos 3; byte fallback, so any UTF-8 text encodes without <unk> and decodes back.\n\n"
      "example: engram tokenizer --config configs/quickstart.yaml";
  c.run = run_tokenizer;
  c.needs_runtime = false;
  return c;
}

}  // namespace engram::app
