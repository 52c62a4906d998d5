#include "model/hf.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <set>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "core/error.h"
#include "io/jsonl.h"
#include "io/safetensors.h"

namespace engram::model {
namespace {

namespace fs = std::filesystem;
using core::fail;
using json = nlohmann::json;

// ---------------------------------------------------------------------------------------------
// config.json helpers

std::string join(const std::vector<std::string>& items, size_t limit = 12) {
  std::string out;
  for (size_t i = 0; i < items.size() && i < limit; ++i) out += (i ? ", " : "") + items[i];
  if (items.size() > limit) out += fmt::format(", ... ({} in all)", items.size());
  return out;
}

std::string shape_str(at::IntArrayRef shape) { return fmt::format("[{}]", fmt::join(shape, ", ")); }

struct JsonConfig {
  std::string path;
  json j;

  bool has(const std::string& key) const { return j.contains(key) && !j.at(key).is_null(); }

  int64_t integer(const std::string& key, std::optional<int64_t> def = std::nullopt, bool positive = true) const {
    if (!has(key)) {
      if (def) return *def;
      fail("{}: missing key \"{}\"", path, key);
    }
    const json& v = j.at(key);
    if (!v.is_number_integer()) fail("{}: \"{}\" must be an integer, got {}", path, key, v.dump());
    int64_t x = v.get<int64_t>();
    if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
      fail("{}: \"{}\" is too large: {}", path, key, v.dump());
    if (positive ? x <= 0 : x < 0) fail("{}: \"{}\" must be {}, got {}", path, key, positive ? "positive" : "non-negative", x);
    return x;
  }
  double number(const std::string& key, double def, bool positive = true) const {
    if (!has(key)) return def;
    const json& v = j.at(key);
    if (!v.is_number()) fail("{}: \"{}\" must be a number, got {}", path, key, v.dump());
    double x = v.get<double>();
    if (positive ? !(x > 0) : !(x >= 0)) fail("{}: \"{}\" must be {}, got {}", path, key, positive ? "positive" : "non-negative", x);
    return x;
  }
  std::string string(const std::string& key, const std::string& def) const {
    if (!has(key)) return def;
    const json& v = j.at(key);
    if (!v.is_string()) fail("{}: \"{}\" must be a string, got {}", path, key, v.dump());
    return v.get<std::string>();
  }
  bool boolean(const std::string& key, bool def) const {
    if (!has(key)) return def;
    const json& v = j.at(key);
    if (!v.is_boolean()) fail("{}: \"{}\" must be true or false, got {}", path, key, v.dump());
    return v.get<bool>();
  }
  void require_bool(const std::string& key, bool def, bool supported, const std::string& why) const {
    if (boolean(key, def) != supported) fail("{}: \"{}\": {} is not supported ({})", path, key, !supported, why);
  }
};

JsonConfig read_config_json(const std::string& folder) {
  JsonConfig c;
  c.path = (fs::path(folder) / "config.json").string();
  if (!fs::is_directory(folder)) fail("{}: not a folder (expected a Hugging Face model folder with config.json)", folder);
  if (!fs::exists(c.path)) fail("{}: missing (expected a Hugging Face model folder)", c.path);
  io::read_json_file(c.path, c.j);
  if (!c.j.is_object()) fail("{}: the JSON is not an object", c.path);
  return c;
}

void write_text_atomically(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) fail("{}: cannot open for writing", tmp);
    out << text;
    out.flush();
    if (!out) {
      std::remove(tmp.c_str());
      fail("{}: write error", tmp);
    }
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    std::remove(tmp.c_str());
    fail("{}: cannot rename {} to it: {}", path, tmp, ec.message());
  }
}

// The safetensors of a folder: model.safetensors, or the index and its shards (floats as float32).
struct Weights {
  std::string source;  // the file named in messages
  std::map<std::string, at::Tensor> tensors;
};

