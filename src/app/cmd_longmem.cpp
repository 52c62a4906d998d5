// engram longmem-train and longmem-ppl: LongMem's SideNet over the frozen base LM with a long-term
// memory (specs/longmem.md), trained on a stream and measured on long text.
#include <filesystem>
#include <fstream>
#include <iostream>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "app/command.h"
#include "core/error.h"
#include "core/timer.h"
#include "dist/runtime.h"
#include "eval/options.h"
#include "eval/scores_json.h"
#include "io/h5file.h"
#include "methods/longmem/evaluation.h"
#include "methods/longmem/system.h"
#include "methods/longmem/training.h"
#include "model/language_model.h"
#include "text/tokenizer.h"

namespace fs = std::filesystem;
namespace po = boost::program_options;

namespace engram::app {
namespace {

void print_recall(const longmem::RecallReport& r) {
  std::cout << fmt::format("beyond-window recall on {} long documents (memory held {:.0f} tokens on average)\n",
                           r.documents, r.memory_tokens)
            << fmt::format("{:<28} {:>6} {:>8} {:>8} {:>8}\n", "reader", "n", "F1", "held-out", "EM")
            << fmt::format("{:<28} {:>6} {:>8.3f} {:>8.3f} {:>8.3f}\n", "backbone, window alone", r.backbone.all.count,
                           r.backbone.all.f1_mean(), r.backbone.heldout.f1_mean(), r.backbone.all.exact_match_mean())
            << fmt::format("{:<28} {:>6} {:>8.3f} {:>8.3f} {:>8.3f}\n", "LongMem, window + memory", r.longmem.all.count,
                           r.longmem.all.f1_mean(), r.longmem.heldout.f1_mean(), r.longmem.all.exact_match_mean())
            << fmt::format("retrieval hit rate (chunks from the fact part): {:.3f}; per head {:.3f}\n", r.hit_rate,
                           fmt::join(r.head_hit_rates, " "));
}

nlohmann::json recall_json(const longmem::RecallReport& r) {
  return {{"documents", r.documents},
          {"memory_tokens", r.memory_tokens},
          {"hit_rate", r.hit_rate},
          {"head_hit_rates", r.head_hit_rates},
          {"backbone", eval::scores_json(r.backbone)},
          {"longmem", eval::scores_json(r.longmem)}};
}

int run_longmem_train(CommandContext& ctx) {
  dist::Runtime& rt = *ctx.runtime;
  const longmem::LongMemOptions options = longmem::longmem_options_from(ctx.config);
  const longmem::TrainReport r = longmem::train_longmem(options, rt.comm(), rt.mpi_handle());
  if (r.stopped) {
    spdlog::warn("longmem-train stopped at step {}; run the same command again to continue", r.training.last_step);
    return 0;
  }
  if (rt.comm().rank() != 0) return 0;
  const train::TrainResult& t = r.training;
  std::cout << fmt::format("\ntrained the SideNet {} steps in {:.0f} s ({:.0f} tokens/s); final loss {:.4f}\n",
                           t.last_step, t.seconds, t.tokens_per_s, t.last_loss);
  if (!r.memory_share.empty())
    std::cout << fmt::format("memory share sigma(g) per head: {:.3f}\n", fmt::join(r.memory_share, " "));
  print_recall(r.recall);
  const nlohmann::json report{{"steps", t.last_step},          {"seconds", t.seconds},
                              {"tokens_per_s", t.tokens_per_s}, {"final_loss", t.last_loss},
                              {"stream_tokens", r.stream_tokens}, {"steps_per_epoch", r.steps_per_epoch},
                              {"memory_share", r.memory_share},
                              {"recall", recall_json(r.recall)}};
  std::ofstream(options.out_dir + "/eval.json") << report.dump(2) << "\n";
  std::cout << "wrote " << r.sidenet_path << " and " << options.out_dir << "/eval.json\n";
  return 0;
}

// The LongMem of longmem.out_dir's sidenet.h5 (or --sidenet) over base.model.
longmem::LongMem load_system(const std::string& path, const config::Config& config, model::LanguageModel& base) {
  base = eval::load_base_model(config.get_string("base.model"));
  if (!fs::exists(path)) core::fail("{}: no SideNet here; train one with engram longmem-train (or pass --sidenet)", path);
  io::H5File file(path, io::H5File::Mode::Read);
  return longmem::LongMem::load(base.decoder, file, "/sidenet");
}

int run_longmem_ppl(CommandContext& ctx) {
  dist::Runtime& rt = *ctx.runtime;
  const longmem::LongMemOptions options = longmem::longmem_options_from(ctx.config);
  const std::string sidenet = ctx.args.count("sidenet") ? ctx.args["sidenet"].as<std::string>()
                                                        : options.out_dir + "/sidenet.h5";
  if (!ctx.args.count("text")) core::fail("longmem-ppl: --text is required (a .txt file or documents)");
  model::LanguageModel base;
  longmem::LongMem system = load_system(sidenet, ctx.config, base);
  system.set_memory_search(options.search);
  std::vector<std::vector<int32_t>> documents;
  const auto docs = longmem::read_documents(ctx.args["text"].as<std::vector<std::string>>(), options.read);
  const int64_t split = ctx.args["document-segments"].as<int64_t>();
  for (const auto& doc : docs) {
    const auto ids = base.tokenizer->encode(doc.text);
    if (split <= 0) {
      documents.push_back(ids);
      continue;
    }
    const auto size = static_cast<size_t>(split * options.seq_len + 1);  // one text cut into documents
    for (size_t start = 0; start + size <= ids.size(); start += size - 1)
      documents.emplace_back(ids.begin() + static_cast<std::ptrdiff_t>(start),
                             ids.begin() + static_cast<std::ptrdiff_t>(start + size));
  }
  core::Stopwatch clock;
  const auto rows = longmem::segment_perplexity(system, documents, options.seq_len, rt.comm());
  if (rt.comm().rank() != 0) return 0;
  std::cout << fmt::format("segment perplexity, {} documents, segments of {} tokens ({:.0f} s)\n", documents.size(),
                           options.seq_len, clock.seconds())
            << fmt::format("{:>8} {:>9} {:>10} {:>12} {:>10} {:>14}\n", "segment", "tokens", "backbone",
                           "side no mem", "LongMem", "wrong memory");
  nlohmann::json json = nlohmann::json::array();
  for (const auto& row : rows) {
    std::cout << fmt::format("{:>8} {:>9} {:>10.3f} {:>12.3f} {:>10.3f} {:>14.3f}\n", row.segment, row.tokens,
                             row.perplexity(0), row.perplexity(1), row.perplexity(2), row.perplexity(3));
    nlohmann::json j{{"segment", row.segment}, {"tokens", row.tokens}};
    for (int r = 0; r < 4; ++r) j[longmem::kPerplexityReaders[r]] = row.perplexity(r);
    json.push_back(j);
  }
  const std::string out = ctx.args.count("out") ? ctx.args["out"].as<std::string>() : options.out_dir + "/ppl.json";
  fs::create_directories(fs::path(out).parent_path().empty() ? "." : fs::path(out).parent_path());
  std::ofstream(out) << nlohmann::json{{"sidenet", sidenet}, {"segment_tokens", options.seq_len}, {"rows", json}}.dump(2)
                     << "\n";
  std::cout << "wrote " << out << "\n";
  return 0;
}

}  // namespace

Command longmem_train_command() {
  Command c;
  c.name = "longmem-train";
  c.summary = "LongMem: train the residual SideNet over the frozen base LM, reading a long-term memory";
  c.description =
      "Trains LongMem's SideNet (longmem.*, specs/longmem.md) over the frozen base LM (base.model): side\n"
      "layer i starts as backbone block r i + r - 1 (r = longmem.reduction), reads the backbone's hidden\n"
      "states through the cross-network residual, and its memory layer reads the chunks of earlier\n"
      "segments that the backbone's layer longmem.memory_layer wrote (retrieve before write; one memory\n"
      "per rank, FIFO at longmem.memory_tokens, cleared each epoch). longmem.train_data becomes one token\n"
      "stream in contiguous rows (longmem.train.micro_batch per rank). Checkpoints in\n"
      "longmem.out_dir/checkpoints (with each rank's memory; resumed automatically; SIGTERM or SIGUSR1\n"
      "saves and exits 0). Writes longmem.out_dir/sidenet.h5, then measures the beyond-window recall on\n"
      "longmem.recall_data: the backbone with its window alone against LongMem, and the retrieval hit rate\n"
      "(eval.json).\n\n"
      "example: mpirun -np 2 engram longmem-train --config configs/quickstart.yaml";
  c.run = run_longmem_train;
  return c;
}

Command longmem_ppl_command() {
  Command c;
  c.name = "longmem-ppl";
  c.summary = "LongMem: perplexity per segment of long text (backbone / SideNet / LongMem / wrong memory)";
  c.description =
      "Reads each document of --text (.txt: the whole file is one text; else any dataset format) in\n"
      "segments of longmem.seq_len tokens and prints, per segment index, the perplexity of the backbone\n"
      "(the segment alone), the SideNet with its memory path off, LongMem (memory of the document's\n"
      "earlier segments) and LongMem reading another document's memory. --document-segments N cuts each\n"
      "text into documents of N segments (one long book becomes many documents). Writes --out (default\n"
      "longmem.out_dir/ppl.json).\n\n"
      "example: engram longmem-ppl --config configs/quickstart.yaml --text runs/quickstart/data/long_test.jsonl";
  c.add_options = [](po::options_description& o) {
    o.add_options()("text", po::value<std::vector<std::string>>()->composing(), "long text: .txt or documents")(
        "sidenet", po::value<std::string>(), "the SideNet (default longmem.out_dir/sidenet.h5)")(
        "document-segments", po::value<int64_t>()->default_value(0),
        "cut each text into documents of this many segments (0: each document whole)")(
        "out", po::value<std::string>(), "the table as JSON (default longmem.out_dir/ppl.json)");
  };
  c.run = run_longmem_ppl;
  return c;
}

}  // namespace engram::app
