#include "dist/grad_reducer.h"

#include <ATen/ATen.h>

#include "core/error.h"
#include "dist/communicator.h"

namespace engram::dist {

struct GradReducer::Bucket {
  std::vector<size_t> members;  // indices into params_
  at::Tensor flat;              // packed gradients, one dtype
};

GradReducer::GradReducer(Communicator& comm, const std::vector<at::Tensor>& params, int64_t bucket_bytes,
                         int64_t first_bucket_bytes)
    : comm_(comm) {
  for (const at::Tensor& p : params)
    if (p.requires_grad()) params_.push_back(p);
  ENGRAM_CHECK(bucket_bytes > 0 && first_bucket_bytes > 0, "bucket sizes must be positive");

  // Fill buckets walking the parameters backwards; a new dtype or device also starts a bucket.
  std::vector<std::vector<size_t>> layout;
  int64_t filled = 0;
  for (size_t k = params_.size(); k-- > 0;) {
    const at::Tensor& p = params_[k];
    const int64_t cap = layout.size() == 1 ? first_bucket_bytes : bucket_bytes;  // cap of layout.back()
    bool start_new = layout.empty();
    if (!start_new) {
      const at::Tensor& head = params_[layout.back().front()];
      start_new = head.scalar_type() != p.scalar_type() || head.device() != p.device() ||
                  (filled > 0 && filled + static_cast<int64_t>(p.nbytes()) > cap);
    }
    if (start_new) {
      layout.emplace_back();
      filled = 0;
    }
    layout.back().push_back(k);
    filled += static_cast<int64_t>(p.nbytes());
  }
  for (auto& members : layout) {
    auto bucket = std::make_unique<Bucket>();
    int64_t numel = 0;
    for (size_t k : members) numel += params_[k].numel();
    bucket->flat = at::empty({numel}, params_[members.front()].options().requires_grad(false));
    bucket->members = std::move(members);
    buckets_.push_back(std::move(bucket));
  }
}

GradReducer::~GradReducer() = default;

std::vector<std::vector<size_t>> GradReducer::bucket_layout() const {
  std::vector<std::vector<size_t>> layout;
  for (const auto& b : buckets_) layout.push_back(b->members);
  return layout;
}

void GradReducer::after_backward(bool last_micro_step) {
  if (!last_micro_step || comm_.world_size() == 1) return;
  at::NoGradGuard no_grad;
  std::vector<WorkPtr> works;
  for (auto& bucket : buckets_) {
    int64_t offset = 0;
    for (size_t k : bucket->members) {
      at::Tensor& p = params_[k];
      at::Tensor slot = bucket->flat.narrow(0, offset, p.numel());
      if (p.grad().defined()) slot.copy_(p.grad().reshape(-1));
      else slot.zero_();
      offset += p.numel();
    }
    works.push_back(comm_.all_reduce_async(bucket->flat, ReduceOp::Avg));
    ++collectives_;
  }
  for (size_t b = 0; b < buckets_.size(); ++b) {
    works[b]->wait();
    int64_t offset = 0;
    for (size_t k : buckets_[b]->members) {
      at::Tensor& p = params_[k];
      at::Tensor averaged = buckets_[b]->flat.narrow(0, offset, p.numel()).view(p.sizes());
      if (p.grad().defined()) p.mutable_grad().copy_(averaged);
      else p.mutable_grad() = averaged.clone();
      offset += p.numel();
    }
  }
}

}  // namespace engram::dist