Weights read_weights(const std::string& folder) {
  Weights w;
  const fs::path single = fs::path(folder) / "model.safetensors";
  const fs::path index = fs::path(folder) / "model.safetensors.index.json";
  io::SafetensorsReadOptions options;
  options.to_float32 = true;
  if (fs::exists(single)) {
    w.source = single.string();
    w.tensors = io::read_safetensors(w.source, options).tensors;
  } else if (fs::exists(index)) {
    w.source = index.string();
    w.tensors = io::read_safetensors_sharded(w.source, options).tensors;
  } else {
    std::string extra = fs::exists(fs::path(folder) / "pytorch_model.bin")
                            ? " (pytorch_model.bin is not supported: convert it to safetensors, e.g. with "
                              "transformers' save_pretrained(safe_serialization=True))"
                            : "";
    fail("{}: no model.safetensors or model.safetensors.index.json{}", folder, extra);
  }
  for (auto& [name, t] : w.tensors)
    if (!at::isFloatingType(t.scalar_type()))
      fail("{}: tensor '{}' has dtype {}, expected a floating type", w.source, name, c10::toString(t.scalar_type()));
  return w;
}

void write_weights(const std::string& folder, const std::vector<std::pair<std::string, at::Tensor>>& tensors) {
  std::vector<std::pair<std::string, at::Tensor>> f32;
  for (const auto& [name, t] : tensors) f32.emplace_back(name, t.detach().to(at::kCPU, at::kFloat).contiguous());
  io::write_safetensors((fs::path(folder) / "model.safetensors").string(), f32, {{"format", "pt"}});
}

void make_folder(const std::string& folder) {
  std::error_code ec;
  fs::create_directories(folder, ec);
  if (ec || !fs::is_directory(folder)) fail("{}: cannot create the folder: {}", folder, ec ? ec.message() : "not a folder");
}

const std::vector<std::string> kTokenizerFiles = {"vocab.json",     "merges.txt",           "tokenizer.model",
                                                  "spiece.model",   "tokenizer.json",       "tokenizer_config.json",
                                                  "special_tokens_map.json"};

void copy_tokenizer(const std::string& source, const std::string& folder) {
  if (source.empty()) return;
  fs::path from = fs::is_directory(source) ? fs::path(source) : fs::path(source).parent_path();
  if (!fs::exists(source)) fail("{}: tokenizer source does not exist", source);
  std::error_code ec;
  if (fs::equivalent(from, folder, ec)) return;
  int copied = 0;
  for (const auto& name : kTokenizerFiles) {
    if (!fs::exists(from / name)) continue;
    fs::copy_file(from / name, fs::path(folder) / name, fs::copy_options::overwrite_existing, ec);
    if (ec) fail("{}: cannot copy to {}: {}", (from / name).string(), folder, ec.message());
    ++copied;
  }
  if (copied == 0) fail("{}: no tokenizer files ({}) to copy", from.string(), join(kTokenizerFiles));
}

std::string find_tokenizer(const std::string& folder, bool prefer_sentencepiece) {
  const fs::path f(folder);
  const bool bpe = fs::exists(f / "vocab.json") && fs::exists(f / "merges.txt");
  std::string sp;
  for (const char* name : {"tokenizer.model", "spiece.model"})
    if (sp.empty() && fs::exists(f / name)) sp = (f / name).string();
  if (!sp.empty() && (prefer_sentencepiece || !bpe)) return sp;
  if (bpe) return folder;
  return "";
}

// ---------------------------------------------------------------------------------------------
// The generic name-map engine

// Where one of our parameters lives in the HF file: the whole tensor `hf`, or part `part` of
// `parts` equal slices of it (GPT-2's fused c_attn), transposed or not (Conv1D).
struct Rule {
  std::string hf;
  int part = -1, parts = 0;
  bool transpose = false;
};
using RuleFn = std::function<std::optional<Rule>(const std::string& ours)>;

bool is_lora(const std::string& name) {
  return name.find("lora_A") != std::string::npos || name.find("lora_B") != std::string::npos;
}

// Splits "blocks.3.attn.q.weight" into ("blocks", 3, "attn.q.weight"); layer -1 when not blocked.
bool split_layer(const std::string& name, const std::string& prefix, int64_t& layer, std::string& rest) {
  if (name.rfind(prefix, 0) != 0) return false;
  size_t dot = name.find('.', prefix.size());
  if (dot == std::string::npos) return false;
  try {
    layer = std::stoll(name.substr(prefix.size(), dot - prefix.size()));
  } catch (...) {
    return false;
  }
  rest = name.substr(dot + 1);
  return true;
}

// HF shape expected for our parameter of shape `ours` under `rule`.
std::vector<int64_t> hf_shape(const Rule& rule, at::IntArrayRef ours) {
  std::vector<int64_t> s = ours.vec();
  if (rule.transpose && s.size() == 2) std::swap(s[0], s[1]);
  if (rule.parts > 0) s.back() *= rule.parts;  // Conv1D weight [in, parts*out], bias [parts*out]
  return s;
}

