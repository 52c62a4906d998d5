#include "methods/longmem/system.h"

#include <torch/torch.h>

#include "core/error.h"
#include "io/h5file.h"

namespace engram::longmem {

LongMem::LongMem(model::Decoder backbone, const SideNetConfig& sidenet, int64_t chunk, int64_t memory_tokens)
    : backbone_(backbone),
      sidenet_(SideNet(backbone, sidenet)),
      memory_(MemoryShape{backbone->config().n_heads, backbone->config().head_dim(), chunk, memory_tokens}) {
  backbone_->eval();
  for (auto& p : backbone_->parameters()) p.set_requires_grad(false);
  sidenet_->eval();  // inference unless the caller trains it
}

SegmentOutput LongMem::forward(const at::Tensor& input_ids, const Pass& pass) {
  const BackboneStates states = run_backbone(backbone_, input_ids, config().memory_layer);
  SegmentOutput out;
  out.backbone_logits = states.logits;
  if (pass.side) {
    SideOutput side = sidenet_->forward(states, pass.read ? &memory_ : nullptr);
    out.side_logits = side.logits;
    out.chunk_ids = side.chunk_ids;
  }
  if (pass.write) {
    const auto& c = backbone_->config();
    const int64_t n = input_ids.numel();  // batch-major: row 0's tokens, then row 1's, ...
    memory_.write(states.memory_k.reshape({n, c.n_heads, c.head_dim()}),
                  states.memory_v.reshape({n, c.n_heads, c.head_dim()}));
  }
  return out;
}

void LongMem::resize_memory(int64_t tokens) {
  MemoryShape shape = memory_.shape();
  shape.capacity_tokens = tokens;
  memory_ = ChunkMemory(shape, memory_.search());
}

void LongMem::set_memory_search(const MemorySearch& search) { memory_ = ChunkMemory(memory_.shape(), search); }

void LongMem::save(io::H5File& file, const std::string& group) const {
  const SideNetConfig& c = config();
  file.create_group(group);
  file.set_attr(group, "format", std::string("engram-longmem-sidenet"));
  file.set_attr(group, "reduction", c.reduction);
  file.set_attr(group, "memory_layer", c.memory_layer);
  file.set_attr(group, "retrieve_tokens", c.retrieve_tokens);
  file.set_attr(group, "memory", static_cast<int64_t>(c.memory));
  file.set_attr(group, "dropout", c.dropout);
  file.set_attr(group, "gate_scale", c.gate_scale);
  file.set_attr(group, "chunk", memory_.shape().chunk);
  file.set_attr(group, "memory_tokens", memory_.shape().capacity_tokens);
  file.set_attr(group, "backbone_layers", backbone_->config().n_layers);
  file.set_attr(group, "backbone_d_model", backbone_->config().d_model);
  for (const auto& [name, tensor] : sidenet_->named_weights()) file.write_tensor(group + "/" + name, tensor.detach());
}

LongMem LongMem::load(model::Decoder backbone, const io::H5File& file, const std::string& group) {
  if (!file.has_attr(group, "format") || file.attr_string(group, "format") != "engram-longmem-sidenet")
    core::fail("{}: no LongMem SideNet under '{}' (written by engram longmem-train)", file.path(), group);
  const auto& bc = backbone->config();
  if (file.attr_int(group, "backbone_layers") != bc.n_layers || file.attr_int(group, "backbone_d_model") != bc.d_model)
    core::fail("{}: the SideNet was made for a backbone of {} layers, d {}; base.model has {} layers, d {}",
               file.path(), file.attr_int(group, "backbone_layers"), file.attr_int(group, "backbone_d_model"),
               bc.n_layers, bc.d_model);
  SideNetConfig c;
  c.reduction = file.attr_int(group, "reduction");
  c.memory_layer = file.attr_int(group, "memory_layer");
  c.retrieve_tokens = file.attr_int(group, "retrieve_tokens");
  c.memory = file.attr_int(group, "memory") != 0;
  c.dropout = file.attr_double(group, "dropout");
  if (file.has_attr(group, "gate_scale")) c.gate_scale = file.attr_double(group, "gate_scale");
  LongMem system(std::move(backbone), c, file.attr_int(group, "chunk"), file.attr_int(group, "memory_tokens"));
  torch::NoGradGuard no_grad;
  for (auto& [name, tensor] : system.sidenet_->named_weights()) {
    const at::Tensor stored = file.read_tensor(group + "/" + name);
    if (!stored.sizes().equals(tensor.sizes()))
      core::fail("{}: SideNet weight {} has another shape than this backbone's SideNet", file.path(), name);
    tensor.copy_(stored);
  }
  return system;
}

}  // namespace engram::longmem
