#pragma once
// One way to get a decoder from a path, for every command: engram's own model file (model.h5 or
// a run folder holding one) or a Hugging Face folder (config.json + safetensors).
#include <string>

#include "model/decoder.h"

namespace engram::model {

enum class DecoderSource { Auto, Engram, HuggingFace };  // Auto: a folder with config.json is HF

struct LoadedDecoder {
  Decoder decoder{nullptr};
  std::string tokenizer_path;  // the tokenizer the source names; empty when it names none
  std::string source;          // for messages: "runs/x/model.h5", "hf:gpt2-folder"
};

LoadedDecoder load_decoder(const std::string& path, DecoderSource kind = DecoderSource::Auto);

}  // namespace engram::model