void import_parameters(torch::nn::Module& model, std::map<std::string, at::Tensor> hf, const RuleFn& rule,
                       const std::string& source, const std::string& description) {
  struct Item {
    at::Tensor param;
    Rule rule;
  };
  std::vector<Item> items;
  std::vector<std::string> missing;
  std::set<std::string> used;
  for (auto& named : model.named_parameters(/*recurse=*/true)) {
    if (is_lora(named.key())) continue;
    std::optional<Rule> r = rule(named.key());
    if (!r) fail("{}: our parameter '{}' has no {} counterpart", source, named.key(), description);
    auto it = hf.find(r->hf);
    if (it == hf.end()) {
      if (std::find(missing.begin(), missing.end(), r->hf) == missing.end()) missing.push_back(r->hf);
      continue;
    }
    used.insert(r->hf);
    std::vector<int64_t> want = hf_shape(*r, named.value().sizes());
    if (it->second.sizes() != at::IntArrayRef(want))
      fail("{}: tensor '{}' has shape {}, expected {} for a {}", source, r->hf, shape_str(it->second.sizes()),
           shape_str(want), description);
    items.push_back({named.value(), *r});
  }
  if (!missing.empty()) fail("{}: missing tensors for a {}: {}", source, description, join(missing));
  std::vector<std::string> unexpected;
  for (const auto& [name, t] : hf)
    if (!used.count(name)) unexpected.push_back(name);
  if (!unexpected.empty())
    fail("{}: unexpected tensors (not part of a {}): {}", source, description, join(unexpected));

  torch::NoGradGuard no_grad;
  for (auto& item : items) {
    at::Tensor t = hf.at(item.rule.hf);
    if (item.rule.parts > 0) {
      const int64_t dim = t.dim() - 1;
      const int64_t size = t.size(dim) / item.rule.parts;
      t = t.narrow(dim, item.rule.part * size, size);
    }
    if (item.rule.transpose) t = t.t();
    item.param.copy_(t);
  }
}

std::vector<std::pair<std::string, at::Tensor>> export_parameters(
    const std::vector<std::pair<std::string, at::Tensor>>& ours, const RuleFn& rule, const std::string& description) {
  std::vector<std::string> order;
  std::map<std::string, std::vector<at::Tensor>> pieces;
  std::map<std::string, Rule> rules;
  for (const auto& [name, p] : ours) {
    if (is_lora(name)) continue;
    std::optional<Rule> r = rule(name);
    if (!r) fail("cannot export parameter '{}' as a {}", name, description);
    if (!pieces.count(r->hf)) {
      order.push_back(r->hf);
      pieces[r->hf].resize(std::max(1, r->parts));
      rules[r->hf] = *r;
    }
    at::Tensor t = p.detach();
    if (r->transpose) t = t.t();
    pieces[r->hf][std::max(0, r->part)] = t;
  }
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& name : order) {
    auto& parts = pieces[name];
    for (const auto& p : parts)
      if (!p.defined()) fail("cannot export {} as a {}: a part of it is missing", name, description);
    at::Tensor t = parts.size() == 1 ? parts[0] : at::cat(parts, parts[0].dim() - 1);
    out.emplace_back(name, t.contiguous());
  }
  return out;
}

std::vector<std::pair<std::string, at::Tensor>> named_params(torch::nn::Module& m) {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (auto& named : m.named_parameters(true)) out.emplace_back(named.key(), named.value());
  return out;
}

// Removes `name` from `hf` after checking that it equals `tied_to` (a tied head stored anyway).
void drop_tied_copy(std::map<std::string, at::Tensor>& hf, const std::string& name, const std::string& tied_to,
                    const std::string& source, const std::string& why) {
  auto it = hf.find(name);
  if (it == hf.end()) return;
  auto base = hf.find(tied_to);
  if (base != hf.end() && !(it->second.sizes() == base->second.sizes() && it->second.equal(base->second)))
    fail("{}: tensor '{}' differs from '{}', but {} ties them", source, name, tied_to, why);
  hf.erase(it);
}

// ---------------------------------------------------------------------------------------------
// Decoder: gpt2 and llama

const std::vector<std::string> kDecoderTypes = {"gpt2", "llama"};

