// engram data stats: what is in a dataset file of any supported format: counts, lengths, bad rows.
#include <algorithm>
#include <filesystem>
#include <iostream>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "app/command.h"
#include "core/error.h"
#include "core/progress.h"
#include "data/options.h"
#include "text/tokenizer.h"

namespace po = boost::program_options;

namespace engram::app {
namespace {

// Summary of a list of lengths: min, mean, median, p95, max.
nlohmann::json describe(std::vector<int64_t> values) {
  if (values.empty()) return nullptr;
  std::sort(values.begin(), values.end());
  double sum = 0;
  for (int64_t v : values) sum += static_cast<double>(v);
  auto at = [&](double q) { return values[static_cast<size_t>(q * static_cast<double>(values.size() - 1))]; };
  return {{"min", values.front()}, {"mean", sum / static_cast<double>(values.size())}, {"median", at(0.5)},
          {"p95", at(0.95)}, {"max", values.back()}};
}

int64_t count_words(const std::string& s) {
  int64_t words = 0;
  bool in_word = false;
  for (unsigned char c : s) {
    bool space = c == ' ' || c == '\t' || c == '\n' || c == '\r';
    if (!space && !in_word) ++words;
    in_word = !space;
  }
  return words;
}

int run_data(CommandContext& ctx) {
  const std::string action = ctx.args.count("action") ? ctx.args["action"].as<std::string>() : "";
  if (action != "stats") core::fail("engram data: unknown action '{}' (expected: stats)", action);
  if (!ctx.args.count("input")) core::fail("engram data stats: --input FILE is required");
  const std::string path = ctx.args["input"].as<std::string>();

  const data::ReadOptions options = data::read_options_from(ctx.config);
  std::unique_ptr<text::Tokenizer> tokenizer;
  if (ctx.args.count("tokenizer")) tokenizer = text::load_tokenizer(ctx.args["tokenizer"].as<std::string>());

  data::DocumentReader reader(path, options);
  const auto file_bytes = static_cast<int64_t>(std::filesystem::file_size(path));
  core::Progress progress("read", file_bytes, true, 2.0, "bytes");
  std::vector<int64_t> chars, words, tokens, questions_per_doc, answer_words;
  int64_t heldout = 0, first_time = INT64_MAX, last_time = INT64_MIN, timed = 0;
  data::Document doc;
  while (reader.next(doc)) {
    chars.push_back(static_cast<int64_t>(doc.text.size()));
    words.push_back(count_words(doc.text));
    if (tokenizer) tokens.push_back(static_cast<int64_t>(tokenizer->encode(doc.text).size()));
    questions_per_doc.push_back(static_cast<int64_t>(doc.qa.size()));
    for (const auto& qa : doc.qa) {
      answer_words.push_back(count_words(qa.answers.front()));
      heldout += qa.heldout ? 1 : 0;
    }
    if (doc.time) {
      ++timed;
      first_time = std::min(first_time, *doc.time);
      last_time = std::max(last_time, *doc.time);
    }
    if (chars.size() % 4096 == 0) progress.update(reader.bytes_read());
  }
  const data::ReadStats& stats = reader.stats();
  nlohmann::json report{
      {"file", path},
      {"format", std::string(data::format_name(reader.format()))},
      {"bytes", file_bytes},
      {"rows", stats.rows},
      {"documents", stats.documents},
      {"questions", stats.questions},
      {"heldout_questions", heldout},
      {"bad_rows", stats.bad_rows},
      {"first_errors", stats.first_errors},
      {"text_chars", describe(chars)},
      {"text_words", describe(words)},
      {"questions_per_document", describe(questions_per_doc)},
      {"answer_words", describe(answer_words)},
      {"documents_with_time", timed},
  };
  if (timed) report["time_range"] = {first_time, last_time};
  if (tokenizer) {
    report["tokenizer"] = tokenizer->name();
    report["text_tokens"] = describe(tokens);
  }
  if (ctx.args.count("json")) {
    std::cout << report.dump() << "\n";
    return 0;
  }
  auto line = [](const char* label, const nlohmann::json& d) {
    if (d.is_null()) return fmt::format("{:<24} -\n", label);
    return fmt::format("{:<24} min {} mean {:.1f} median {} p95 {} max {}\n", label, d["min"].get<int64_t>(),
                       d["mean"].get<double>(), d["median"].get<int64_t>(), d["p95"].get<int64_t>(),
                       d["max"].get<int64_t>());
  };
  std::cout << fmt::format("{} ({}, {:.1f} MB)\n", path, report["format"].get<std::string>(), file_bytes / 1e6)
            << fmt::format("{:<24} {}\n{:<24} {}\n{:<24} {} ({} held-out paraphrases)\n{:<24} {}\n", "rows",
                           stats.rows, "documents", stats.documents, "questions", stats.questions, heldout,
                           "bad rows", stats.bad_rows)
            << line("text chars", report["text_chars"]) << line("text words", report["text_words"])
            << (tokenizer ? line("text tokens", report["text_tokens"]) : "")
            << line("questions per document", report["questions_per_document"])
            << line("answer words", report["answer_words"]);
  if (timed) std::cout << fmt::format("{:<24} {} .. {} ({} documents)\n", "time", first_time, last_time, timed);
  for (const auto& e : stats.first_errors) std::cout << "bad row: " << e << "\n";
  return 0;
}

}  // namespace

Command data_command() {
  Command c;
  c.name = "data";
  c.summary = "inspect a dataset file: engram data stats --input FILE";
  c.description =
      "engram data stats --input FILE [--tokenizer MODEL] [--json]\n"
      "Reads any supported format (native JSONL, StreamingQA CSV, ArchivalQA CSV, SQuAD v1.1 JSON; detected\n"
      "from the extension and header) and prints counts (rows, documents, questions, bad rows with the first\n"
      "errors), length distributions (characters, words, and tokens with --tokenizer) and the time range.\n"
      "With data.on_bad_row=skip, malformed rows are counted instead of stopping the read.\n\n"
      "example: engram data stats --input squad.json --set data.on_bad_row=skip";
  c.add_options = [](po::options_description& options) {
    options.add_options()("action", po::value<std::string>(), "what to do: stats")(
        "input,i", po::value<std::string>(), "the dataset file")(
        "tokenizer", po::value<std::string>(), "also count tokens: a SentencePiece .model or a GPT-2 folder")(
        "json", "print one JSON object instead of the table");
  };
  c.positional = {"action"};
  c.run = run_data;
  c.needs_runtime = false;
  return c;
}

}  // namespace engram::app
