#include "methods/mac/system.h"

#include <filesystem>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <torch/torch.h>

#include "config/config.h"
#include "core/error.h"
#include "io/h5file.h"
#include "methods/mac/options.h"
#include "eval/options.h"
#include "model/hf.h"
#include "model/model_file.h"
#include "text/tokenizer.h"

namespace fs = std::filesystem;

namespace engram::mac {
namespace {

std::string shape_text(at::IntArrayRef sizes) { return "[" + fmt::format("{}", fmt::join(sizes, ", ")) + "]"; }

constexpr const char* kFormat = "engram-mac";
constexpr int64_t kVersion = 1;

// `base` comes frozen and in eval mode (eval::load_base_model).
void attach_base(const config::Config& cfg, const model::LanguageModel& base, MacSystem& s) {
  s.lm = base.decoder;
  s.lm_source = base.source;
  s.lm_tokenizer = base.tokenizer;
  const std::string mac_tokenizer = cfg.get_string("mac.tokenizer");
  s.mac_tokenizer = mac_tokenizer.empty() ? s.lm_tokenizer : std::shared_ptr<text::Tokenizer>(text::load_tokenizer(mac_tokenizer));
}

void load_base(const config::Config& cfg, MacSystem& s) {
  attach_base(cfg, eval::load_base_model(cfg.get_string("base.model")), s);
}

// Copies the weights of a Hugging Face T5 folder into `target` (same shapes required).
void init_t5_from_hf(model::T5& target, const std::string& folder, const std::string& key) {
  model::T5 source = model::load_hf_t5(folder);
  auto wanted = target->named_parameters();
  torch::NoGradGuard no_grad;
  for (const auto& item : source->named_parameters()) {
    if (!wanted.contains(item.key())) continue;  // the LM head MAC does not use
    at::Tensor& w = wanted[item.key()];
    if (w.sizes() != item.value().sizes())
      core::fail("{}: {} has shape {} in {}, the configured T5 needs {}", key, item.key(), shape_text(item.value().sizes()),
                 folder, shape_text(w.sizes()));
    w.copy_(item.value());
  }
}

// Without a pretrained T5, the base LM's token embeddings are the best start the encoders can
// have: they already tell the LM's tokens apart as the LM sees them. Rescaled to unit variance,
// T5's own initial scale.
void init_t5_embeddings_from_lm(model::T5& t5, const MacSystem& s, const std::string& key) {
  at::Tensor source = s.lm->named_parameters()["wte.weight"];
  at::Tensor target = t5->named_parameters()["shared.weight"];  // a handle: copy_ writes the weight
  if (s.mac_tokenizer != s.lm_tokenizer || source.size(1) != target.size(1) || source.size(0) > target.size(0))
    core::fail("mac.init_from_lm_embeddings: {} must use the base LM's tokenizer and width ({}), not {}", key,
               source.size(1), target.size(1));
  torch::NoGradGuard no_grad;
  target.narrow(0, 0, source.size(0)).copy_(source / source.std());
}

}  // namespace

std::vector<int32_t> MacSystem::mac_encode(const std::string& text, int64_t max_tokens, bool keep_end) const {
  std::vector<int32_t> t = mac_tokenizer->encode(text);
  if (static_cast<int64_t>(t.size()) > max_tokens) {
    if (keep_end) t.erase(t.begin(), t.end() - max_tokens);
    else t.resize(static_cast<size_t>(max_tokens));
  }
  if (t.empty() && mac_tokenizer->eos_id() >= 0) t.push_back(mac_tokenizer->eos_id());  // an empty text
  return t;
}

std::pair<at::Tensor, at::Tensor> MacSystem::mac_pad(const std::vector<const std::vector<int32_t>*>& ids) const {
  int64_t longest = 1;
  for (const auto* t : ids) longest = std::max<int64_t>(longest, static_cast<int64_t>(t->size()));
  const int32_t pad = std::max(0, mac_tokenizer->pad_id());
  const auto B = static_cast<int64_t>(ids.size());
  at::Tensor out = torch::full({B, longest}, pad, torch::kInt64);
  at::Tensor mask = torch::zeros({B, longest}, torch::kInt64);
  auto o = out.accessor<int64_t, 2>();
  auto m = mask.accessor<int64_t, 2>();
  for (size_t i = 0; i < ids.size(); ++i)
    for (size_t j = 0; j < ids[i]->size(); ++j) o[i][j] = (*ids[i])[j], m[i][j] = 1;
  return {out, mask};
}

std::pair<at::Tensor, at::Tensor> MacSystem::mac_tokens(const std::vector<std::string>& texts, int64_t max_tokens,
                                                        bool keep_end) const {
  std::vector<std::vector<int32_t>> ids;
  std::vector<const std::vector<int32_t>*> views;
  ids.reserve(texts.size());
  for (const auto& text : texts) views.push_back(&ids.emplace_back(mac_encode(text, max_tokens, keep_end)));
  return mac_pad(views);
}

MacSystem build_mac_system(const config::Config& cfg, bool fresh_modules) {
  MacSystem s;
  load_base(cfg, s);
  if (!fresh_modules) return s;
  MacConfig c = mac_config_from(cfg, s.lm->config(), s.mac_tokenizer->vocab_size());
  torch::manual_seed(cfg.get_int("run.seed"));  // the same initial weights on every rank
  if (c.read_with_lm && s.mac_tokenizer != s.lm_tokenizer)
    core::fail("mac.read_with_lm: mac.tokenizer must be empty (the base LM's tokenizer), got {}",
               cfg.get_string("mac.tokenizer"));
  s.mac = MacModel(c);
  s.mac->attach_lm(s.lm);
  const bool from_lm = cfg.get_bool("mac.init_from_lm_embeddings");
  for (const char* part : {"amortizer", "question"}) {
    auto encoder = s.mac->named_children()[part == std::string("amortizer") ? "amortizer" : "question_encoder"];
    auto context = std::dynamic_pointer_cast<ContextEncoderImpl>(encoder);
    ENGRAM_CHECK(context != nullptr, "MacModel: unexpected module layout");
    const std::string folder = cfg.get_string(std::string("mac.") + part + ".hf");
    if (!folder.empty()) init_t5_from_hf(context->t5(), folder, std::string("mac.") + part + ".hf");
    else if (from_lm) init_t5_embeddings_from_lm(context->t5(), s, std::string("mac.") + part);
  }
  return s;
}

void save_mac_model(const std::string& path, MacModel& mac, const std::string& base, const std::string& config_yaml) {
  const std::string tmp = path + ".tmp";
  {
    io::H5File file(tmp, io::H5File::Mode::Create);
    file.create_group("/meta");
    file.set_attr("/meta", "format", std::string(kFormat));
    file.set_attr("/meta", "version", kVersion);
    file.set_attr("/meta", "architecture", mac_config_to_json(mac->config()));
    file.set_attr("/meta", "base", base);
    file.set_attr("/meta", "amortizer_fingerprint", mac->amortizer_fingerprint());
    file.set_attr("/meta", "config", config_yaml);
    for (const auto& item : mac->named_parameters()) file.write_tensor("/model/" + item.key(), item.value().detach());
    for (const auto& item : mac->named_buffers()) file.write_tensor("/model/" + item.key(), item.value().detach());
    file.close();
  }
  fs::rename(tmp, path);
}

MacSystem load_mac_system(const config::Config& cfg, const std::string& path) {
  return load_mac_system(cfg, path, eval::load_base_model(cfg.get_string("base.model")));
}

MacSystem load_mac_system(const config::Config& cfg, const std::string& path, const model::LanguageModel& base) {
  MacSystem s;
  attach_base(cfg, base, s);
  if (!fs::exists(path)) core::fail("{}: no trained MAC model here (run engram mac-train first)", path);
  io::H5File file(path, io::H5File::Mode::Read);
  if (!file.has_attr("/meta", "format") || file.attr_string("/meta", "format") != kFormat)
    core::fail("{}: not an engram MAC model file (no /meta format = {})", path, kFormat);
  if (file.attr_int("/meta", "version") != kVersion)
    core::fail("{}: MAC model file version {} (this engram reads {})", path, file.attr_int("/meta", "version"), kVersion);
  MacConfig c = mac_config_from_json(file.attr_string("/meta", "architecture"), path);
  const auto& lm = s.lm->config();
  if (c.d != lm.d_model || c.L != lm.n_layers || c.H != lm.n_heads)
    core::fail("{}: trained for a base LM with d {}, {} layers, {} heads; base.model {} has d {}, {} layers, {} heads", path,
               c.d, c.L, c.H, s.lm_source, lm.d_model, lm.n_layers, lm.n_heads);
  s.mac = MacModel(c);
  s.mac->attach_lm(s.lm);
  torch::NoGradGuard no_grad;
  auto load = [&](const std::string& name, at::Tensor& target) {
    const std::string object = "/model/" + name;
    if (!file.exists(object)) core::fail("{}: missing {}", path, object);
    at::Tensor value = file.read_tensor(object);
    if (value.sizes() != target.sizes())
      core::fail("{}: {} has shape {}, expected {}", path, object, shape_text(value.sizes()), shape_text(target.sizes()));
    target.copy_(value);
  };
  for (auto& item : s.mac->named_parameters()) load(item.key(), item.value());
  for (auto& item : s.mac->named_buffers()) load(item.key(), item.value());
  s.mac->eval();
  return s;
}

std::vector<std::pair<std::string, at::Tensor>> named_parameters_of(MacModel& mac) {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& item : mac->named_parameters()) out.emplace_back(item.key(), item.value());
  return out;
}

}  // namespace engram::mac
