// engram eval: every configured contender on one test stream, one table (eval/evaluation.h).
// mac-eval (cmd_mac.cpp) is the same with MAC and its baselines.
#include <iostream>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "app/command.h"
#include "config/config.h"
#include "core/error.h"
#include "dist/runtime.h"
#include "eval/evaluation.h"

namespace po = boost::program_options;

namespace engram::app {
namespace {

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> out;
  size_t begin = 0;
  while (begin <= text.size()) {
    const size_t end = std::min(text.find(',', begin), text.size());
    if (end > begin) out.push_back(text.substr(begin, end - begin));
    begin = end + 1;
  }
  return out;
}

}  // namespace

int run_evaluation_command(CommandContext& ctx, std::vector<std::string> default_methods) {
  eval::EvalOptions options = eval::eval_options_from(ctx.config);
  if (!default_methods.empty()) options.methods = std::move(default_methods);
  if (ctx.args.count("methods")) {
    options.methods = split_list(ctx.args["methods"].as<std::string>());
    if (options.methods.empty()) core::fail("--methods: name at least one contender, e.g. --methods closed_book,mac");
  }
  if (ctx.args.count("stream")) options.test_stream = ctx.args["stream"].as<std::string>();
  dist::Runtime& rt = *ctx.runtime;
  eval::EvalContext eval_ctx(ctx.config, std::move(options), rt.comm(), rt.mpi_handle());
  eval::EvalReport report = eval::run_evaluation(eval_ctx, builtin_contenders());
  if (rt.comm().rank() == 0)
    std::cout << "\n" << report.table << "\nwrote " << report.out_dir
              << "/{table.md,table.csv,curves.csv,results.json}; plots: python3 tools/plot_eval.py " << report.out_dir
              << "/results.json\n";
  return 0;
}

void add_evaluation_options(po::options_description& o) {
  o.add_options()("methods", po::value<std::string>(), "contenders to run, comma-separated (default eval.methods)")(
      "stream", po::value<std::string>(), "the test stream: documents with questions, any supported format "
                                          "(default stream.test)");
}

std::string contender_list() {
  std::string out = "contenders (--methods, eval.methods):\n";
  for (const auto& spec : builtin_contenders().all()) out += fmt::format("  {:<12} {}\n", spec.key, spec.summary);
  return out;
}

Command eval_command() {
  Command c;
  c.name = "eval";
  c.summary = "compare ways of keeping a model current on one test stream: one table, curves";
  c.description =
      "Runs each contender on the same test stream (stream.test or --stream; its first eval.documents)\n"
      "and the same questions (eval.questions, held-out paraphrases counted apart): it absorbs the\n"
      "documents in stream order, then answers. One row per contender (and its ablations): prefix EM,\n"
      "F1, F1 on held-out paraphrases, adaptation seconds per document, peak memory, storage per\n"
      "document. Contenders with curves add F1 against documents absorbed (eval.curve_sizes) and\n"
      "retention of the stream's first tenth. Writes eval.out_dir/{table.md,table.csv,curves.csv,\n"
      "results.json}; tools/plot_eval.py draws the curves.\n\n" +
      contender_list() +
      "\nexamples:\n"
      "  mpirun -np 2 engram eval --config configs/quickstart.yaml\n"
      "  mpirun -np 2 engram eval --config configs/quickstart.yaml --methods closed_book,context,ft,mac\n"
      "  mpirun -np 2 engram eval --config configs/quickstart.yaml --stream my_docs.jsonl";
  c.add_options = add_evaluation_options;
  c.run = [](CommandContext& ctx) { return run_evaluation_command(ctx, {}); };
  return c;
}

}  // namespace engram::app
