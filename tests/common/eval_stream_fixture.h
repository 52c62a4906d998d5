#pragma once
// A small test stream for the evaluation seam: `documents` documents, each with a training-
// template question and a held-out paraphrase, written as native JSONL; and a config that
// evaluates it with the given contenders.
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "app/command.h"
#include "config/config.h"

namespace engram::testing_eval {

inline std::string make_temp_dir() {
  std::string pattern = "/tmp/engram_eval_XXXXXX";
  if (mkdtemp(pattern.data()) == nullptr) std::abort();
  return pattern;
}

inline std::string write_stream(const std::string& dir, int documents) {
  const std::string path = dir + "/stream.jsonl";
  std::ofstream out(path);
  for (int i = 0; i < documents; ++i)
    out << fmt::format(
        "{{\"id\": \"doc-{0}\", \"text\": \"Entity {0} lives in city {0}.\", \"qa\": ["
        "{{\"question\": \"Where does entity {0} live?\", \"answers\": [\"city {0}\"]}}, "
        "{{\"question\": \"Entity {0} has its home in which city?\", \"answers\": [\"city {0}\"], \"heldout\": true}}]}}\n",
        i);
  return path;
}

// The config of `engram eval` on that stream: eval.methods, 5 questions per row, curves at 4
// documents and 2 retention points.
inline config::Config eval_config(const config::Schema& schema, const std::string& dir, const std::string& stream,
                                  const std::string& methods) {
  config::Config cfg(schema);
  cfg.apply_override("stream.test=" + stream);
  cfg.apply_override("eval.out_dir=" + dir + "/eval");
  cfg.apply_override("eval.methods=[" + methods + "]");
  cfg.apply_override("eval.questions=5");
  cfg.apply_override("eval.curve_sizes=[4, 100]");
  cfg.apply_override("eval.retention_points=2");
  return cfg;
}

}  // namespace engram::testing_eval
