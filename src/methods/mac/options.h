#pragma once
// mac.* options and the MacConfig they describe.
#include <cstdint>
#include <string>

#include "methods/mac/modules.h"
#include "model/decoder.h"
#include "model/generate.h"
#include "text/tokenizer.h"

namespace engram::config {
class Config;
class Schema;
}

namespace engram::mac {

void declare_mac_options(config::Schema& schema);
// The module sizes from mac.*, around a base LM of shape `lm`; `vocab`: the size of the
// amortizer/question tokenizer. Bad values -> core::UserError naming the option.
MacConfig mac_config_from(const config::Config& config, const model::DecoderConfig& lm, int64_t vocab);

// MacConfig <-> JSON (stored in mac.h5, so a trained model rebuilds its own shape).
std::string mac_config_to_json(const MacConfig& config);
MacConfig mac_config_from_json(const std::string& json, const std::string& origin);

}  // namespace engram::mac
