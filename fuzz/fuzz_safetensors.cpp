// libFuzzer target: the safetensors parser (io/safetensors.h) on an in-memory file image, header
// and tensors, with and without the float32 conversion. Bad bytes must end in a UserError; any
// other exception or a sanitizer report is a finding. What parses must be self-consistent.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/error.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  for (bool to_float32 : {false, true}) {
    try {
      engram::io::SafetensorsReadOptions options;
      options.to_float32 = to_float32;
      const auto contents = engram::io::parse_safetensors(bytes, "<fuzz>", options);
      if (contents.names.size() != contents.tensors.size()) __builtin_trap();
      for (const auto& [name, tensor] : contents.tensors)
        if (!tensor.is_contiguous()) __builtin_trap();
    } catch (const engram::core::UserError&) {
    }
  }
  return 0;
}
