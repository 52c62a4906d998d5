#include "methods/mac/evaluate.h"

#include <filesystem>
#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include "config/config.h"
#include "core/error.h"
#include "core/memory.h"
#include "core/progress.h"
#include "core/timer.h"
#include "data/collate.h"
#include "data/options.h"
#include "dist/communicator.h"
#include "dist/runtime.h"
#include "eval/qa_eval.h"
#include "methods/mac/answer.h"
#include "methods/mac/bank.h"
#include "methods/mac/memorize.h"
#include "methods/mac/options.h"
#include "methods/mac/system.h"
#include "train/cross_entropy.h"
#include "train/trainer.h"

namespace fs = std::filesystem;

namespace engram::mac {

void declare_mac_eval_options(config::Schema& schema) {
  schema.add_string("mac.eval.out_dir", "runs/quickstart/mac/eval", "table.md, results.json and the test bank");
  schema.add_int("mac.eval.documents", 0, "documents of the test stream to use, from its start (0 = all)");
  schema.add_int("mac.eval.questions", 400, "questions scored per row, spread evenly over the stream (0 = all)");
  schema.add_float("mac.eval.ft_lr", 1e-4, "learning rate of the FT(C) baseline's one AdamW step per document");
  schema.add_list("mac.eval.bank_sizes", {"1", "16", "128", "1000", "10000"},
                  "bank sizes N of the F1-vs-N curve (sizes above the stream's length are skipped)");
  schema.add_int("mac.eval.retention_points", 10, "points of the retention curve (stream fractions 1/k .. 1)");
}

namespace {

struct Row {
  std::string name;
  eval::QaEvalResult scores;
  double adapt_seconds_per_doc = 0;
  int64_t peak_bytes = 0;
  double storage_bytes_per_doc = 0;
  double gold_attention = -1, gold_top1 = -1, gold_retrieved = -1;  // AnswerResult's (full-bank rows)
};

// Max over ranks of this rank's peak RSS since the last reset.
int64_t job_peak(dist::Communicator& comm) {
  at::Tensor peak = torch::tensor({core::peak_rss_bytes()}, torch::kInt64);
  comm.all_reduce(peak, dist::ReduceOp::Max);
  return peak.item<int64_t>();
}

// Every `step`-th question of the given documents, up to `limit` (0 = all), with its gold row.
std::vector<BankQuestion> pick_questions(const std::vector<data::Document>& docs, int64_t first, int64_t count,
                                         int64_t limit) {
  std::vector<BankQuestion> all;
  for (int64_t row = first; row < first + count; ++row)
    for (const auto& qa : docs[static_cast<size_t>(row)].qa)
      if (!qa.answers.empty()) all.push_back(BankQuestion{&qa, row});
  if (limit <= 0 || static_cast<int64_t>(all.size()) <= limit) return all;
  std::vector<BankQuestion> out;
  for (int64_t i = 0; i < limit; ++i)
    out.push_back(all[static_cast<size_t>(i * static_cast<int64_t>(all.size()) / limit)]);
  return out;
}

std::vector<data::Document> documents_of(const std::vector<BankQuestion>& questions,
                                         const std::vector<data::Document>& docs) {
  // evaluate_qa takes documents with their questions: one document per picked question.
  std::vector<data::Document> out;
  for (const auto& q : questions) {
    data::Document d = docs[static_cast<size_t>(q.gold_row)];
    d.qa = {*q.qa};
    out.push_back(std::move(d));
  }
  return out;
}

// FT(C): one AdamW step on each document's next-token loss, in stream order, on a copy of the
// base LM. Every rank runs the same sequence (it cannot be split: each step depends on the last).
model::Decoder fine_tune_online(MacSystem& s, const std::vector<data::Document>& docs, double lr, int64_t seq_len,
                                double* seconds) {
  model::Decoder ft(s.lm->config());
  {
    torch::NoGradGuard no_grad;
    auto source = s.lm->named_parameters();
    for (auto& p : ft->named_parameters()) p.value().copy_(source[p.key()]);
  }
  ft->train();
  torch::optim::AdamW optimizer(ft->parameters(), torch::optim::AdamWOptions(lr).weight_decay(0.0));
  const int32_t pad = std::max(0, s.lm_tokenizer->pad_id());
  core::Stopwatch clock;
  core::Progress progress("FT(C)", static_cast<int64_t>(docs.size()), true, 2.0, "doc");
  for (size_t i = 0; i < docs.size(); ++i) {
    auto examples = data::encode_text(*s.lm_tokenizer, docs[i].text, seq_len);
    if (examples.empty()) continue;
    data::Batch b = data::collate(examples, pad);
    model::ForwardOptions forward;
    forward.attention_mask = b.attention_mask;
    at::Tensor logits = ft->forward(b.input_ids, forward).logits;
    at::Tensor loss = train::token_cross_entropy(logits, b.labels);
    optimizer.zero_grad();
    loss.backward();
    optimizer.step();
    progress.update(static_cast<int64_t>(i + 1));
  }
  *seconds = clock.seconds();
  ft->eval();
  return ft;
}

nlohmann::json scores_json(const eval::QaEvalResult& r) {
  auto one = [](const eval::MetricSums& m) {
    return nlohmann::json{{"questions", m.count}, {"em", m.prefix_exact_match_mean()}, {"f1", m.f1_mean()}};
  };
  return {{"all", one(r.all)}, {"training_templates", one(r.training_templates)}, {"heldout", one(r.heldout)}};
}

std::string markdown(const std::vector<Row>& rows, int64_t documents) {
  std::string out = fmt::format("MAC evaluation on {} test documents (EM = prefix exact match, as MAC)\n\n", documents);
  out += "| method | EM | F1 | F1 held-out | adapt s/doc | peak memory MB | storage bytes/doc |\n";
  out += "|---|---|---|---|---|---|---|\n";
  for (const auto& r : rows)
    out += fmt::format("| {} | {:.3f} | {:.3f} | {:.3f} | {:.5f} | {:.0f} | {:.0f} |\n", r.name,
                       r.scores.all.prefix_exact_match_mean(), r.scores.all.f1_mean(), r.scores.heldout.f1_mean(),
                       r.adapt_seconds_per_doc, static_cast<double>(r.peak_bytes) / (1 << 20), r.storage_bytes_per_doc);
  return out;
}

}  // namespace

std::string evaluate_mac(const config::Config& cfg, dist::Runtime& rt) {
  dist::Communicator& comm = rt.comm();
  const bool rank0 = comm.rank() == 0;
  const std::string out_dir = cfg.get_string("mac.eval.out_dir");
  if (rank0) fs::create_directories(out_dir);
  comm.barrier();
  MacSystem s = load_mac_system(cfg, cfg.get_string("mac.out_dir") + "/mac.h5");

  std::vector<data::Document> docs = data::read_all(cfg.get_string("mac.test_data"), data::read_options_from(cfg));
  const int64_t limit = cfg.get_int("mac.eval.documents");
  if (limit > 0 && static_cast<int64_t>(docs.size()) > limit) docs.resize(static_cast<size_t>(limit));
  const int64_t N = static_cast<int64_t>(docs.size());
  if (N == 0) core::fail("mac.test_data: no documents");
  const int64_t max_questions = cfg.get_int("mac.eval.questions");
  const std::vector<BankQuestion> questions = pick_questions(docs, 0, N, max_questions);
  const std::vector<data::Document> question_docs = documents_of(questions, docs);
  spdlog::info("mac-eval: {} documents, {} questions per row", N, questions.size());

  const int64_t qa_tokens = cfg.get_int("mac.qa_tokens");
  const model::GenerateOptions generation = generate_options_from(cfg, *s.lm_tokenizer);

  std::vector<Row> rows;
  auto baseline = [&](const std::string& name, model::Decoder& lm, data::PromptFormat format, double adapt,
                      double storage) {
    core::reset_peak_rss();
    eval::QaEvalOptions options;
    options.format = format;
    options.max_new_tokens = generation.max_new_tokens;
    options.max_prompt_tokens = s.lm->config().max_positions > 0 ? std::min<int64_t>(512, s.lm->config().max_positions) : 512;
    Row row{name, eval::evaluate_qa(lm, *s.lm_tokenizer, question_docs, options, comm), adapt, 0, storage};
    row.peak_bytes = job_peak(comm);
    spdlog::info("mac-eval: {:<28} F1 {:.3f} (held-out {:.3f})", name, row.scores.all.f1_mean(),
                 row.scores.heldout.f1_mean());
    rows.push_back(std::move(row));
  };
  double text_bytes = 0;
  for (const auto& d : docs) text_bytes += static_cast<double>(d.text.size());
  baseline("base LM, closed book", s.lm, data::PromptFormat::QuestionAnswer, 0, 0);
  baseline("context in prompt", s.lm, data::PromptFormat::ContextQuestionAnswer, 0, text_bytes / N);
  {
    core::reset_peak_rss();
    double seconds = 0;
    model::Decoder ft = fine_tune_online(s, docs, cfg.get_float("mac.eval.ft_lr"), qa_tokens * 4, &seconds);
    const double param_bytes = static_cast<double>(ft->num_parameters()) * 4;
    const int64_t peak = job_peak(comm);
    baseline("FT(C) uniform fine-tuning", ft, data::PromptFormat::QuestionAnswer, seconds / N, param_bytes / N);
    rows.back().peak_bytes = std::max(rows.back().peak_bytes, peak);
  }

  // MAC: memorize the stream, then answer.
  MemorizeOptions memorize_options;
  memorize_options.bank_path = out_dir + "/bank.h5";
  memorize_options.doc_tokens = cfg.get_int("mac.doc_tokens");
  core::reset_peak_rss();
  MemorizeReport memorized = memorize(s, docs, memorize_options, comm, rt.mpi_comm_handle());
  const int64_t memorize_peak = job_peak(comm);
  BankReader bank(memorize_options.bank_path);
  const double storage = static_cast<double>(fs::file_size(memorize_options.bank_path)) / static_cast<double>(N);
  // The bank-size and retention curves answer as mac.aggregation says (hierarchical by default).
  const AnswerOptions answer_options = answer_options_from(cfg, *s.lm_tokenizer);
  auto mac_row = [&](const std::string& name, bool hierarchical, int64_t top_k, BankView view) {
    core::reset_peak_rss();
    AnswerOptions o = answer_options;
    o.hierarchical = hierarchical;
    o.top_k = top_k;
    o.view = view;
    AnswerResult r = answer_questions(s, bank, questions, o, comm);
    Row row{name, r.scores, memorized.seconds / static_cast<double>(N), 0, storage, r.gold_attention, r.gold_top1,
            r.gold_retrieved};
    row.peak_bytes = std::max(job_peak(comm), memorize_peak);
    std::string retrieval;
    if (r.gold_attention >= 0)
      retrieval = fmt::format("; attention on the gold document {:.3f} (uniform 1/{} = {:.4f}), the most on it for "
                              "{:.1f}% of questions",
                              r.gold_attention, N, 1.0 / static_cast<double>(N), 100 * r.gold_top1);
    if (r.gold_retrieved >= 0)
      retrieval = fmt::format("; the gold document retrieved for {:.1f}% of questions, first for {:.1f}%",
                              100 * r.gold_retrieved, 100 * r.gold_top1);
    spdlog::info("mac-eval: {:<28} F1 {:.3f} (held-out {:.3f}), {:.1f} s{}", name, row.scores.all.f1_mean(),
                 row.scores.heldout.f1_mean(), r.seconds, retrieval);
    rows.push_back(std::move(row));
  };
  // With a retriever (mac.retriever.top_k = K), the first rows aggregate the retrieved K; the
  // whole-bank rows follow for comparison.
  const int64_t K = answer_options.top_k, M = answer_options.group_size;
  if (K > 0) {
    mac_row(fmt::format("MAC (retriever top-{}, hierarchical, M={})", K, M), true, K, BankView::Full);
    mac_row(fmt::format("MAC (retriever top-{}, flat)", K), false, K, BankView::Full);
  }
  mac_row(fmt::format("MAC (hierarchical, M={})", M), true, 0, BankView::Full);
  mac_row("MAC (flat)", false, 0, BankView::Full);
  mac_row("MAC, gold document only", true, 0, BankView::GoldOnly);
  mac_row("MAC, gold document removed", true, K, BankView::GoldRemoved);

  // F1 against bank size: the first n documents as the bank, questions about them.
  nlohmann::json by_size = nlohmann::json::array();
  for (const auto& text : cfg.get_list("mac.eval.bank_sizes")) {
    const int64_t n = std::stoll(text);
    if (n < 1 || n > N) continue;
    AnswerOptions o = answer_options;
    o.bank_rows = n;
    o.progress = false;
    AnswerResult r = answer_questions(s, bank, pick_questions(docs, 0, n, max_questions), o, comm);
    by_size.push_back({{"bank_size", n}, {"scores", scores_json(r.scores)}, {"seconds", r.seconds}});
    spdlog::info("mac-eval: bank of {:>6} documents: F1 {:.3f}", n, r.scores.all.f1_mean());
  }
  // Retention: questions about the first 10% of the stream, as the rest arrives.
  nlohmann::json retention = nlohmann::json::array();
  const int64_t points = cfg.get_int("mac.eval.retention_points");
  const int64_t early = std::max<int64_t>(1, N / 10);
  const auto early_questions = pick_questions(docs, 0, early, max_questions);
  for (int64_t p = 1; p <= points; ++p) {
    const int64_t n = std::max(early, N * p / points);
    AnswerOptions o = answer_options;
    o.bank_rows = n;
    o.progress = false;
    AnswerResult r = answer_questions(s, bank, early_questions, o, comm);
    retention.push_back({{"documents_seen", n}, {"scores", scores_json(r.scores)}});
    spdlog::info("mac-eval: retention after {:>6} documents: F1 {:.3f} on the first {}", n, r.scores.all.f1_mean(),
                 early);
  }

  const std::string table = markdown(rows, N);
  if (rank0) {
    nlohmann::json results{{"documents", N}, {"questions", questions.size()}, {"world_size", comm.world_size()}};
    for (const auto& r : rows) {
      nlohmann::json row{{"method", r.name},
                         {"scores", scores_json(r.scores)},
                         {"adapt_seconds_per_doc", r.adapt_seconds_per_doc},
                         {"peak_bytes", r.peak_bytes},
                         {"storage_bytes_per_doc", r.storage_bytes_per_doc}};
      if (r.gold_attention >= 0) row["gold_attention"] = r.gold_attention;  // flat, whole bank
      if (r.gold_top1 >= 0) row["gold_top1"] = r.gold_top1;
      if (r.gold_retrieved >= 0) row["gold_retrieved"] = r.gold_retrieved;  // retriever rows
      results["rows"].push_back(std::move(row));
    }
    results["f1_vs_bank_size"] = by_size;
    results["retention"] = retention;
    results["retention_first_documents"] = early;
    std::ofstream(out_dir + "/results.json") << results.dump(2) << "\n";
    std::ofstream(out_dir + "/table.md") << table;
  }
  comm.barrier();
  return rank0 ? table : "";
}

}  // namespace engram::mac
