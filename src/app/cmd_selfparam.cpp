// SELF-PARAM commands: inject (documents into a model's own weights, written back as a model with
// no extra parameter) and selfparam-eval (the single, batch and sequential protocols).
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include "app/command.h"
#include "app/model_source.h"
#include "core/error.h"
#include "core/timer.h"
#include "data/options.h"
#include "data/readers.h"
#include "dist/runtime.h"
#include "eval/options.h"
#include "eval/stream.h"
#include "model/copy.h"
#include "methods/selfparam/experiments.h"
#include "methods/selfparam/injector.h"
#include "methods/selfparam/resume.h"
#include "methods/selfparam/unrelated.h"
#include "model/hf.h"
#include "model/model_file.h"
#include "text/tokenizer.h"
#include "train/checkpoint.h"
#include "train/training_state.h"

namespace po = boost::program_options;
namespace fs = std::filesystem;

namespace engram::app {
namespace {

// --checkpoint / --hf when given, else base.model.
LanguageModel injected_base(const CommandContext& ctx) {
  if (ctx.args.count("checkpoint") || ctx.args.count("hf")) return load_language_model(ctx.args, true);
  return eval::load_base_model(ctx.config.get_string("base.model"));
}

// A stop signal ended the injection: it was saved; the same command continues it.
int stopped_exit(dist::Communicator& comm, const selfparam::InjectionCheckpoints& checkpoints) {
  if (comm.rank() == 0)
    std::cout << fmt::format("inject: stopped by a signal and saved in {}; run the same command again to continue\n",
                             checkpoints.dir());
  comm.barrier();
  return 0;
}

// The injected model where `generate --checkpoint` (engram) or `--hf` (Hugging Face) reads it.
void write_model(model::Decoder& decoder, const LanguageModel& lm, const CommandContext& ctx, const std::string& out) {
  fs::create_directories(out);
  if (ctx.args.count("hf")) {
    const std::string folder = ctx.args["hf"].as<std::string>();
    const std::string type = model::read_hf_config(folder).model_type;
    const fs::path tokenizer(lm.tokenizer_path);
    if (fs::is_directory(tokenizer) || tokenizer.filename() == "tokenizer.model") {
      model::save_hf_decoder(decoder, type, out, lm.tokenizer_path);
    } else {  // a SentencePiece file given with --tokenizer: the folder's tokenizer.model
      model::save_hf_decoder(decoder, type, out);
      fs::copy_file(tokenizer, out + "/tokenizer.model", fs::copy_options::overwrite_existing);
    }
    return;
  }
  const std::string tokenizer = text::copy_tokenizer_into(lm.tokenizer_path, out);
  model::save_model_file(out + "/model.h5", decoder, tokenizer, ctx.config.to_yaml());
}

// Target-sentence counts over the job's parts.
struct TargetCounts {
  int64_t sampled = 0, dropped = 0, empty = 0;
  void add(const selfparam::TargetSet& t) { sampled += t.sampled, dropped += t.dropped_test, empty += t.empty_documents; }
};

// A part's targets: kept by the run that was stopped, or sampled now (and kept for a resume).
selfparam::TargetSet part_targets(selfparam::Injector& injector, model::Decoder& reader,
                                  const std::vector<data::Document>& part_docs, int64_t part,
                                  selfparam::InjectionCheckpoints& checkpoints, dist::Communicator& comm) {
  if (auto kept = checkpoints.kept_targets(part)) return std::move(*kept);
  selfparam::TargetSet targets = injector.targets(reader, part_docs, comm);
  checkpoints.keep_targets(part, targets);
  return targets;
}

// The merged model between two parts of a sequential run, the CPU generator and term (C)'s cursor.
void save_between_parts(selfparam::InjectionCheckpoints& checkpoints, model::Decoder& student,
                        selfparam::Injector& injector, int64_t parts_done, int64_t job_steps) {
  train::CheckpointData data;
  data.model = model::named_weights(student);
  data.rng = train::cpu_generator().get_state();
  const auto* unrelated = injector.unrelated_text();
  data.rank_state["unrelated_given"] = at::full({1}, unrelated ? unrelated->given() : 0, at::kLong);
  checkpoints.save({parts_done, 0, job_steps}, std::move(data));
}

// The same, loaded into a fresh run.
void resume_between_parts(const train::CheckpointData& saved, const std::string& file, model::Decoder& student,
                          selfparam::Injector& injector) {
  train::load_parameters(model::named_weights(student), saved, file);
  train::cpu_generator().set_state(saved.rng);
  if (auto* unrelated = injector.unrelated_text())
    unrelated->skip_to(saved.rank_state.at("unrelated_given").item<int64_t>());
}

int run_inject(CommandContext& ctx) {
  auto& comm = ctx.runtime->comm();
  if (!ctx.args.count("documents")) core::fail("inject: give the documents to inject with --documents FILE");
  if (!ctx.args.count("out")) core::fail("inject: give the output folder with --out DIR");
  const std::string out = ctx.args["out"].as<std::string>();
  const std::string mode = ctx.args["mode"].as<std::string>();
  if (mode != "batch" && mode != "sequential") core::fail("--mode: expected batch or sequential, got '{}'", mode);
  const bool sequential = mode == "sequential";
  auto docs = data::read_files(ctx.args["documents"].as<std::vector<std::string>>(), data::read_options_from(ctx.config));
  if (docs.empty()) core::fail("inject: --documents holds no document");
  LanguageModel lm = injected_base(ctx);
  selfparam::SelfParamOptions options = selfparam::selfparam_options_from(ctx.config);
  selfparam::Injector injector(lm, options, selfparam::questions_of(docs), comm.rank(), comm.world_size());
  model::Decoder student = model::trainable_copy(lm.decoder);
  selfparam::InjectionCheckpoints checkpoints(out + "/checkpoints", comm, ctx.runtime->mpi_handle(), options.save_every,
                                              ctx.config.to_yaml());
  const auto at = checkpoints.resumed_at();
  if (const auto* saved = checkpoints.between_parts())
    resume_between_parts(*saved, checkpoints.resumed_file(), student, injector);
  core::Stopwatch clock;  // sampling the targets and injecting
  int64_t steps = 0, job_steps = at.job_step - at.step, cache_bytes = 0;
  double injecting = 0;  // seconds inside the injections (the rest: sampling targets)
  TargetCounts counts;
  const size_t part_size = sequential ? 1 : docs.size();
  for (size_t first = 0, part = 0; first < docs.size(); first += part_size, ++part) {
    const std::vector<data::Document> part_docs(docs.begin() + static_cast<std::ptrdiff_t>(first),
                                                docs.begin() + static_cast<std::ptrdiff_t>(first + part_size));
    if (static_cast<int64_t>(part) < at.part) {  // injected before the resume: its counts only
      if (auto kept = checkpoints.kept_targets(static_cast<int64_t>(part))) counts.add(*kept);
      continue;
    }
    selfparam::TargetSet targets = part_targets(injector, student, part_docs, static_cast<int64_t>(part), checkpoints, comm);
    counts.add(targets);
    const selfparam::InjectionPlace place{&checkpoints, static_cast<int64_t>(part), job_steps};
    auto r = injector.inject(student, selfparam::texts_of(part_docs), targets, selfparam::Objective::Distill, comm,
                             nullptr, first, place);
    steps += r.steps;
    job_steps += r.rounds;
    injecting += r.seconds;
    cache_bytes = std::max(cache_bytes, r.teacher_cache_bytes);
    if (r.stopped) return stopped_exit(comm, checkpoints);
    const bool more = first + part_size < docs.size();
    if (more && checkpoints.save_due(job_steps)) {
      save_between_parts(checkpoints, student, injector, static_cast<int64_t>(part) + 1, job_steps);
      if (checkpoints.stop_requested()) return stopped_exit(comm, checkpoints);
    }
  }
  nlohmann::json report = {{"documents", docs.size()}, {"mode", mode}, {"seconds", clock.seconds()},
                           {"injection_seconds", injecting}, {"optimizer_steps", steps},
                           {"teacher_cache_bytes", cache_bytes}, {"targets_sampled", counts.sampled},
                           {"targets_dropped_as_test_questions", counts.dropped},
                           {"documents_without_targets", counts.empty},
                           {"resumed_from", checkpoints.resumed_file()},
                           {"extra_parameters", student->num_parameters() - lm.decoder->num_parameters()}};
  if (counts.empty > 0 && comm.rank() == 0)
    spdlog::warn("inject: for {} of {} documents the model wrote no usable \"Question: .. Answer: ..\" line; nothing "
                 "was distilled from them (a model that was not taught the reading format: selfparam.targets generator)",
                 counts.empty, docs.size());
  if (comm.rank() == 0) {
    write_model(student, lm, ctx, out);
    std::ofstream(out + "/inject.json") << report.dump(2) << "\n";
    fs::remove_all(checkpoints.dir());  // the model is written: a rerun starts afresh
    std::cout << fmt::format("injected {} documents in {:.1f} s ({} optimizer steps); wrote {}\n", docs.size(),
                             report["seconds"].get<double>(), steps, out);
  }
  comm.barrier();
  return 0;
}

// "single,batch" -> {single, batch}; an unknown name -> core::UserError naming --experiments.
std::set<std::string> experiments_of(const std::string& list) {
  std::set<std::string> out;
  std::stringstream in(list);
  for (std::string name; std::getline(in, name, ',');) {
    if (name != "single" && name != "batch" && name != "sequential")
      core::fail("--experiments: expected single, batch or sequential (comma-separated), got '{}'", name);
    out.insert(name);
  }
  return out;
}

int run_selfparam_eval(CommandContext& ctx) {
  auto& comm = ctx.runtime->comm();
  const eval::EvalOptions eval_options = eval::eval_options_from(ctx.config);
  selfparam::SelfParamOptions options = selfparam::selfparam_options_from(ctx.config);
  LanguageModel base = eval::load_base_model(eval_options.base_model);
  eval::Stream stream = eval::make_stream(data::read_all(eval_options.test_stream), eval_options.test_stream, 0, 0);
  std::set<std::string> excluded = selfparam::questions_of(stream.documents);
  selfparam::Injector injector(base, options, excluded, comm.rank(), comm.world_size());
  selfparam::ExperimentContext ectx{base, stream, injector, comm, eval_options.decoding.max_new_tokens};
  const std::set<std::string> wanted = experiments_of(ctx.args["experiments"].as<std::string>());
  nlohmann::json results = {{"test_stream", stream.source}, {"targets", injector.targets_label()}};
  if (wanted.count("single")) results["single"] = selfparam::run_single(ectx, options.single_documents);
  if (wanted.count("batch"))
    results["batch"] = selfparam::run_batch(ectx, options.batch_documents, options.locality_documents);
  if (wanted.count("sequential")) {
    results["sequential"] = selfparam::run_sequential(ectx, options.sequential_documents);
    selfparam::SelfParamOptions without = options;
    without.unrelated = false;
    selfparam::Injector plain(base, without, excluded, comm.rank(), comm.world_size());
    selfparam::ExperimentContext pctx{base, stream, plain, comm, eval_options.decoding.max_new_tokens};
    results["sequential_without_unrelated"] = selfparam::run_sequential(pctx, options.sequential_documents);
  }
  if (comm.rank() == 0) {
    fs::create_directories(options.out_dir);
    std::ofstream(options.out_dir + "/results.json") << results.dump(2) << "\n";
    std::cout << results.dump(2) << "\n";
  }
  comm.barrier();
  return 0;
}

}  // namespace

Command inject_command() {
  Command c;
  c.name = "inject";
  c.summary = "SELF-PARAM: distil documents into a model's own weights (no extra parameter)";
  c.description =
      "Injects --documents into the base LM (base.model, or --checkpoint / --hf) by SELF-PARAM's KL\n"
      "distillation (selfparam.*): target sentences sampled by the model reading each document (a target\n"
      "asking one of the documents' own questions is dropped), three terms per target, LoRA merged into\n"
      "the weights afterwards. --mode batch: all documents in one injection; sequential: one after\n"
      "another, each with the current model as teacher. Targets are split across ranks. Writes --out:\n"
      "an engram model folder (model.h5 + tokenizer), or with --hf a Hugging Face folder of the same\n"
      "type, and inject.json. SIGTERM/SIGUSR1 (and every selfparam.save_every steps) save in\n"
      "--out/checkpoints; the same command then continues to the same model.\n\n"
      "example: mpirun -np 2 engram inject --config configs/quickstart.yaml --documents stream.jsonl --out runs/x/injected";
  c.add_options = [](po::options_description& o) {
    add_model_source_options(o);
    o.add_options()("documents", po::value<std::vector<std::string>>()->composing(),
                    "documents to inject, any supported format (repeatable)")(
        "out", po::value<std::string>(), "output folder")(
        "mode", po::value<std::string>()->default_value("batch"), "batch | sequential");
  };
  c.run = run_inject;
  return c;
}

Command selfparam_eval_command() {
  Command c;
  c.name = "selfparam-eval";
  c.summary = "SELF-PARAM's single, batch and sequential protocols on the test stream";
  c.description =
      "On stream.test: single injection (selfparam.single_documents, each into a fresh model, beside FT(S),\n"
      "FT(C), closed book and context in prompt on the same questions), batch injection\n"
      "(selfparam.batch_documents together, with locality on the next selfparam.locality_documents) and\n"
      "sequential injection (selfparam.sequential_documents in turn: F1[i][j] as \"i-j\", with and without\n"
      "term (C)). Writes selfparam.out_dir/results.json; tools/plot_selfparam.py draws the matrix.\n\n"
      "example: mpirun -np 2 engram selfparam-eval --config configs/quickstart.yaml --experiments single,sequential";
  c.add_options = [](po::options_description& o) {
    o.add_options()("experiments", po::value<std::string>()->default_value("single,batch,sequential"),
                    "which protocols, comma-separated");
  };
  c.run = run_selfparam_eval;
  return c;
}

}  // namespace engram::app
