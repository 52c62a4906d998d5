#include "model/load.h"

#include <filesystem>

#include "model/hf.h"
#include "model/model_file.h"

namespace engram::model {

LoadedDecoder load_decoder(const std::string& path, DecoderSource kind) {
  if (kind == DecoderSource::Auto)
    kind = std::filesystem::exists(std::filesystem::path(path) / "config.json") ? DecoderSource::HuggingFace
                                                                                 : DecoderSource::Engram;
  LoadedDecoder out;
  if (kind == DecoderSource::HuggingFace) {
    HfCheckpoint info;
    out.decoder = load_hf_decoder(path, &info);
    out.tokenizer_path = info.tokenizer_path;
    out.source = "hf:" + path;
  } else {
    ModelFile file = load_model_file(path);
    out.decoder = file.decoder;
    out.tokenizer_path = file.tokenizer;
    out.source = resolve_model_path(path);
  }
  return out;
}

}  // namespace engram::model
