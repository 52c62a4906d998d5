// engram generate: continues prompts with a trained or imported language model.
#include <fstream>
#include <iostream>

#include <torch/torch.h>

#include "app/command.h"
#include "app/model_source.h"
#include "core/error.h"
#include "model/generate.h"
#include "text/tokenizer.h"

namespace po = boost::program_options;

namespace engram::app {
namespace {

int run_generate(CommandContext& ctx) {
  const auto& args = ctx.args;
  std::vector<std::string> prompts;
  if (args.count("prompt")) prompts = args["prompt"].as<std::vector<std::string>>();
  if (args.count("prompts-file")) {
    const std::string path = args["prompts-file"].as<std::string>();
    std::ifstream in(path);
    if (!in) core::fail("--prompts-file '{}': cannot open", path);
    for (std::string line; std::getline(in, line);)
      if (!line.empty()) prompts.push_back(line);
  }
  if (prompts.empty()) core::fail("engram generate: give --prompt TEXT (repeatable) or --prompts-file FILE");

  LanguageModel lm = load_language_model(args, true);
  model::GenerateOptions options;
  options.max_new_tokens = args["max-new-tokens"].as<int64_t>();
  options.strategy = core::parse_enum<model::GenerateOptions::Strategy>(args["strategy"].as<std::string>(), "--strategy");
  options.num_beams = args["beams"].as<int>();
  options.num_beam_groups = args["groups"].as<int>();
  options.diversity_penalty = args["diversity"].as<double>();
  using Strategy = model::GenerateOptions::Strategy;
  const bool beams = options.strategy == Strategy::Beam || options.strategy == Strategy::DiverseBeam;
  if (beams && options.num_beams == 1) options.num_beams = 4;
  options.temperature = args["temperature"].as<double>();
  options.seed = args["seed"].as<uint64_t>();
  options.eos_id = lm.tokenizer->eos_id();
  options.pad_id = std::max(0, lm.tokenizer->pad_id());
  options.validate();

  std::vector<std::vector<int32_t>> ids;
  for (const auto& p : prompts) {
    ids.push_back(lm.tokenizer->encode(p));
    if (ids.back().empty()) core::fail("prompt '{}' encodes to no tokens", p);
  }
  auto outputs = model::generate(lm.decoder, ids, options);
  for (size_t k = 0; k < prompts.size(); ++k) {
    std::string text = lm.tokenizer->decode(outputs[k]);
    if (args.count("only-new")) std::cout << text << "\n";
    else std::cout << prompts[k] << text << "\n";
  }
  return 0;
}

}  // namespace

Command generate_command() {
  Command c;
  c.name = "generate";
  c.summary = "continue prompts with a model (greedy, beam, diverse group beam)";
  c.description =
      "Loads a model (--checkpoint: engram model file or run folder; --hf: Hugging Face folder) and\n"
      "continues each prompt: greedy by default, --strategy beam or diverse_beam (--beams, --groups,\n"
      "--diversity), or sample (--temperature, --seed). Prompts of different lengths run as one batch. Prints prompt + continuation, one\n"
      "per line (--only-new: the continuation only).\n\n"
      "examples:\n"
      "  engram generate --checkpoint runs/quickstart/base --prompt \"Context: ... Question: ... Answer:\"\n"
      "  engram generate --hf path/to/gpt2-folder --prompt \"Hello\" --strategy beam --beams 4";
  c.add_options = [](po::options_description& o) {
    add_model_source_options(o);
    o.add_options()("prompt,p", po::value<std::vector<std::string>>()->composing(), "a prompt (repeatable)")(
        "prompts-file", po::value<std::string>(), "a file with one prompt per line")(
        "max-new-tokens,n", po::value<int64_t>()->default_value(16), "tokens to generate at most")(
        "strategy", po::value<std::string>()->default_value("greedy"), "greedy | beam | diverse_beam | sample")(
        "temperature", po::value<double>()->default_value(1.0), "sample: softmax(logits / temperature)")(
        "seed", po::value<uint64_t>()->default_value(0), "sample: seed of the draws")(
        "beams", po::value<int>()->default_value(1), "beams (beam and diverse_beam; default 4 there)")(
        "groups", po::value<int>()->default_value(1), "beam groups (diverse_beam)")(
        "diversity", po::value<double>()->default_value(0.0), "diversity penalty between groups (diverse_beam)")(
        "only-new", "print only the generated continuation");
  };
  c.run = run_generate;
  c.needs_runtime = false;
  return c;
}

}  // namespace engram::app
