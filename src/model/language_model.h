#pragma once
// One way to load a language model with its tokenizer, for every command and method: an engram
// model file (model.h5 or a run folder holding one) or a Hugging Face folder, the tokenizer the
// source names (or another one given), checked against the model's vocabulary. Methods that keep
// the base LM frozen (MAC, LongMem's backbone, the evaluation's baselines) load it through here.
#include <memory>
#include <string>

#include "model/decoder.h"
#include "model/load.h"

namespace engram::text {
class Tokenizer;
}

namespace engram::model {

struct LanguageModel {
  Decoder decoder{nullptr};
  std::shared_ptr<text::Tokenizer> tokenizer;  // null only when none was required and none exists
  std::string source;                          // for messages: "runs/x/model.h5", "hf:gpt2-folder"
  std::string tokenizer_path;                  // the file or folder the tokenizer was read from
};

struct LanguageModelSource {
  std::string path;
  DecoderSource kind = DecoderSource::Auto;
  std::string tokenizer;          // overrides the tokenizer the source names ("" = the source's)
  std::string key = "the model";  // what to name in messages, e.g. "base.model" or "--checkpoint"
  bool require_tokenizer = true;
  bool frozen = false;  // no parameter requires grad
};

// In eval mode. A missing tokenizer (when required), or one with more ids than the model's
// vocabulary -> core::UserError naming the key and the source.
LanguageModel load_language_model(const LanguageModelSource& source);

}  // namespace engram::model
