#pragma once
// Where a command's language model comes from: engram's own model file (--checkpoint, a
// model.h5 or a run folder holding one) or a Hugging Face folder (--hf), with its tokenizer.
#include <memory>
#include <string>

#include <boost/program_options.hpp>

#include "model/decoder.h"
#include "text/tokenizer.h"

namespace engram::app {

struct LanguageModel {
  model::Decoder decoder{nullptr};
  std::unique_ptr<text::Tokenizer> tokenizer;  // null when the source has none and none was given
  std::string source;                          // for messages: "runs/x/model.h5", "hf:gpt2-folder"
};

// Adds --checkpoint, --hf and --tokenizer to a command's options.
void add_model_source_options(boost::program_options::options_description& options);
// Exactly one of --checkpoint / --hf must be given (else UserError). --tokenizer overrides the
// source's own tokenizer. `need_tokenizer`: a missing tokenizer is a UserError.
LanguageModel load_language_model(const boost::program_options::variables_map& args, bool need_tokenizer);

}  // namespace engram::app
