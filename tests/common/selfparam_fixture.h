#pragma once
// A tiny decoder over the GPT-2 fixture tokenizer, and SELF-PARAM options that inject one target
// quickly, for the SELF-PARAM unit and MPI tests.
#include <memory>
#include <string>

#include <torch/torch.h>

#include "methods/selfparam/options.h"
#include "model/decoder.h"
#include "text/tokenizer.h"

namespace selfparam_fixture {

inline std::shared_ptr<engram::text::Tokenizer> tokenizer() {
  return engram::text::load_tokenizer(std::string(ENGRAM_FIXTURES) + "/gpt2_tiny");
}

inline engram::model::Decoder tiny_decoder(int64_t vocab, uint64_t seed = 0) {
  torch::manual_seed(seed);
  engram::model::DecoderConfig c = engram::model::DecoderConfig::preset("gpt2");
  c.vocab_size = vocab;
  c.d_model = 32;
  c.n_layers = 2;
  c.n_heads = 2;
  c.d_ff = 64;
  c.max_positions = 128;
  engram::model::Decoder d(c);
  d->eval();
  return d;
}

// One target a step, no random terms, no dropout: the same steps on every rank and every run.
inline engram::selfparam::SelfParamOptions quick_options() {
  engram::selfparam::SelfParamOptions o;
  o.epochs = 30;
  o.per_epoch = 1;
  o.continuation = false;
  o.unrelated = false;
  o.lora_dropout = 0.0;
  o.lr = 1e-2;
  o.weight_decay = 0.0;
  return o;
}

}  // namespace selfparam_fixture
