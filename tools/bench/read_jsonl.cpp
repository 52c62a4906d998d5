// bench_read_jsonl: how fast native JSONL documents are read.
//
// Writes a generated file of documents with QA pairs (default ~50 MB, in /tmp) through JsonlWriter,
// then reads it, from the page cache, three ways, each the median of --repeats passes:
//   lines     io::LineReader only: the I/O and newline scanning floor;
//   json      io::JsonlReader: plus JSON parsing (the baseline the reader is compared with);
//   documents data::DocumentReader: plus checking and converting to Document (what users get).
// One JSON object per line; mb_per_s counts 10^6 bytes of file per second.
//
// Usage: bench_read_jsonl [--mb 50] [--repeats 3] [--path /tmp/engram_bench_read.jsonl] [--keep] (--help)
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "bench_options.h"
#include "data/readers.h"
#include "io/jsonl.h"

namespace {

struct Args {
  double mb = 50;
  int repeats = 3;
  std::string path = "/tmp/engram_bench_read.jsonl";
  bool keep = false;
};

bench::Parsed parse_args(int argc, char** argv, Args* args) {
  bench::po::options_description options("options");
  options.add_options()
      ("mb", bench::po::value(&args->mb)->default_value(args->mb), "size of the generated file, MB")
      ("repeats", bench::po::value(&args->repeats)->default_value(args->repeats), "timed passes per stage (median)")
      ("path", bench::po::value(&args->path)->default_value(args->path), "where the file is written")
      ("keep", bench::po::bool_switch(&args->keep), "keep the file afterwards");
  bench::po::variables_map values;
  bench::Parsed parsed = bench::parse_command_line(
      argc, argv, "bench_read_jsonl", "usage: bench_read_jsonl [options]   (tools/bench/text_io.sh)", options, &values);
  if (parsed == bench::Parsed::Run && (!(args->mb > 0) || args->repeats < 1))
    return bench::fail("bench_read_jsonl", "--mb must be positive and --repeats >= 1");
  return parsed;
}

// Documents that look like news passages: ~1.5 kB of words, 3 questions with 1-3 answers each.
int64_t write_file(const std::string& path, double mb) {
  static const std::vector<std::string> words = {
      "the",     "city",       "council",   "voted",    "on",       "Tuesday", "to",
      "approve", "new",        "budget",    "which",    "includes", "funding", "for",
      "schools", "and",        "roads",     "mayor",    "said",     "in",      "statement",
      "that",    "residents",  "would",     "see",      "changes",  "next",    "year",
      "Zürich",  "\"quoted\"", "officials", "expected", "report",   "by",      "March",
      "2021",    "river",      "bridge"};
  std::mt19937_64 rng(42);
  std::uniform_int_distribution<size_t> pick(0, words.size() - 1);
  const auto sentence = [&](int n) {
    std::string s;
    for (int i = 0; i < n; ++i) {
      if (i) s += ' ';
      s += words[pick(rng)];
    }
    return s;
  };
  const auto target = static_cast<int64_t>(mb * 1e6);
  engram::io::JsonlWriter writer(path);
  int64_t bytes = 0;
  for (int64_t i = 0; bytes < target; ++i) {
    nlohmann::json qa = nlohmann::json::array();
    for (int q = 0; q < 3; ++q) {
      nlohmann::json answers = nlohmann::json::array();
      for (int a = 0; a <= q; ++a) answers.push_back(sentence(1 + a));
      qa.push_back({{"question", sentence(9) + "?"}, {"answers", std::move(answers)}});
    }
    const nlohmann::json doc = {{"id", fmt::format("doc-{:07d}", i)},
                                {"text", sentence(230) + "."},
                                {"time", 1600000000 + i * 60},
                                {"qa", std::move(qa)}};
    writer.write(doc);
    bytes += static_cast<int64_t>(doc.dump().size()) + 1;
  }
  writer.close();
  return static_cast<int64_t>(std::filesystem::file_size(path));
}

// Median seconds of `repeats` runs of `pass`, which returns the number of items it read.
double median_seconds(int repeats, const std::function<int64_t()>& pass, int64_t& items) {
  std::vector<double> seconds;
  for (int r = 0; r < repeats; ++r) {
    const auto start = std::chrono::steady_clock::now();
    items = pass();
    seconds.push_back(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(seconds.begin(), seconds.end());
  return seconds[seconds.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  const bench::Parsed parsed = parse_args(argc, argv, &args);
  if (parsed != bench::Parsed::Run) return bench::exit_status(parsed);
  try {
    const int64_t bytes = write_file(args.path, args.mb);

    const auto report = [&](const char* stage, const std::function<int64_t()>& pass) {
      pass();  // warm-up: the file is in the page cache for every timed pass
      int64_t items = 0;
      const double s = median_seconds(args.repeats, pass, items);
      fmt::print(
          "{{\"bench\": \"read_jsonl\", \"stage\": \"{}\", \"bytes\": {}, \"items\": {}, "
          "\"seconds\": {:.4f}, \"mb_per_s\": {:.1f}, \"repeats\": {}}}\n",
          stage, bytes, items, s, static_cast<double>(bytes) / 1e6 / s, args.repeats);
      std::fflush(stdout);
    };
    report("lines", [&] {
      engram::io::LineReader reader(args.path);
      std::string_view line;
      int64_t n = 0;
      while (reader.next(line)) ++n;
      return n;
    });
    report("json", [&] {
      engram::io::JsonlReader reader(args.path);
      nlohmann::json value;
      int64_t n = 0;
      while (reader.next(value)) ++n;
      return n;
    });
    report("documents", [&] {
      engram::data::DocumentReader reader(args.path);
      engram::data::Document doc;
      while (reader.next(doc)) {}
      return reader.stats().documents;
    });
    if (!args.keep) std::filesystem::remove(args.path);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_read_jsonl: %s\n", e.what());
    return 2;
  }
  return 0;
}
