// engram convert: Hugging Face folder <-> engram model file.
#include <filesystem>
#include <iostream>

#include "app/command.h"
#include "app/model_source.h"
#include "core/error.h"
#include "model/hf.h"
#include "model/model_file.h"

namespace po = boost::program_options;
namespace fs = std::filesystem;

namespace engram::app {
namespace {

// The HF model type that can express an architecture.
std::string hf_type_of(const model::DecoderConfig& c) {
  using C = model::DecoderConfig;
  if (c.positions == C::Positions::Learned && c.norm == C::Norm::Layer && c.block == C::Block::Sequential) return "gpt2";
  if (c.positions == C::Positions::Rope && c.norm == C::Norm::Rms && c.mlp == C::Mlp::SwiGlu) return "llama";
  core::fail("this architecture (positions {}, norm {}, block {}, mlp {}) has no Hugging Face equivalent "
             "(gpt2: learned/layer/sequential; llama: rope/rms/swiglu)",
             core::name_of(c.positions), core::name_of(c.norm), core::name_of(c.block), core::name_of(c.mlp));
}

int run_convert(CommandContext& ctx) {
  const auto& args = ctx.args;
  if (args.count("hf") && args.count("out")) {
    LanguageModel lm = load_language_model(args, false);
    const std::string out = args["out"].as<std::string>();
    if (!fs::path(out).parent_path().empty()) fs::create_directories(fs::path(out).parent_path());
    // A GPT-2 tokenizer folder stays where it is; its path goes into the model file.
    std::string tokenizer;
    if (lm.tokenizer) tokenizer = model::read_hf_config(args["hf"].as<std::string>()).tokenizer_path;
    model::save_model_file(out, lm.decoder, tokenizer, ctx.config.to_yaml());
    std::cout << fmt::format("wrote {} ({} parameters) from {}\n", out, lm.decoder->num_parameters(), lm.source);
    return 0;
  }
  if (args.count("checkpoint") && args.count("to-hf")) {
    LanguageModel lm = load_language_model(args, false);
    const std::string type = args.count("model-type") ? args["model-type"].as<std::string>()
                                                       : hf_type_of(lm.decoder->config());
    const std::string folder = args["to-hf"].as<std::string>();
    std::string tokenizer_source;
    if (args.count("tokenizer")) tokenizer_source = args["tokenizer"].as<std::string>();
    else tokenizer_source = model::load_model_file(args["checkpoint"].as<std::string>()).tokenizer;
    model::save_hf_decoder(lm.decoder, type, folder, tokenizer_source);
    std::cout << fmt::format("wrote {}/ ({} model, config.json + model.safetensors) from {}\n", folder, type, lm.source);
    return 0;
  }
  core::fail("engram convert: use --hf FOLDER --out model.h5, or --checkpoint model.h5 --to-hf FOLDER");
}

}  // namespace

Command convert_command() {
  Command c;
  c.name = "convert";
  c.summary = "convert between Hugging Face folders and engram model files";
  c.description =
      "engram convert --hf FOLDER --out model.h5          HF (gpt2, distilgpt2, llama) -> engram\n"
      "engram convert --checkpoint model.h5 --to-hf DIR   engram -> HF (config.json + model.safetensors,\n"
      "                                                     tokenizer files copied when known)\n"
      "The HF model type follows the architecture (gpt2 or llama); --model-type sets it.";
  c.add_options = [](po::options_description& o) {
    add_model_source_options(o);
    o.add_options()("out,o", po::value<std::string>(), "engram model file to write")(
        "to-hf", po::value<std::string>(), "Hugging Face folder to write")(
        "model-type", po::value<std::string>(), "HF model type for --to-hf: gpt2 | llama");
  };
  c.run = run_convert;
  c.needs_runtime = false;
  return c;
}

}  // namespace engram::app
