#include "app/model_source.h"

#include "core/error.h"
#include "model/load.h"

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
  model::LoadedDecoder loaded =
      checkpoint ? model::load_decoder(args["checkpoint"].as<std::string>(), model::DecoderSource::Engram)
                 : model::load_decoder(args["hf"].as<std::string>(), model::DecoderSource::HuggingFace);
  LanguageModel lm;
  lm.decoder = loaded.decoder;
  lm.source = loaded.source;
  std::string tokenizer_path = loaded.tokenizer_path;
  if (args.count("tokenizer")) tokenizer_path = args["tokenizer"].as<std::string>();
  if (!tokenizer_path.empty()) lm.tokenizer = text::load_tokenizer(tokenizer_path);
  else if (need_tokenizer)
    core::fail("{} names no tokenizer: pass --tokenizer (a SentencePiece .model or a folder with vocab.json + merges.txt)",
               lm.source);
  if (lm.tokenizer && lm.tokenizer->vocab_size() > lm.decoder->config().vocab_size)
    core::fail("the tokenizer has {} ids but {} has a vocabulary of {}", lm.tokenizer->vocab_size(), lm.source,
               lm.decoder->config().vocab_size);
  lm.decoder->eval();
  return lm;
}

}  // namespace engram::app
