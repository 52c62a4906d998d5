#pragma once
// The safetensors format (https://github.com/huggingface/safetensors), read and written without
// the Rust library:
//   8 bytes   N, little-endian uint64: the header length
//   N bytes   JSON: {"NAME": {"dtype": "F32", "shape": [2, 3], "data_offsets": [BEGIN, END]}, ...,
//                    "__metadata__": {"key": "value"}}   (padded with spaces)
//   rest      the byte buffer; offsets are relative to its start, little-endian, row-major.
//
// The reader bound-checks everything it reads, as the reference implementation does: the header
// length against the file size and kMaxHeaderBytes, the JSON, the dtype, every shape entry,
// shape product * dtype size == END - BEGIN (overflow-checked), offsets inside the buffer, the
// tensors covering the buffer exactly (no overlap, no gap, no trailing bytes), unique names.
// Every problem is a core::UserError "FILE: <what> (tensor 'NAME')"; no input crashes it.
//
// Sharded checkpoints: model.safetensors.index.json {"metadata": {...}, "weight_map": {NAME: FILE}}.
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <ATen/ATen.h>

namespace engram::io {

constexpr uint64_t kSafetensorsMaxHeaderBytes = uint64_t{100} << 20;  // 100 MiB

struct SafetensorsTensorInfo {
  std::string name;
  std::string dtype;       // "F32", "F16", "BF16", "F64", "I64", "I32", "I16", "I8", "U8", "BOOL"
  at::ScalarType scalar_type = at::kFloat;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // data_offsets, relative to the byte buffer
};

struct SafetensorsHeader {
  std::map<std::string, std::string> metadata;
  std::vector<SafetensorsTensorInfo> tensors;  // sorted by offset
  uint64_t data_start = 0;                     // 8 + N: where the byte buffer starts in the file
  const SafetensorsTensorInfo* find(const std::string& name) const;  // nullptr when absent
};

struct SafetensorsReadOptions {
  // Floating tensors (F16, BF16, F64) are converted to float32; integer and bool ones keep their type.
  bool to_float32 = false;
};

struct SafetensorsContents {
  std::map<std::string, std::string> metadata;
  std::vector<std::string> names;            // in the order of their offsets
  std::map<std::string, at::Tensor> tensors; // contiguous CPU tensors owning their memory
};

// Parses and validates the header of an in-memory file image (`bytes` is the whole file; `file`
// only names it in messages).
SafetensorsHeader parse_safetensors_header(std::string_view bytes, const std::string& file);
// Parses, validates and copies out every tensor of an in-memory file image.
SafetensorsContents parse_safetensors(std::string_view bytes, const std::string& file,
                                      const SafetensorsReadOptions& options = {});

// Reads a file (memory-mapped): UserError "FILE: cannot open: <reason>" and all of the above.
SafetensorsHeader read_safetensors_header(const std::string& path);
SafetensorsContents read_safetensors(const std::string& path, const SafetensorsReadOptions& options = {});

// Writes `tensors` (CPU or not, any layout; F64, F32, F16, BF16, I64, I32, I16, I8, U8, bool) and
// `metadata` to PATH.tmp, syncs it and renames it to PATH, so PATH only ever holds a complete
// file. Tensors are laid out as the reference writer does (larger dtypes first, then by name) and
// the header is padded with spaces to a multiple of 8 bytes. Empty or duplicate names, the name
// "__metadata__" or an unsupported dtype -> UserError naming the tensor.
void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata = {});
void write_safetensors(const std::string& path, const std::map<std::string, at::Tensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// The dtype name for a scalar type ("F32", ...); UserError for types safetensors cannot hold here.
std::string safetensors_dtype_name(at::ScalarType type);

// --- Sharded checkpoints -------------------------------------------------------------------------

struct SafetensorsIndex {
  std::string path;                                  // the index file
  std::map<std::string, std::string> weight_map;     // tensor name -> shard file (relative)
  std::vector<std::string> files;                    // the distinct shard files, sorted
  std::map<std::string, std::string> metadata;       // "metadata" entries with string/number values
};

// Reads model.safetensors.index.json. Invalid JSON, a missing or non-object "weight_map", a
// non-string file name, an absolute file name or one with a ".." component -> UserError.
SafetensorsIndex read_safetensors_index(const std::string& path);

// Reads every shard of an index (shard paths are relative to the index's folder). Each tensor of
// the weight map must be in its shard; a tensor in a shard but not in the map, or in two shards,
// is a UserError too.
SafetensorsContents read_safetensors_sharded(const std::string& index_path,
                                             const SafetensorsReadOptions& options = {});

}  // namespace engram::io