std::optional<Rule> gpt2_rule(const std::string& ours) {
  static const std::map<std::string, std::string> top = {
      {"wte.weight", "wte.weight"},   {"wpe.weight", "wpe.weight"},     {"ln_f.weight", "ln_f.weight"},
      {"ln_f.bias", "ln_f.bias"},     {"head.weight", "lm_head.weight"}};
  if (auto it = top.find(ours); it != top.end()) return Rule{it->second};
  int64_t i = 0;
  std::string rest;
  if (!split_layer(ours, "blocks.", i, rest)) return std::nullopt;
  const std::string h = fmt::format("h.{}.", i);
  static const std::map<std::string, std::pair<std::string, bool>> simple = {
      {"ln1.weight", {"ln_1.weight", false}},          {"ln1.bias", {"ln_1.bias", false}},
      {"ln2.weight", {"ln_2.weight", false}},          {"ln2.bias", {"ln_2.bias", false}},
      {"attn.o.weight", {"attn.c_proj.weight", true}}, {"attn.o.bias", {"attn.c_proj.bias", false}},
      {"mlp.up.weight", {"mlp.c_fc.weight", true}},    {"mlp.up.bias", {"mlp.c_fc.bias", false}},
      {"mlp.down.weight", {"mlp.c_proj.weight", true}}, {"mlp.down.bias", {"mlp.c_proj.bias", false}}};
  if (auto it = simple.find(rest); it != simple.end()) return Rule{h + it->second.first, -1, 0, it->second.second};
  static const std::vector<std::string> qkv = {"q", "k", "v"};
  for (int p = 0; p < 3; ++p) {
    if (rest == "attn." + qkv[p] + ".weight") return Rule{h + "attn.c_attn.weight", p, 3, true};
    if (rest == "attn." + qkv[p] + ".bias") return Rule{h + "attn.c_attn.bias", p, 3, false};
  }
  return std::nullopt;
}

std::optional<Rule> llama_rule(const std::string& ours) {
  static const std::map<std::string, std::string> top = {{"wte.weight", "model.embed_tokens.weight"},
                                                         {"ln_f.weight", "model.norm.weight"},
                                                         {"head.weight", "lm_head.weight"}};
  if (auto it = top.find(ours); it != top.end()) return Rule{it->second};
  int64_t i = 0;
  std::string rest;
  if (!split_layer(ours, "blocks.", i, rest)) return std::nullopt;
  static const std::map<std::string, std::string> names = {
      {"ln1.weight", "input_layernorm.weight"},       {"ln2.weight", "post_attention_layernorm.weight"},
      {"attn.q.weight", "self_attn.q_proj.weight"},   {"attn.k.weight", "self_attn.k_proj.weight"},
      {"attn.v.weight", "self_attn.v_proj.weight"},   {"attn.o.weight", "self_attn.o_proj.weight"},
      {"mlp.gate.weight", "mlp.gate_proj.weight"},    {"mlp.up.weight", "mlp.up_proj.weight"},
      {"mlp.down.weight", "mlp.down_proj.weight"}};
  if (auto it = names.find(rest); it != names.end()) return Rule{fmt::format("model.layers.{}.{}", i, it->second)};
  return std::nullopt;
}

RuleFn decoder_rule(const std::string& model_type) {
  if (model_type == "gpt2") return gpt2_rule;
  if (model_type == "llama") return llama_rule;
  fail("unsupported Hugging Face model_type '{}' (supported: {})", model_type, join(kDecoderTypes));
}

std::string describe(const HfCheckpoint& c) {
  const DecoderConfig& d = c.config;
  return fmt::format("{} model with {} layers, d_model {}, d_ff {}, vocab {}{}", c.model_type, d.n_layers, d.d_model,
                     d.d_ff, d.vocab_size, d.positions == DecoderConfig::Positions::Learned ? fmt::format(", {} positions", d.max_positions) : "");
}

