// engram synth: writes the synthetic knowledge world as JSONL splits.
#include <iostream>

#include <spdlog/spdlog.h>

#include "app/command.h"
#include "core/progress.h"
#include "core/timer.h"
#include "data/synth.h"
#include "dist/runtime.h"

namespace engram::app {
namespace {

int run_synth(CommandContext& ctx) {
  data::SynthWorld world(data::synth_options_from(ctx.config));
  const std::string dir = ctx.config.get_string("synth.out_dir");
  const auto& o = world.options();
  spdlog::info("synth: {} entities (seed {}) -> {}", o.entities, o.seed, dir);
  core::Stopwatch clock;
  core::Progress progress("synth", o.entities, true, 2.0, "entities");
  auto summary = data::write_world(world, dir, [&](int64_t done, int64_t) { progress.update(done); });
  std::cout << fmt::format(
      "wrote {}/: pretrain {} train {} valid {} test {} documents, {} questions, corpus.txt {:.1f} MB{}{} in {:.1f} s\n",
      dir, summary.documents[0], summary.documents[1], summary.documents[2], summary.documents[3], summary.questions,
      summary.corpus_bytes / 1e6,
      summary.long_documents ? fmt::format(", long_test {} documents", summary.long_documents) : "",
      summary.long_train_documents ? fmt::format(", long_train {} documents", summary.long_train_documents) : "",
      clock.seconds());
  return 0;
}

}  // namespace

Command synth_command() {
  Command c;
  c.name = "synth";
  c.summary = "write the synthetic knowledge world (JSONL splits, tokenizer corpus)";
  c.description =
      "Makes a world of fictional people, companies and ships with attributes drawn from disjoint value\n"
      "pools, and writes, into synth.out_dir: pretrain/train/valid/test.jsonl (split by entity; valid and\n"
      "test questions include held-out paraphrases, marked \"heldout\": true), corpus.txt (text for\n"
      "tokenizer training, from the pretrain and train splits only), world.json (what was made), and with\n"
      "synth.long_documents, long_test.jsonl (facts early, filler after, questions at the end).\n"
      "Deterministic from run.seed; written as a stream, so 1,000,000 entities need no more memory than 100.\n\n"
      "example: engram synth --config configs/quickstart.yaml --set synth.entities=10000";
  c.run = run_synth;
  c.needs_runtime = false;
  return c;
}

}  // namespace engram::app
