#pragma once
// GradReducer must give exactly what one averaged all_reduce per tensor gives.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include "dist/communicator.h"
#include "dist/grad_reducer.h"

namespace engram::checks {

inline std::vector<at::Tensor> make_params(int rank, bool with_grads) {
  std::vector<int64_t> sizes = {300, 5, 1000, 64, 7, 2500, 1, 129};
  std::vector<at::Tensor> params;
  for (size_t k = 0; k < sizes.size(); ++k) {
    at::Tensor p = at::zeros({sizes[k]}, at::kFloat).requires_grad_(true);
    if (with_grads) p.mutable_grad() = at::arange(sizes[k], at::kFloat).mul(0.25f * (rank + 1)).add(static_cast<int64_t>(k));
    params.push_back(p);
  }
  return params;
}

inline void check_grad_reducer(dist::Communicator& comm) {
  const int r = comm.rank();
  // Small buckets (first 1 KB, then 4 KB) so the 8 parameters span several buckets.
  auto bucketed = make_params(r, true);
  dist::GradReducer reducer(comm, bucketed, 4096, 1024);
  auto layout = reducer.bucket_layout();
  EXPECT_GT(layout.size(), 2u);
  EXPECT_EQ(layout.front().front(), bucketed.size() - 1);  // reverse order: last parameter first

  // Gradient accumulation: earlier micro-steps do not communicate.
  reducer.after_backward(false);
  EXPECT_EQ(reducer.collectives_issued(), 0);
  reducer.after_backward(true);
  EXPECT_EQ(reducer.collectives_issued(), static_cast<int64_t>(layout.size()));

  auto reference = make_params(r, true);
  for (auto& p : reference) comm.all_reduce(p.mutable_grad(), dist::ReduceOp::Avg);
  for (size_t k = 0; k < bucketed.size(); ++k)
    EXPECT_TRUE(bucketed[k].grad().equal(reference[k].grad())) << "parameter " << k;

  // A second step: gradients are now views into the buckets and accumulate in place (as
  // backward does); one parameter had its gradient reset to none (set_to_none).
  for (size_t k = 0; k < bucketed.size(); ++k) {
    at::Tensor extra = at::full({bucketed[k].numel()}, static_cast<float>(r * 10 + k));
    if (k == 3) {
      bucketed[k].mutable_grad() = at::Tensor();
      reference[k].mutable_grad() = at::zeros_like(reference[k]);
    } else {
      bucketed[k].mutable_grad().add_(extra);
      reference[k].mutable_grad().add_(extra);
    }
  }
  reducer.after_backward(true);
  for (auto& p : reference) comm.all_reduce(p.mutable_grad(), dist::ReduceOp::Avg);
  for (size_t k = 0; k < bucketed.size(); ++k)
    EXPECT_TRUE(bucketed[k].grad().equal(reference[k].grad())) << "step 2, parameter " << k;
}

}  // namespace engram::checks
