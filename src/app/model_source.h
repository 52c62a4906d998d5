#pragma once
// Where a command's language model comes from: engram's own model file (--checkpoint, a
// model.h5 or a run folder holding one) or a Hugging Face folder (--hf), with its tokenizer.
// Loading itself is model::load_language_model, shared with the methods.
#include <boost/program_options.hpp>

#include "model/language_model.h"

namespace engram::app {

using model::LanguageModel;

// Adds --checkpoint, --hf and --tokenizer to a command's options.
void add_model_source_options(boost::program_options::options_description& options);
// Exactly one of --checkpoint / --hf must be given (else UserError). --tokenizer overrides the
// source's own tokenizer. `need_tokenizer`: a missing tokenizer is a UserError.
LanguageModel load_language_model(const boost::program_options::variables_map& args, bool need_tokenizer);

}  // namespace engram::app
