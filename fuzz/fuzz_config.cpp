// libFuzzer target: the YAML config loader and `--set` parser (config/config.h). Bad input must
// end in a UserError; any other exception or a sanitizer report is a finding. A config that loads
// must survive a round trip through to_yaml() with every value unchanged.
#include <cstddef>
#include <cstdint>
#include <string>

#include "config/config.h"
#include "core/error.h"

namespace {

using engram::config::Config;
using engram::config::Range;
using engram::config::Schema;

// One option of every type, with ranges and choices, in nested sections (as the real schema).
const Schema& schema() {
  static const Schema s = [] {
    Schema x;
    x.add_int("train.steps", 100, "steps", Range::at_least(0));
    x.add_float("train.lr", 1e-3, "lr", Range::at_least(0));
    x.add_float("train.beta1", 0.9, "beta1", Range::below(0, 1));
    x.add_bool("train.resume", true, "resume");
    x.add_string("model.preset", "gpt2", "preset", {"gpt2", "llama", "custom"});
    x.add_string("run.out_dir", "runs/x", "folder");
    x.add_list("pretrain.data", {"a.jsonl"}, "files");
    x.add_int("mac.retriever.top_k", 0, "k");
    return x;
  }();
  return s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  Config config(schema());
  try {
    config.merge_text(text, "<fuzz>");
  } catch (const engram::core::UserError&) {
    return 0;
  }
  Config again(schema());
  again.merge_text(config.to_yaml(), "<round trip>");  // a UserError here is a finding
  for (const auto& [name, option] : schema().options())
    if (again.value_of(name) != config.value_of(name)) __builtin_trap();
  try {
    Config overridden(schema());
    overridden.apply_override(text);
  } catch (const engram::core::UserError&) {
  }
  return 0;
}