// Checks that `c` is what `model_type` expresses in HF; UserError naming the difference.
void check_exportable(const DecoderConfig& c, const std::string& model_type) {
  auto need = [&](bool ok, const std::string& what) {
    if (!ok) fail("cannot export the model as Hugging Face {}: it needs {}", model_type, what);
  };
  if (model_type == "gpt2") {
    need(c.positions == DecoderConfig::Positions::Learned, "learned positions (model.positions = learned), not " + std::string(core::name_of(c.positions)));
    need(c.block == DecoderConfig::Block::Sequential, "sequential blocks, not " + std::string(core::name_of(c.block)));
    need(c.norm == DecoderConfig::Norm::Layer, "layer norm, not " + std::string(core::name_of(c.norm)));
    need(c.mlp == DecoderConfig::Mlp::GeluNew || c.mlp == DecoderConfig::Mlp::Gelu, "a gelu or gelu_new MLP, not " + std::string(core::name_of(c.mlp)));
    need(c.bias && c.has_mlp_bias(), "biases in attention and MLP");
    need(!c.head_bias, "an output head without bias");
  } else if (model_type == "llama") {
    need(c.positions == DecoderConfig::Positions::Rope, "rope positions, not " + std::string(core::name_of(c.positions)));
    need(c.block == DecoderConfig::Block::Sequential, "sequential blocks, not " + std::string(core::name_of(c.block)));
    need(c.norm == DecoderConfig::Norm::Rms, "RMS norm, not " + std::string(core::name_of(c.norm)));
    need(c.mlp == DecoderConfig::Mlp::SwiGlu, "a swiglu MLP, not " + std::string(core::name_of(c.mlp)));
    need(!c.bias && !c.has_mlp_bias(), "no attention or MLP biases");
    need(!c.head_bias, "an output head without bias");
  } else {
    decoder_rule(model_type);  // fails with the supported list
  }
}

std::string activation_name(DecoderConfig::Mlp mlp) { return mlp == DecoderConfig::Mlp::Gelu ? "gelu" : "gelu_new"; }

}  // namespace

const std::vector<std::string>& hf_decoder_model_types() { return kDecoderTypes; }

HfCheckpoint read_hf_config(const std::string& folder) {
  JsonConfig j = read_config_json(folder);
  HfCheckpoint out;
  out.model_type = j.string("model_type", "");
  DecoderConfig sizes;
  if (out.model_type == "gpt2") {
    sizes.vocab_size = j.integer("vocab_size");
    sizes.d_model = j.integer("n_embd");
    sizes.n_layers = j.integer("n_layer");
    sizes.n_heads = j.integer("n_head");
    sizes.max_positions = j.integer("n_positions");
    sizes.d_ff = j.integer("n_inner", 4 * sizes.d_model);
    out.config = DecoderConfig::preset("gpt2", sizes);
    out.config.norm_eps = j.number("layer_norm_epsilon", 1e-5);
    const std::string act = j.string("activation_function", "gelu_new");
    if (act == "gelu_new" || act == "gelu_pytorch_tanh")
      out.config.mlp = DecoderConfig::Mlp::GeluNew;
    else if (act == "gelu")
      out.config.mlp = DecoderConfig::Mlp::Gelu;
    else
      fail("{}: \"activation_function\": '{}' is not supported (supported: gelu_new, gelu_pytorch_tanh, gelu)", j.path,
           act);
    out.config.tied_head = j.boolean("tie_word_embeddings", true);
    j.require_bool("scale_attn_weights", true, true, "attention scores are always scaled by 1/sqrt(head_dim)");
    j.require_bool("scale_attn_by_inverse_layer_idx", false, false, "no per-layer attention scaling");
    j.require_bool("add_cross_attention", false, false, "decoder-only");
  } else if (out.model_type == "llama") {
    sizes.vocab_size = j.integer("vocab_size");
    sizes.d_model = j.integer("hidden_size");
    sizes.n_layers = j.integer("num_hidden_layers");
    sizes.n_heads = j.integer("num_attention_heads");
    sizes.d_ff = j.integer("intermediate_size");
    sizes.max_positions = j.integer("max_position_embeddings", 2048);
    sizes.rope_theta = j.number("rope_theta", 10000.0);
    const int64_t kv = j.integer("num_key_value_heads", sizes.n_heads);
    if (kv != sizes.n_heads)
      fail("{}: grouped-query attention is not supported (num_key_value_heads {} != num_attention_heads {})", j.path,
           kv, sizes.n_heads);
    if (j.has("head_dim") && j.integer("head_dim") * sizes.n_heads != sizes.d_model)
      fail("{}: \"head_dim\" {} is not hidden_size / num_attention_heads (not supported)", j.path, j.integer("head_dim"));
    if (j.has("rope_scaling")) fail("{}: \"rope_scaling\" is not supported (it must be null or absent)", j.path);
    const std::string act = j.string("hidden_act", "silu");
    if (act != "silu") fail("{}: \"hidden_act\": '{}' is not supported (llama uses silu)", j.path, act);
    j.require_bool("attention_bias", false, false, "no attention biases");
    j.require_bool("mlp_bias", false, false, "no MLP biases");
    out.config = DecoderConfig::preset("llama", sizes);
    out.config.norm_eps = j.number("rms_norm_eps", 1e-6);
    out.config.tied_head = j.boolean("tie_word_embeddings", false);
  } else {
    fail("{}: model_type '{}' is not supported (supported: {}{})", j.path, out.model_type, join(kDecoderTypes),
         out.model_type == "t5" || out.model_type == "mt5" ? "; T5 folders load with load_hf_t5" : "");
  }
  try {
    out.config.validate();
  } catch (const core::UserError& e) {
    fail("{}: unsupported configuration: {}", j.path, e.what());
  }
  out.tokenizer_path = find_tokenizer(folder, out.model_type == "llama");
  return out;
}

