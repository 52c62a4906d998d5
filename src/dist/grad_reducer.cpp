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
  if (!last_micro_step) return;
  at::NoGradGuard no_grad;
  std::vector<WorkPtr> works;
  for (auto& bucket : buckets_) {
    // Steady state: every gradient already is a view into its bucket slot (backward accumulated
    // into it), so nothing is copied. A gradient that is not (first step, or an optimizer that set
    // it to none) is copied into its slot once and from then on is a view of it.
    // (The check compares raw addresses: making 200 narrow() views would cost more than the
    // all_reduce of a small bucket.)
    char* base = static_cast<char*>(bucket->flat.data_ptr());
    const int64_t element = bucket->flat.element_size();
    int64_t offset = 0;
    for (size_t k : bucket->members) {
      at::Tensor& p = params_[k];
      const int64_t begin = offset;
      offset += p.numel();
      const at::Tensor& g = p.grad();
      if (g.defined() && g.data_ptr() == base + begin * element) continue;
      at::Tensor slot = bucket->flat.narrow(0, begin, p.numel());
      if (g.defined()) slot.copy_(g.reshape(-1));
      else slot.zero_();
      p.mutable_grad() = slot.view(p.sizes());
    }
    works.push_back(comm_.all_reduce_async(bucket->flat, ReduceOp::Avg));
    ++collectives_;
  }
  // The averaged values land in the bucket, which the gradients view: waiting is all that is left.
  for (auto& work : works) work->wait();
}

}  // namespace engram::dist
