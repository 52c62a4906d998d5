#include "eval/evaluation.h"

#include <filesystem>
#include <fstream>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include "config/config.h"
#include "core/error.h"
#include "core/memory.h"
#include "core/timer.h"
#include "data/options.h"
#include "data/readers.h"
#include "dist/communicator.h"
#include "eval/scores_json.h"

namespace fs = std::filesystem;

namespace engram::eval {
namespace {

// One contender's turn: its rows and what the seam measured around them.
struct Turn {
  std::string key;
  std::vector<Row> rows;
  double adapt_seconds_per_doc = 0;
  double storage_bytes_per_doc = 0;
  int64_t peak_bytes = 0;
  nlohmann::json curves;  // null without curves
};

double job_max(dist::Communicator& comm, double value) {
  at::Tensor t = torch::tensor({value}, torch::kDouble);
  comm.all_reduce(t, dist::ReduceOp::Max);
  return t.item<double>();
}

// Runs `phase` of contender `key`; a failure is logged on the rank it happened on, naming the
// contender and the phase, and passed on (the command ends the job).
template <typename F>
auto guarded(const std::string& key, const char* phase, int rank, F&& phase_body) -> decltype(phase_body()) {
  try {
    return phase_body();
  } catch (const std::exception& e) {
    spdlog::error("eval: contender '{}' failed on rank {} while {}: {}", key, rank, phase, e.what());
    throw;
  }
}

nlohmann::json curves_of(Contender& contender, const std::string& key, const Stream& stream, EvalContext& ctx) {
  const int64_t n = stream.size();
  nlohmann::json by_documents = nlohmann::json::array(), retention = nlohmann::json::array();
  for (int64_t size : ctx.options.curve_sizes) {
    if (size < 1 || size > n) continue;
    QaEvalResult r = contender.answer_after(size, stream, stream.questions_about(0, size), ctx);
    by_documents.push_back({{"documents", size}, {"scores", scores_json(r)}});
    spdlog::info("eval: {} after {:>6} documents: F1 {:.3f} on questions about them", key, size, r.all.f1_mean());
  }
  const int64_t early = retention_span(n);
  const auto early_questions = stream.questions_about(0, early);
  for (int64_t p = 1; p <= ctx.options.retention_points; ++p) {
    const int64_t seen = std::max(early, n * p / ctx.options.retention_points);
    QaEvalResult r = contender.answer_after(seen, stream, early_questions, ctx);
    retention.push_back({{"documents_seen", seen}, {"scores", scores_json(r)}});
    spdlog::info("eval: {} retention after {:>6} documents: F1 {:.3f} on the first {}", key, seen, r.all.f1_mean(),
                 early);
  }
  return {{"f1_vs_documents", by_documents}, {"retention", retention}, {"retention_first_documents", early}};
}

Turn take_turn(const ContenderSpec& spec, const Stream& stream, EvalContext& ctx) {
  const int rank = ctx.comm.rank();
  Turn turn;
  turn.key = spec.key;
  std::unique_ptr<Contender> contender = guarded(spec.key, "starting", rank, [&] { return spec.make(ctx); });
  core::reset_peak_rss();
  core::Stopwatch clock;
  turn.storage_bytes_per_doc = guarded(spec.key, "absorbing the stream", rank, [&] { return contender->absorb(stream, ctx); });
  turn.adapt_seconds_per_doc = job_max(ctx.comm, clock.seconds()) / static_cast<double>(stream.size());
  turn.rows = guarded(spec.key, "answering", rank, [&] { return contender->answer(stream, stream.questions, ctx); });
  turn.peak_bytes = static_cast<int64_t>(job_max(ctx.comm, static_cast<double>(core::peak_rss_bytes())));
  if (contender->has_curves())
    turn.curves = guarded(spec.key, "answering for the curves", rank, [&] { return curves_of(*contender, spec.key, stream, ctx); });
  for (const auto& row : turn.rows)
    spdlog::info("eval: {:<40} F1 {:.3f} (held-out {:.3f}), adapt {:.5f} s/doc", row.name, row.scores.all.f1_mean(),
                 row.scores.heldout.f1_mean(), turn.adapt_seconds_per_doc);
  return turn;
}

std::string markdown(const std::vector<Turn>& turns, const Stream& stream) {
  std::string out = fmt::format(
      "{} documents of {}, {} questions per row (prefix EM: the prediction cut to the answer's length, as MAC)\n\n",
      stream.size(), stream.source, stream.questions.size());
  out += "| method | prefix EM | F1 | F1 held-out | adapt s/doc | peak memory MB | storage bytes/doc |\n";
  out += "|---|---|---|---|---|---|---|\n";
  for (const auto& t : turns)
    for (const auto& r : t.rows)
      out += fmt::format("| {} | {:.3f} | {:.3f} | {:.3f} | {:.5f} | {:.0f} | {:.0f} |\n", r.name,
                         r.scores.all.prefix_exact_match_mean(), r.scores.all.f1_mean(), r.scores.heldout.f1_mean(),
                         t.adapt_seconds_per_doc, static_cast<double>(t.peak_bytes) / (1 << 20),
                         t.storage_bytes_per_doc);
  return out;
}

std::string csv_field(const std::string& text) {
  std::string out = "\"";
  for (char c : text) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

std::string rows_csv(const std::vector<Turn>& turns) {
  std::string out =
      "contender,method,questions,exact_match,prefix_exact_match,f1,substring_accuracy,heldout_questions,f1_heldout,"
      "adapt_seconds_per_doc,peak_bytes,storage_bytes_per_doc\n";
  for (const auto& t : turns)
    for (const auto& r : t.rows) {
      const MetricSums& a = r.scores.all;
      out += fmt::format("{},{},{},{:.6f},{:.6f},{:.6f},{:.6f},{},{:.6f},{:.6g},{},{:.6g}\n", t.key, csv_field(r.name),
                         a.count, a.exact_match_mean(), a.prefix_exact_match_mean(), a.f1_mean(),
                         a.substring_accuracy_mean(), r.scores.heldout.count, r.scores.heldout.f1_mean(),
                         t.adapt_seconds_per_doc, t.peak_bytes, t.storage_bytes_per_doc);
    }
  return out;
}

std::string curves_csv(const std::vector<Turn>& turns) {
  std::string out = "contender,curve,documents,questions,f1,f1_heldout\n";
  for (const auto& t : turns) {
    if (t.curves.is_null()) continue;
    for (const auto& [curve, count_key] : {std::pair{"f1_vs_documents", "documents"}, {"retention", "documents_seen"}})
      for (const auto& p : t.curves[curve])
        out += fmt::format("{},{},{},{},{:.6f},{:.6f}\n", t.key, curve, p[count_key].get<int64_t>(),
                           p["scores"]["all"]["questions"].get<int64_t>(), p["scores"]["all"]["f1"].get<double>(),
                           p["scores"]["heldout"]["f1"].get<double>());
  }
  return out;
}

nlohmann::json results_json(const std::vector<Turn>& turns, const Stream& stream, int world_size) {
  nlohmann::json results{{"stream", stream.source},
                         {"documents", stream.size()},
                         {"questions", stream.questions.size()},
                         {"world_size", world_size},
                         {"rows", nlohmann::json::array()},
                         {"curves", nlohmann::json::object()}};
  for (const auto& t : turns) {
    for (const auto& r : t.rows) {
      nlohmann::json row{{"contender", t.key},
                         {"method", r.name},
                         {"scores", scores_json(r.scores)},
                         {"adapt_seconds_per_doc", t.adapt_seconds_per_doc},
                         {"peak_bytes", t.peak_bytes},
                         {"storage_bytes_per_doc", t.storage_bytes_per_doc}};
      for (const auto& [name, value] : r.extras) row[name] = value;
      results["rows"].push_back(std::move(row));
    }
    if (!t.curves.is_null()) results["curves"][t.key] = t.curves;
  }
  return results;
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  if (!out) core::fail("{}: cannot write", path);
}

}  // namespace

Stream read_stream(const EvalContext& ctx) {
  std::vector<data::Document> docs = data::read_all(ctx.options.test_stream, data::read_options_from(ctx.config));
  return make_stream(std::move(docs), ctx.options.test_stream, ctx.options.documents, ctx.options.questions);
}

EvalReport run_evaluation(EvalContext& ctx, const ContenderRegistry& registry) {
  std::vector<const ContenderSpec*> specs;
  for (const auto& key : ctx.options.methods) specs.push_back(&registry.find(key));  // unknown names fail first
  const bool rank0 = ctx.comm.rank() == 0;
  if (rank0) fs::create_directories(ctx.options.out_dir);
  ctx.comm.barrier();
  const Stream stream = read_stream(ctx);
  ctx.curve_points = curve_points(ctx.options, stream.size());
  spdlog::info("eval: {} documents of {}, {} questions per row, contenders: {}", stream.size(), stream.source,
               stream.questions.size(), fmt::join(ctx.options.methods, ", "));
  std::vector<Turn> turns;
  for (const ContenderSpec* spec : specs) turns.push_back(take_turn(*spec, stream, ctx));

  EvalReport report{markdown(turns, stream), ctx.options.out_dir};
  if (rank0) {
    write_file(report.out_dir + "/table.md", report.table);
    write_file(report.out_dir + "/table.csv", rows_csv(turns));
    write_file(report.out_dir + "/curves.csv", curves_csv(turns));
    write_file(report.out_dir + "/results.json", results_json(turns, stream, ctx.comm.world_size()).dump(2) + "\n");
  }
  ctx.comm.barrier();
  return report;
}

}  // namespace engram::eval