Decoder load_hf_decoder(const std::string& folder, HfCheckpoint* info) {
  HfCheckpoint checkpoint = read_hf_config(folder);
  Weights w = read_weights(folder);
  const std::string description = describe(checkpoint);
  if (checkpoint.model_type == "gpt2") {
    // GPT2LMHeadModel files prefix the body with "transformer."; GPT2Model files do not.
    std::map<std::string, at::Tensor> renamed;
    for (auto& [name, t] : w.tensors) {
      std::string n = name.rfind("transformer.", 0) == 0 ? name.substr(12) : name;
      const bool buffer = (n.size() > 10 && n.compare(n.size() - 10, 10, ".attn.bias") == 0) ||
                          (n.size() > 17 && n.compare(n.size() - 17, 17, ".attn.masked_bias") == 0);
      if (buffer) continue;
      if (!renamed.emplace(n, t).second)
        fail("{}: tensor '{}' is there both with and without the \"transformer.\" prefix", w.source, n);
    }
    w.tensors = std::move(renamed);
    if (checkpoint.config.tied_head)
      drop_tied_copy(w.tensors, "lm_head.weight", "wte.weight", w.source, "gpt2 (tie_word_embeddings)");
  } else {
    for (auto it = w.tensors.begin(); it != w.tensors.end();)
      it = it->first.find("rotary_emb.inv_freq") != std::string::npos ? w.tensors.erase(it) : std::next(it);
    if (checkpoint.config.tied_head)
      drop_tied_copy(w.tensors, "lm_head.weight", "model.embed_tokens.weight", w.source, "tie_word_embeddings");
  }
  int64_t values = 0;
  for (const auto& [name, t] : w.tensors) values += t.numel();
  checkpoint.config.check_fits(values, (fs::path(folder) / "config.json").string(), w.source);
  Decoder model(checkpoint.config);
  import_parameters(*model, std::move(w.tensors), decoder_rule(checkpoint.model_type), w.source, description);
  if (info) *info = checkpoint;
  return model;
}

std::vector<std::pair<std::string, at::Tensor>> decoder_state_to_hf(
    const std::vector<std::pair<std::string, at::Tensor>>& ours, const DecoderConfig& config,
    const std::string& model_type) {
  check_exportable(config, model_type);
  auto out = export_parameters(ours, decoder_rule(model_type), model_type + " model");
  if (model_type == "gpt2")
    for (auto& [name, t] : out)
      if (name != "lm_head.weight") name = "transformer." + name;
  return out;
}

