#pragma once
// LongMem assembled (specs/longmem.md 1.5): the frozen backbone, the residual SideNet and this
// rank's memory. One segment [B, T]: the backbone runs (no grad), the SideNet reads the memory
// (chunks of earlier segments only), then the segment's layer-m keys and values are written:
// retrieve before write, so a segment never reads itself. All rows share the one memory (the
// reference's shared bank: rows are each other's distractors).
#include <cstdint>
#include <string>

#include <ATen/core/Tensor.h>

#include "methods/longmem/memory.h"
#include "methods/longmem/sidenet.h"
#include "model/decoder.h"

namespace engram::io {
class H5File;
}

namespace engram::longmem {

struct SegmentOutput {
  at::Tensor side_logits;      // [B, T, V] (undefined when the SideNet did not run)
  at::Tensor backbone_logits;  // [B, T, V]
  at::Tensor chunk_ids;        // [B, T, H, chunks] retrieved, or undefined (nothing read)
};

class LongMem {
 public:
  LongMem(model::Decoder backbone, const SideNetConfig& sidenet, int64_t chunk, int64_t memory_tokens);

  struct Pass {
    bool side = true;    // run the SideNet (false: backbone only, e.g. to fill the memory)
    bool read = true;    // the memory layer reads the memory
    bool write = true;   // the segment's keys and values go into the memory afterwards
  };
  SegmentOutput forward(const at::Tensor& input_ids, const Pass& pass);

  model::Decoder& backbone() { return backbone_; }
  SideNet& sidenet() { return sidenet_; }
  ChunkMemory& memory() { return memory_; }
  const SideNetConfig& config() const { return sidenet_->config(); }
  // An empty memory of `tokens` capacity (a whole number of chunks) in place of the current one.
  void resize_memory(int64_t tokens);
  // An empty memory searched as `search` says (exact or IVF) in place of the current one.
  void set_memory_search(const MemorySearch& search);

  // The SideNet's weights and what rebuilds it (reduction, memory layer, chunk, ...) under
  // `group`; load checks that the backbone has the shape the SideNet was made for.
  void save(io::H5File& file, const std::string& group) const;
  static LongMem load(model::Decoder backbone, const io::H5File& file, const std::string& group);

 private:
  model::Decoder backbone_;
  SideNet sidenet_;
  ChunkMemory memory_;
};

}  // namespace engram::longmem
