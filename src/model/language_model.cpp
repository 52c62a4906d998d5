#include "model/language_model.h"

#include "core/error.h"
#include "text/tokenizer.h"

namespace engram::model {

LanguageModel load_language_model(const LanguageModelSource& source) {
  LoadedDecoder loaded = load_decoder(source.path, source.kind);
  LanguageModel lm;
  lm.decoder = loaded.decoder;
  lm.source = loaded.source;
  const std::string tokenizer_path = source.tokenizer.empty() ? loaded.tokenizer_path : source.tokenizer;
  lm.tokenizer_path = tokenizer_path;
  if (!tokenizer_path.empty()) lm.tokenizer = text::load_tokenizer(tokenizer_path);
  else if (source.require_tokenizer)
    core::fail("{}: {} names no tokenizer: give one (a SentencePiece .model or a folder with vocab.json + merges.txt)",
               source.key, lm.source);
  if (lm.tokenizer && lm.tokenizer->vocab_size() > lm.decoder->config().vocab_size)
    core::fail("{}: the tokenizer has {} ids but {} has a vocabulary of {}", source.key, lm.tokenizer->vocab_size(),
               lm.source, lm.decoder->config().vocab_size);
  if (source.frozen)
    for (auto& p : lm.decoder->parameters()) p.requires_grad_(false);
  lm.decoder->eval();
  return lm;
}

}  // namespace engram::model