void save_hf_decoder(Decoder& model, const std::string& model_type, const std::string& folder,
                     const std::string& tokenizer_source) {
  const DecoderConfig& c = model->config();
  auto tensors = decoder_state_to_hf(named_params(*model), c, model_type);
  nlohmann::ordered_json j;
  if (model_type == "gpt2") {
    j = {{"architectures", {"GPT2LMHeadModel"}},
         {"model_type", "gpt2"},
         {"vocab_size", c.vocab_size},
         {"n_positions", c.max_positions},
         {"n_ctx", c.max_positions},
         {"n_embd", c.d_model},
         {"n_layer", c.n_layers},
         {"n_head", c.n_heads},
         {"n_inner", c.d_ff},
         {"activation_function", activation_name(c.mlp)},
         {"layer_norm_epsilon", c.norm_eps},
         {"resid_pdrop", c.dropout},
         {"embd_pdrop", c.dropout},
         {"attn_pdrop", c.dropout},
         {"initializer_range", c.init_std},
         {"scale_attn_weights", true},
         {"tie_word_embeddings", c.tied_head},
         {"use_cache", true},
         {"torch_dtype", "float32"}};
  } else {
    j = {{"architectures", {"LlamaForCausalLM"}},
         {"model_type", "llama"},
         {"vocab_size", c.vocab_size},
         {"hidden_size", c.d_model},
         {"intermediate_size", c.d_ff},
         {"num_hidden_layers", c.n_layers},
         {"num_attention_heads", c.n_heads},
         {"num_key_value_heads", c.n_heads},
         {"max_position_embeddings", c.max_positions},
         {"rms_norm_eps", c.norm_eps},
         {"rope_theta", c.rope_theta},
         {"rope_scaling", nullptr},
         {"hidden_act", "silu"},
         {"attention_bias", false},
         {"mlp_bias", false},
         {"attention_dropout", c.dropout},
         {"initializer_range", c.init_std},
         {"tie_word_embeddings", c.tied_head},
         {"use_cache", true},
         {"torch_dtype", "float32"}};
  }
  make_folder(folder);
  write_weights(folder, tensors);
  write_text_atomically((fs::path(folder) / "config.json").string(), j.dump(2) + "\n");
  copy_tokenizer(tokenizer_source, folder);
}

// -------------------------------------------------------------------------------------------------
// T5

namespace {

std::optional<Rule> t5_rule(const std::string& ours) {
  if (ours == "shared.weight" || ours == "lm_head.weight") return Rule{ours};
  if (ours == "encoder.final_ln.weight") return Rule{"encoder.final_layer_norm.weight"};
  if (ours == "decoder.final_ln.weight") return Rule{"decoder.final_layer_norm.weight"};
  for (const std::string stack : {"encoder", "decoder"}) {
    int64_t i = 0;
    std::string rest;
    if (!split_layer(ours, stack + ".blocks.", i, rest)) continue;
    const std::string b = fmt::format("{}.block.{}.layer.", stack, i);
    auto sub = [&](const std::string& from, const std::string& to) -> std::optional<Rule> {
      if (rest.rfind(from, 0) == 0) return Rule{b + to + rest.substr(from.size())};
      return std::nullopt;
    };
    std::vector<std::pair<std::string, std::string>> table;
    if (stack == "encoder")
      table = {{"ln_attn.", "0.layer_norm."}, {"attn.", "0.SelfAttention."}, {"ln_ff.", "1.layer_norm."},
               {"ff.", "1.DenseReluDense."}};
    else
      table = {{"ln_self_attn.", "0.layer_norm."},  {"self_attn.", "0.SelfAttention."},
               {"ln_cross_attn.", "1.layer_norm."}, {"cross_attn.", "1.EncDecAttention."},
               {"ln_ff.", "2.layer_norm."},         {"ff.", "2.DenseReluDense."}};
    for (const auto& [from, to] : table)
      if (auto r = sub(from, to)) return r;
  }
  return std::nullopt;
}

}  // namespace

HfT5Checkpoint read_hf_t5_config(const std::string& folder) {
  JsonConfig j = read_config_json(folder);
  HfT5Checkpoint out;
  out.model_type = j.string("model_type", "");
  if (out.model_type != "t5" && out.model_type != "mt5")
    fail("{}: model_type '{}' is not a T5 model (supported: t5, mt5)", j.path, out.model_type);
  T5Config& c = out.config;
  c.vocab_size = j.integer("vocab_size");
  c.d_model = j.integer("d_model");
  c.d_kv = j.integer("d_kv");
  c.d_ff = j.integer("d_ff");
  c.n_layers = j.integer("num_layers");
  c.n_decoder_layers = j.integer("num_decoder_layers", c.n_layers);
  c.n_heads = j.integer("num_heads");
  c.relative_attention_num_buckets = j.integer("relative_attention_num_buckets", 32);
  c.relative_attention_max_distance = j.integer("relative_attention_max_distance", 128);
  c.dropout = j.number("dropout_rate", 0.1, /*positive=*/false);
  c.layer_norm_eps = j.number("layer_norm_epsilon", 1e-6);
  c.initializer_factor = j.number("initializer_factor", 1.0);
  const std::string ff = j.string("feed_forward_proj", "relu");
  if (ff != "relu" && ff != "gated-gelu")
    fail("{}: \"feed_forward_proj\": '{}' is not supported (supported: relu, gated-gelu)", j.path, ff);
  c.feed_forward = ff;
  c.tie_word_embeddings = j.boolean("tie_word_embeddings", true);
  try {
    c.validate();
  } catch (const core::UserError& e) {
    fail("{}: unsupported configuration: {}", j.path, e.what());
  }
  out.tokenizer_path = find_tokenizer(folder, true);
  return out;
}

