#pragma once
// Copies of a decoder's weights: a second model to train or to keep as a frozen reference (FT(C),
// SELF-PARAM's student and teacher), and snapshots of the weights to go back to.
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>

#include "model/decoder.h"

namespace engram::model {

// A copy of `source` with its own weights and buffers, every parameter trainable, in the source's
// train or eval mode.
Decoder trainable_copy(const Decoder& source);
// The same, frozen (no parameter requires grad) and in eval mode.
Decoder frozen_copy(const Decoder& source);

// The parameters by name, in module order (the tensors themselves, not copies): what checkpoints
// save and load.
std::vector<std::pair<std::string, at::Tensor>> named_weights(const Decoder& model);

// Detached clones of the parameters in module order, and back into a model of the same shape.
std::vector<at::Tensor> weights_of(const Decoder& model);
void load_weights(Decoder& model, const std::vector<at::Tensor>& weights);

}  // namespace engram::model
