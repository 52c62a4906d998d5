// engram pretrain: trains the base LM from scratch (pretrain/pretrain.h) and prints how well it
// reads a context it was never trained on.
#include <iostream>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "app/command.h"
#include "dist/runtime.h"
#include "pretrain/pretrain.h"

namespace engram::app {
namespace {

void print_eval(const std::string& label, const eval::QaEvalResult& r) {
  std::cout << fmt::format("{:<34} {:>6} {:>8.3f} {:>8.3f}\n", label + " (training templates)",
                           r.training_templates.count, r.training_templates.exact_match_mean(),
                           r.training_templates.f1_mean());
  std::cout << fmt::format("{:<34} {:>6} {:>8.3f} {:>8.3f}\n", label + " (held-out paraphrases)", r.heldout.count,
                           r.heldout.exact_match_mean(), r.heldout.f1_mean());
}

int run_pretrain(CommandContext& ctx) {
  dist::Runtime& rt = *ctx.runtime;
  const pretrain::PretrainOptions options = pretrain::pretrain_options_from(ctx.config);
  const pretrain::PretrainReport r = pretrain::pretrain_base_lm(options, rt.comm(), rt.mpi_handle());
  if (r.stopped) {
    spdlog::warn("pretrain stopped at step {}; run the same command again to continue", r.training.last_step);
    return 0;
  }
  if (rt.comm().rank() != 0) return 0;
  const train::TrainResult& t = r.training;
  std::cout << fmt::format("\npretrained {} steps in {:.0f} s ({:.0f} tokens/s, {:.1f} GFLOP/s); final loss {:.4f}\n",
                           t.last_step, t.seconds, t.tokens_per_s, t.gflops, t.last_loss);
  if (r.in_context.all.count == 0) {
    std::cout << "wrote " << r.model_path << "\n";
    return 0;
  }
  std::cout << fmt::format("{:<34} {:>6} {:>8} {:>8}\n", "evaluation on valid entities", "n", "EM", "F1");
  print_eval("context in prompt", r.in_context);
  print_eval("closed book", r.closed_book);
  for (const auto& line : r.in_context.examples) std::cout << "  e.g. " << line << "\n";
  std::cout << "wrote " << r.model_path << " and " << r.report_path << "\n";
  return 0;
}

}  // namespace

Command pretrain_command() {
  Command c;
  c.name = "pretrain";
  c.summary = "train the base LM from scratch (data parallel, resumable)";
  c.description =
      "Trains a decoder (model.*) on pretrain.data with the trainer (train.*). A document with questions\n"
      "becomes one 'Context: <doc> Question: <q1> Answer: <a1>\\n Question: <q2> ...' sequence with the\n"
      "loss on the answers (each entity once, so answers can only be read, not remembered: the model\n"
      "learns to read); one without questions is plain language-modelling text. Checkpoints go to pretrain.out_dir/checkpoints (resumed automatically; SIGTERM or\n"
      "SIGUSR1 saves and exits 0), metrics to metrics.jsonl, the final model to model.h5 (with the\n"
      "tokenizer beside it). Then it evaluates on pretrain.eval_data: F1 with the context in the prompt\n"
      "(training templates and held-out paraphrases) and closed book.\n\n"
      "example: mpirun -np 2 engram pretrain --config configs/quickstart.yaml";
  c.run = run_pretrain;
  return c;
}

}  // namespace engram::app