T5 load_hf_t5(const std::string& folder, HfT5Checkpoint* info) {
  HfT5Checkpoint checkpoint = read_hf_t5_config(folder);
  Weights w = read_weights(folder);
  auto& hf = w.tensors;
  if (!hf.count("shared.weight")) {  // some files keep only the stacks' copies
    for (const char* copy : {"encoder.embed_tokens.weight", "decoder.embed_tokens.weight"})
      if (hf.count(copy)) {
        hf["shared.weight"] = hf.at(copy);
        break;
      }
  }
  for (const char* copy : {"encoder.embed_tokens.weight", "decoder.embed_tokens.weight"})
    drop_tied_copy(hf, copy, "shared.weight", w.source, "T5 (shared embeddings)");
  if (checkpoint.config.tie_word_embeddings)
    drop_tied_copy(hf, "lm_head.weight", "shared.weight", w.source, "tie_word_embeddings");
  hf.erase("decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight");  // unused by HF too
  const T5Config& c = checkpoint.config;
  const std::string description =
      fmt::format("{} model with {}+{} layers, d_model {}, {} heads of {}, d_ff {} ({}), vocab {}", checkpoint.model_type,
                  c.n_layers, c.n_decoder_layers, c.d_model, c.n_heads, c.d_kv, c.d_ff, c.feed_forward, c.vocab_size);
  const double d = c.d_model, attention = 4 * d * c.inner_dim(), ff = (c.feed_forward == "relu" ? 2 : 3) * d * c.d_ff;
  const double needed = c.vocab_size * d + c.n_layers * (attention + ff) + c.n_decoder_layers * (2 * attention + ff);
  int64_t values = 0;
  for (const auto& [name, t] : hf) values += t.numel();
  check_sizes_fit(needed, values, description, (fs::path(folder) / "config.json").string(), w.source);
  T5 model(checkpoint.config);
  import_parameters(*model, std::move(hf), t5_rule, w.source, description);
  if (info) *info = checkpoint;
  return model;
}

void save_hf_t5(T5& model, const std::string& folder, const std::string& tokenizer_source) {
  const T5Config& c = model->config();
  auto tensors = export_parameters(named_params(*model), t5_rule, "T5 model");
  nlohmann::ordered_json j = {{"architectures", {"T5ForConditionalGeneration"}},
                              {"model_type", "t5"},
                              {"vocab_size", c.vocab_size},
                              {"d_model", c.d_model},
                              {"d_kv", c.d_kv},
                              {"d_ff", c.d_ff},
                              {"num_layers", c.n_layers},
                              {"num_decoder_layers", c.n_decoder_layers},
                              {"num_heads", c.n_heads},
                              {"relative_attention_num_buckets", c.relative_attention_num_buckets},
                              {"relative_attention_max_distance", c.relative_attention_max_distance},
                              {"dropout_rate", c.dropout},
                              {"layer_norm_epsilon", c.layer_norm_eps},
                              {"initializer_factor", c.initializer_factor},
                              {"feed_forward_proj", c.feed_forward},
                              {"is_gated_act", c.feed_forward == "gated-gelu"},
                              {"dense_act_fn", c.feed_forward == "gated-gelu" ? "gelu_new" : "relu"},
                              {"tie_word_embeddings", c.tie_word_embeddings},
                              {"is_encoder_decoder", true},
                              {"decoder_start_token_id", 0},
                              {"pad_token_id", 0},
                              {"eos_token_id", 1},
                              {"use_cache", true},
                              {"torch_dtype", "float32"}};
  make_folder(folder);
  write_weights(folder, tensors);
  write_text_atomically((fs::path(folder) / "config.json").string(), j.dump(2) + "\n");
  copy_tokenizer(tokenizer_source, folder);
}

}  // namespace engram::model
