// MAC commands: mac-train (meta-training), mac-memorize (build or extend a memory bank),
// mac-answer (questions against a bank, any world size) and mac-eval (engram eval with MAC and
// its baselines).
#include <fstream>
#include <iostream>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "app/command.h"
#include "core/error.h"
#include "data/options.h"
#include "dist/runtime.h"
#include "methods/mac/answer.h"
#include "methods/mac/bank.h"
#include "methods/mac/memorize.h"
#include "methods/mac/meta_train.h"
#include "methods/mac/options.h"
#include "methods/mac/system.h"
#include "methods/mac/validate.h"

namespace po = boost::program_options;

namespace engram::app {
namespace {

std::string trained_model(const CommandContext& ctx) {
  if (ctx.args.count("model")) return ctx.args["model"].as<std::string>();
  return mac::trained_model_path(ctx.config);
}

std::vector<data::Document> read_documents(const CommandContext& ctx, const std::vector<std::string>& files) {
  return data::read_files(files, data::read_options_from(ctx.config));
}

int run_mac_train(CommandContext& ctx) {
  mac::MetaTrainReport report = mac::meta_train(ctx.config, *ctx.runtime);
  if (report.stopped) {
    spdlog::warn("mac-train stopped at step {}; run the same command again to continue", report.steps);
    return 0;
  }
  if (ctx.runtime->comm().rank() == 0)
    std::cout << fmt::format("meta-trained {} steps in {:.0f} s; last loss {:.4f}; wrote {}\n", report.steps,
                             report.seconds, report.last_loss, report.model_path);
  return 0;
}

int run_memorize(CommandContext& ctx) {
  auto& comm = ctx.runtime->comm();
  if (!ctx.args.count("bank")) core::fail("mac-memorize: give the bank file with --bank FILE");
  std::vector<std::string> files = ctx.args.count("documents") ? ctx.args["documents"].as<std::vector<std::string>>()
                                                                : std::vector<std::string>{ctx.config.get_string("stream.test")};
  mac::MacSystem s = mac::load_mac_system(ctx.config, trained_model(ctx));
  auto docs = read_documents(ctx, files);
  mac::MemorizeOptions options;
  options.bank_path = ctx.args["bank"].as<std::string>();
  options.append = ctx.args.count("append") > 0;
  options.doc_tokens = ctx.config.get_int("mac.doc_tokens");
  options.dtype = ctx.args["dtype"].as<std::string>();
  if (options.dtype != "float32" && options.dtype != "bfloat16")
    core::fail("--dtype: expected float32 or bfloat16, got '{}'", options.dtype);
  mac::MemorizeReport r = mac::memorize(s, docs, options, comm, ctx.runtime->mpi_handle());
  if (comm.rank() == 0)
    std::cout << fmt::format("{}: {} documents offered, {} new ({} already stored or repeated); {} rows now; "
                             "{:.1f} s ({:.1f} documents/s encoding on {} ranks)\n",
                             options.bank_path, r.offered, r.added, r.offered - r.added, r.total_rows, r.seconds,
                             r.encode_seconds > 0 ? static_cast<double>(r.added) / r.encode_seconds : 0.0,
                             comm.world_size());
  return 0;
}

int run_answer(CommandContext& ctx) {
  auto& comm = ctx.runtime->comm();
  if (!ctx.args.count("bank") || !ctx.args.count("questions"))
    core::fail("mac-answer: give --bank FILE and --questions FILE (documents with qa, any supported format)");
  mac::MacSystem s = mac::load_mac_system(ctx.config, trained_model(ctx));
  mac::BankReader bank(ctx.args["bank"].as<std::string>());
  auto docs = read_documents(ctx, {ctx.args["questions"].as<std::string>()});
  // Gold rows where the bank holds the question's document (for the report only).
  std::map<std::string, int64_t> row_of;
  const auto ids = bank.doc_ids(0, bank.rows());
  for (size_t i = 0; i < ids.size(); ++i) row_of.emplace(ids[i], static_cast<int64_t>(i));
  std::vector<mac::BankQuestion> questions;
  for (const auto& doc : docs)
    for (const auto& qa : doc.qa) {
      auto it = row_of.find(doc.id);
      questions.push_back(mac::BankQuestion{&qa, it == row_of.end() ? -1 : it->second});
    }
  if (questions.empty()) core::fail("{}: no questions", ctx.args["questions"].as<std::string>());
  const auto& cfg = ctx.config;
  const mac::AnswerOptions options = mac::answer_options_from(cfg, *s.lm_tokenizer);
  mac::AnswerResult r = mac::answer_questions(s, bank, questions, options, comm);
  if (comm.rank() == 0) {
    const std::string out = ctx.args["out"].as<std::string>();
    std::ofstream file(out);
    if (!file) core::fail("--out: cannot write {}", out);
    for (size_t i = 0; i < questions.size(); ++i)
      file << nlohmann::json{{"question", questions[i].qa->question},
                             {"prediction", r.predictions[i]},
                             {"answers", questions[i].qa->answers}}
                  .dump()
           << "\n";
    std::cout << fmt::format("{} questions against {} documents ({}, {} ranks) in {:.1f} s: EM {:.3f} F1 {:.3f} "
                             "(held-out paraphrases F1 {:.3f}); predictions in {}\n",
                             questions.size(), bank.rows(),
                             (options.top_k > 0 ? fmt::format("retriever top-{}, ", options.top_k) : std::string()) +
                                 (options.hierarchical ? fmt::format("hierarchical M={}", options.group_size) : "flat"),
                             comm.world_size(), r.seconds, r.scores.all.prefix_exact_match_mean(),
                             r.scores.all.f1_mean(), r.scores.heldout.f1_mean(), out);
  }
  return 0;
}


}  // namespace

Command mac_train_command() {
  Command c;
  c.name = "mac-train";
  c.summary = "MAC: meta-train the amortizer, question encoder and aggregator over a frozen base LM";
  c.description =
      "Meta-trains MAC (mac.*) around the frozen base LM of base.model on stream.train with the trainer\n"
      "(mac.train.*): every micro-batch of mac.train.micro_batch (document, question, answer) rows is its own\n"
      "memory bank; the loss is the answer cross-entropy of the base LM under the prefix the aggregator\n"
      "makes. Backpropagation dropout: mac.backprop_ratio. Global banks: mac.global_bank. From\n"
      "mac.selection_from_step, mac.selection_weight trains the aggregator to select each question's\n"
      "document among the batch's (answering with mac.select). Checkpoints in mac.out_dir/checkpoints\n"
      "(resumed automatically; SIGTERM saves and exits 0); the trained model in mac.out_dir/mac.h5; with\n"
      "mac.eval_every, validation on held-out training documents and the best model in best.h5.\n\n"
      "example: mpirun -np 2 engram mac-train --config configs/quickstart.yaml";
  c.run = run_mac_train;
  return c;
}

Command mac_memorize_command() {
  Command c;
  c.name = "mac-memorize";
  c.summary = "MAC: encode documents into a memory bank (HDF5, written in parallel; --append)";
  c.description =
      "Encodes each document once with the trained amortizer (mac.out_dir/best.h5 or mac.h5, or --model)\n"
      "and writes the summaries into one HDF5 bank, each rank its share. --append adds to an existing bank\n"
      "in place (only the new rows are written);\n"
      "documents already in the bank (same id) or repeated are skipped. A bank made by another\n"
      "amortizer is refused.\n\n"
      "example: mpirun -np 2 engram mac-memorize --config configs/quickstart.yaml --documents stream.jsonl "
      "--bank runs/x/bank.h5";
  c.add_options = [](po::options_description& o) {
    o.add_options()("documents", po::value<std::vector<std::string>>()->composing(),
                    "document files, any supported format (repeatable; default stream.test)")(
        "bank", po::value<std::string>(), "the bank file to write")("append", "add to the existing bank")(
        "dtype", po::value<std::string>()->default_value("float32"), "storage type: float32 or bfloat16")(
        "model", po::value<std::string>(), "trained MAC model (default mac.out_dir/best.h5 when validation kept one, else mac.out_dir/mac.h5)");
  };
  c.run = run_memorize;
  return c;
}

Command mac_answer_command() {
  Command c;
  c.name = "mac-answer";
  c.summary = "MAC: answer questions from a memory bank (any world size)";
  c.description =
      "Answers every question of --questions (documents with qa, any supported format) from --bank:\n"
      "each rank aggregates its own share of the bank (mac.aggregation: hierarchical with groups of\n"
      "mac.group_size, or flat), the results are combined across ranks, and the frozen LM generates\n"
      "(decoding.*). Writes one JSON line per question to --out and prints EM/F1.\n\n"
      "example: mpirun -np 3 engram mac-answer --config configs/quickstart.yaml --bank runs/x/bank.h5 "
      "--questions q.jsonl";
  c.add_options = [](po::options_description& o) {
    o.add_options()("bank", po::value<std::string>(), "the memory bank")(
        "questions", po::value<std::string>(), "documents with questions (JSONL, CSV, SQuAD JSON)")(
        "out", po::value<std::string>()->default_value("answers.jsonl"), "predictions, one JSON line each")(
        "model", po::value<std::string>(), "trained MAC model (default mac.out_dir/best.h5 when validation kept one, else mac.out_dir/mac.h5)");
  };
  c.run = run_answer;
  return c;
}

Command mac_eval_command() {
  Command c;
  c.name = "mac-eval";
  c.summary = "MAC and its baselines on the test stream: engram eval --methods closed_book,context,ft,mac";
  c.description =
      "engram eval with the contenders closed_book, context, ft and mac (--methods chooses others):\n"
      "base LM closed book, context in prompt, FT(C), MAC through the retriever (with\n"
      "mac.retriever.top_k), hierarchical and flat, with only / without the gold document; F1 against\n"
      "documents absorbed and retention curves. engram eval --help says more.\n\n"
      "example: mpirun -np 2 engram mac-eval --config configs/quickstart.yaml";
  c.add_options = add_evaluation_options;
  c.run = [](CommandContext& ctx) { return run_evaluation_command(ctx, {"closed_book", "context", "ft", "mac"}); };
  return c;
}

}  // namespace engram::app
