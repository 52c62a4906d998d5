#pragma once
// engram eval: the configured contenders on one test stream, one table.
//
// Every rank reads the same stream and picks the same questions (eval/stream.h). For each
// contender, in the order of eval.methods: absorb the stream (timed: adaptation seconds per
// document, the slowest rank's), answer the questions (its rows), then, when it has curves, F1
// against documents absorbed (eval.curve_sizes; questions about those documents) and retention
// (questions about the stream's first tenth as the rest arrives). Peak memory is the largest
// resident set of any rank during the contender's turn.
//
// Writes into eval.out_dir: table.md, table.csv (one line per row), curves.csv and results.json
// (rows with contender, method, scores by metric name, adapt_seconds_per_doc, peak_bytes,
// storage_bytes_per_doc and extras; curves per contender). tools/plot_eval.py draws the curves.
#include <string>

#include "eval/contender.h"

namespace engram::eval {

struct EvalReport {
  std::string table;    // Markdown (every rank)
  std::string out_dir;  // where the files are
};

// Collective. A contender that throws on a rank: that rank logs which contender failed in which
// phase and rethrows (the command then ends the whole job: dist::Runtime::abort_job_if_distributed).
EvalReport run_evaluation(EvalContext& ctx, const ContenderRegistry& registry);

// The stream of ctx.options (stream.test or --stream, eval.documents, eval.questions), read with
// data.* options on every rank.
Stream read_stream(const EvalContext& ctx);

}  // namespace engram::eval
