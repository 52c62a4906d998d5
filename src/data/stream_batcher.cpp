#include "data/stream_batcher.h"

#include <ATen/ATen.h>

#include "core/error.h"

namespace engram::data {

StreamBatcher::StreamBatcher(std::vector<int32_t> tokens, int64_t batch, int64_t seq_len)
    : batch_(batch), seq_len_(seq_len) {
  ENGRAM_CHECK(batch > 0 && seq_len > 0, "stream batcher: batch {} seq_len {}", batch, seq_len);
  const auto n = static_cast<int64_t>(tokens.size());
  const int64_t passage = n / batch;  // the tail that does not fill all rows is dropped
  // Each step needs seq_len + 1 tokens of a passage (inputs plus the shifted targets).
  steps_ = passage > 0 ? (passage - 1) / seq_len : 0;
  if (steps_ == 0)
    core::fail("stream of {} tokens is too short for batch {} x seq_len {} (needs at least {})", n, batch, seq_len,
               batch * (seq_len + 1));
  passages_ = at::from_blob(tokens.data(), {batch * passage}, at::kInt).to(at::kLong).view({batch, passage});
}

std::pair<at::Tensor, at::Tensor> StreamBatcher::step(int64_t t) const {
  ENGRAM_CHECK(t >= 0 && t < steps_, "stream batcher: step {} of {}", t, steps_);
  at::Tensor inputs = passages_.narrow(1, t * seq_len_, seq_len_).contiguous();
  at::Tensor targets = passages_.narrow(1, t * seq_len_ + 1, seq_len_).contiguous();
  return {inputs, targets};
}

}  // namespace engram::data
