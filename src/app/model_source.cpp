#include "app/model_source.h"

#include "core/error.h"

namespace po = boost::program_options;

namespace engram::app {

void add_model_source_options(po::options_description& options) {
  options.add_options()("checkpoint", po::value<std::string>(), "engram model file (model.h5) or a run folder holding one")(
      "hf", po::value<std::string>(), "Hugging Face folder: config.json + model.safetensors (gpt2, llama)")(
      "tokenizer", po::value<std::string>(), "tokenizer to use instead of the model's own (.model or GPT-2 folder)");
}

LanguageModel load_language_model(const po::variables_map& args, bool need_tokenizer) {
  const bool checkpoint = args.count("checkpoint") > 0, hf = args.count("hf") > 0;
  if (checkpoint == hf) core::fail("give the model with exactly one of --checkpoint FILE|DIR or --hf FOLDER");
  model::LanguageModelSource source;
  source.path = args[checkpoint ? "checkpoint" : "hf"].as<std::string>();
  source.kind = checkpoint ? model::DecoderSource::Engram : model::DecoderSource::HuggingFace;
  source.key = checkpoint ? "--checkpoint" : "--hf";
  if (args.count("tokenizer")) source.tokenizer = args["tokenizer"].as<std::string>();
  source.require_tokenizer = need_tokenizer;
  return model::load_language_model(source);
}

}  // namespace engram::app
