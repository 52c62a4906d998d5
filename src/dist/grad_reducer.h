#pragma once
// Data-parallel gradient averaging in buckets (the DDP reducer's scheme): gradients are packed,
// in reverse parameter order (the order backward produces them), into flat buffers of at most
// `bucket_bytes` (the first one `first_bucket_bytes`, so communication starts early); each bucket
// is one averaged all_reduce. Buckets are launched asynchronously: bucket k+1 is packed while
// bucket k is on the wire. After the first reduction each gradient is a view into its bucket
// (PyTorch DDP's gradient_as_bucket_view), so backward accumulates straight into the buffer that
// is sent and nothing is copied in or out. With gradient accumulation, nothing is communicated
// until the last micro-step.
#include <cstdint>
#include <memory>
#include <vector>

namespace at {
class Tensor;
}

namespace engram::dist {

class Communicator;

constexpr int64_t kDefaultBucketBytes = 25 * 1024 * 1024;
constexpr int64_t kDefaultFirstBucketBytes = 1 * 1024 * 1024;

class GradReducer {
 public:
  // `params`: the trainable parameters (those with requires_grad); every rank passes the same list.
  GradReducer(Communicator& comm, const std::vector<at::Tensor>& params,
              int64_t bucket_bytes = kDefaultBucketBytes, int64_t first_bucket_bytes = kDefaultFirstBucketBytes);
  ~GradReducer();

  // Call after the backward pass of every micro-step. Averages gradients across ranks only when
  // `last_micro_step`; earlier micro-steps keep accumulating locally. A parameter without a
  // gradient counts as a zero gradient (and gets one), so ranks stay in step.
  void after_backward(bool last_micro_step = true);

  // Parameter indices of each bucket, in launch order (for tests and logs).
  std::vector<std::vector<size_t>> bucket_layout() const;
  int64_t collectives_issued() const { return collectives_; }

 private:
  struct Bucket;
  Communicator& comm_;
  std::vector<at::Tensor> params_;
  std::vector<std::unique_ptr<Bucket>> buckets_;
  int64_t collectives_ = 0;
};

}  // namespace engram::dist
