#pragma once
// Everything a MAC command works with: the frozen base LM and its tokenizer, the tokenizer of
// the amortizer and question encoder, and the MAC modules; plus MAC's model file.
//
// mac.h5 (HDF5, readable with h5py):
//   /meta  format = "engram-mac", version = 1, architecture (MacConfig JSON), base (the base LM
//          it was trained on), amortizer_fingerprint, config (the effective YAML)
//   /model/<name>  every MAC parameter and buffer (the base LM is not copied: it is frozen)
#include <memory>
#include <string>
#include <vector>

#include "methods/mac/modules.h"
#include "model/decoder.h"
#include "model/language_model.h"
#include "text/tokenizer.h"

namespace engram::config {
class Config;
}

namespace engram::mac {

struct MacSystem {
  model::Decoder lm{nullptr};                      // frozen: no parameter requires grad
  std::shared_ptr<text::Tokenizer> lm_tokenizer;
  std::shared_ptr<text::Tokenizer> mac_tokenizer;  // the base LM's unless mac.tokenizer is set
  std::string lm_source;
  MacModel mac{nullptr};

  // Token ids of texts for the amortizer / question encoder: [B, S] right-padded ids and mask.
  // Each text is cut to `max_tokens` (keep_end: its last tokens, as for questions).
  std::pair<at::Tensor, at::Tensor> mac_tokens(const std::vector<std::string>& texts, int64_t max_tokens,
                                               bool keep_end) const;
  // The same in two steps, for callers that encode once and batch many times: one text's ids
  // (cut as above; an empty text becomes EOS), then a batch of such ids padded into [B, S].
  std::vector<int32_t> mac_encode(const std::string& text, int64_t max_tokens, bool keep_end) const;
  std::pair<at::Tensor, at::Tensor> mac_pad(const std::vector<const std::vector<int32_t>*>& ids) const;
};

// The base LM of base.model (engram model file or Hugging Face folder), frozen, and the tokenizers.
// With `fresh_modules`: new MAC modules from mac.* (initialised with run.seed; T5 weights from
// mac.amortizer.hf / mac.question.hf when set).
MacSystem build_mac_system(const config::Config& config, bool fresh_modules);

// The trained MAC of PATH (mac.h5) around the base LM of base.model. A file trained on another
// base LM shape, or a bad file -> core::UserError naming it.
MacSystem load_mac_system(const config::Config& config, const std::string& path);
// The same around a base LM already loaded and frozen (the evaluation shares one between
// contenders: eval::load_base_model).
MacSystem load_mac_system(const config::Config& config, const std::string& path, const model::LanguageModel& base);

void save_mac_model(const std::string& path, MacModel& mac, const std::string& base, const std::string& config_yaml);

// Parameters by name (for the trainer and the file).
std::vector<std::pair<std::string, at::Tensor>> named_parameters_of(MacModel& mac);

}  // namespace engram::mac
