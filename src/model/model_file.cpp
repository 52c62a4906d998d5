#include "model/model_file.h"

#include <filesystem>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "core/error.h"
#include "io/h5file.h"

namespace fs = std::filesystem;

namespace engram::model {
namespace {
constexpr const char* kFormat = "engram-model";
constexpr int64_t kVersion = 1;
}  // namespace

std::string decoder_config_to_json(const DecoderConfig& c) {
  nlohmann::json j{{"vocab_size", c.vocab_size}, {"d_model", c.d_model},     {"n_layers", c.n_layers},
                   {"n_heads", c.n_heads},       {"d_ff", c.d_ff},           {"max_positions", c.max_positions},
                   {"positions", core::name_of(c.positions)},   {"block", core::name_of(c.block)},         {"norm", core::name_of(c.norm)},
                   {"mlp", core::name_of(c.mlp)},               {"bias", c.bias},           {"tied_head", c.tied_head},
                   {"head_bias", c.head_bias},   {"norm_eps", c.norm_eps},   {"rope_theta", c.rope_theta},
                   {"dropout", c.dropout},       {"init_std", c.init_std}};
  return j.dump();
}

DecoderConfig decoder_config_from_json(const std::string& text, const std::string& origin) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    core::fail("{}: the model architecture is not valid JSON: {}", origin, e.what());
  }
  DecoderConfig c;
  try {
    c.vocab_size = j.at("vocab_size");
    c.d_model = j.at("d_model");
    c.n_layers = j.at("n_layers");
    c.n_heads = j.at("n_heads");
    c.d_ff = j.at("d_ff");
    c.max_positions = j.at("max_positions");
    c.positions = core::parse_enum<DecoderConfig::Positions>(j.at("positions"), origin + ": positions");
    c.block = core::parse_enum<DecoderConfig::Block>(j.at("block"), origin + ": block");
    c.norm = core::parse_enum<DecoderConfig::Norm>(j.at("norm"), origin + ": norm");
    c.mlp = core::parse_enum<DecoderConfig::Mlp>(j.at("mlp"), origin + ": mlp");
    c.bias = j.at("bias");
    c.tied_head = j.at("tied_head");
    c.head_bias = j.at("head_bias");
    c.norm_eps = j.at("norm_eps");
    c.rope_theta = j.at("rope_theta");
    c.dropout = j.at("dropout");
    c.init_std = j.at("init_std");
  } catch (const nlohmann::json::exception& e) {
    core::fail("{}: the model architecture misses or mistypes a field: {}", origin, e.what());
  }
  c.validate();
  return c;
}

std::string resolve_model_path(const std::string& path) {
  if (fs::is_directory(path)) {
    if (fs::exists(fs::path(path) / "model.h5")) return (fs::path(path) / "model.h5").string();
    core::fail("{}: a folder without model.h5 (expected a model file or a run folder holding one)", path);
  }
  if (!fs::exists(path)) core::fail("{}: no such model file or folder", path);
  return path;
}

void save_model_file(const std::string& path, Decoder& decoder, const std::string& tokenizer,
                     const std::string& config_yaml) {
  const std::string tmp = path + ".tmp";
  {
    io::H5File file(tmp, io::H5File::Mode::Create);
    file.create_group("/meta");
    file.set_attr("/meta", "format", std::string(kFormat));
    file.set_attr("/meta", "version", kVersion);
    file.set_attr("/meta", "architecture", decoder_config_to_json(decoder->config()));
    // A tokenizer inside the model's folder is stored relative to it, so the folder can move.
    std::string stored = tokenizer;
    if (!tokenizer.empty()) {
      auto folder = fs::absolute(fs::path(path)).parent_path();
      auto relative = fs::absolute(tokenizer).lexically_relative(folder);
      if (!relative.empty() && relative.string().rfind("..", 0) != 0) stored = relative.string();
    }
    file.set_attr("/meta", "tokenizer", stored);
    file.set_attr("/meta", "config", config_yaml);
    for (const auto& item : decoder->named_parameters()) file.write_tensor("/model/" + item.key(), item.value().detach());
    for (const auto& item : decoder->named_buffers()) file.write_tensor("/buffers/" + item.key(), item.value().detach());
    file.close();
  }
  fs::rename(tmp, path);
}

ModelFile load_model_file(const std::string& user_path) {
  const std::string path = resolve_model_path(user_path);
  io::H5File file(path, io::H5File::Mode::Read);
  if (!file.has_attr("/meta", "format") || file.attr_string("/meta", "format") != kFormat)
    core::fail("{}: not an engram model file (no /meta format = {})", path, kFormat);
  if (file.attr_int("/meta", "version") != kVersion)
    core::fail("{}: model file version {} (this engram reads {})", path, file.attr_int("/meta", "version"), kVersion);
  ModelFile out;
  const DecoderConfig architecture = decoder_config_from_json(file.attr_string("/meta", "architecture"), path);
  int64_t values = 0;
  for (const std::string& name : file.list("/model")) {
    int64_t n = 1;
    for (int64_t size : file.shape("/model/" + name)) n *= size;
    values += n;
  }
  architecture.check_fits(values, path + ": /meta architecture", "/model");
  out.decoder = Decoder(architecture);
  out.config_yaml = file.attr_string("/meta", "config");
  out.tokenizer = file.attr_string("/meta", "tokenizer");
  if (!out.tokenizer.empty() && fs::path(out.tokenizer).is_relative())
    out.tokenizer = (fs::path(path).parent_path() / out.tokenizer).string();
  torch::NoGradGuard no_grad;
  for (auto& item : out.decoder->named_parameters()) {
    const std::string name = "/model/" + item.key();
    if (!file.exists(name)) core::fail("{}: missing parameter '{}'", path, item.key());
    at::Tensor value = file.read_tensor(name);
    if (!value.sizes().equals(item.value().sizes()))
      core::fail("{}: parameter '{}' has {} values in the file, the architecture needs {}", path, item.key(),
                 value.numel(), item.value().numel());
    item.value().copy_(value);
  }
  for (auto& item : out.decoder->named_buffers()) {
    const std::string name = "/buffers/" + item.key();
    if (file.exists(name)) item.value().copy_(file.read_tensor(name));
  }
  return out;
}

}  // namespace engram::model
