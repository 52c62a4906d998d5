#pragma once
// engram's own model file (HDF5): what `engram pretrain` leaves behind and `engram convert`
// writes, readable with h5py.
//   /meta   attributes: format = "engram-model", version, architecture (DecoderConfig as JSON),
//           tokenizer (path of the tokenizer, relative to the file's folder when inside it),
//           config (the effective YAML of the run that made it)
//   /model/<parameter name>   every parameter and buffer, full tensors
#include <string>

#include "model/decoder.h"

namespace engram::model {

std::string decoder_config_to_json(const DecoderConfig& config);
DecoderConfig decoder_config_from_json(const std::string& json, const std::string& origin);

struct ModelFile {
  Decoder decoder{nullptr};
  std::string tokenizer;  // absolute or relative to the working directory; "" when none
  std::string config_yaml;
};

void save_model_file(const std::string& path, Decoder& decoder, const std::string& tokenizer,
                     const std::string& config_yaml);
// Bad or foreign files -> core::UserError naming the file and what is wrong.
ModelFile load_model_file(const std::string& path);
// A path given by a user: a model.h5 file, or a run folder holding model.h5.
std::string resolve_model_path(const std::string& path);

}  // namespace engram::model
