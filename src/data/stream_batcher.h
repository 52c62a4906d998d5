#pragma once
// Transformer-XL style batches of one long token stream: the stream is cut into B contiguous
// passages; row b of step t is block t (seq_len tokens) of passage b, and its targets are the
// same block shifted by one token. Consecutive steps continue each row's passage, which is what
// a model with memory of earlier segments (LongMem) needs.
#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>

namespace engram::data {

class StreamBatcher {
 public:
  StreamBatcher(std::vector<int32_t> tokens, int64_t batch, int64_t seq_len);
  int64_t steps() const { return steps_; }
  int64_t batch() const { return batch_; }
  // inputs and targets, both [batch, seq_len] int64.
  std::pair<at::Tensor, at::Tensor> step(int64_t t) const;

 private:
  at::Tensor passages_;  // [batch, passage_len] int64
  int64_t batch_, seq_len_, steps_;
};

}  // namespace engram::data
