#pragma once
// Checks of every collective and dtype against values each rank computes for itself. Shared by
// the Thread-backend tests (ranks as threads) and the MPI tests (ranks as processes), so both
// backends answer to the same expectations.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include "dist/communicator.h"

namespace engram::checks {

inline std::vector<at::ScalarType> all_dtypes() {
  return {at::kFloat, at::kDouble, at::kBFloat16, at::kHalf, at::kInt, at::kLong};
}

// Rank r holds x_r[i] = (r + 1) * (i % 7 + 1) - 3 * r; small integers, exact in every dtype.
inline at::Tensor rank_values(int rank, int64_t n, at::ScalarType dtype) {
  at::Tensor i = at::arange(n, at::kLong).remainder(7).add(1);
  return (i * (rank + 1) - 3 * rank).to(dtype);
}

inline void check_all_reduce(dist::Communicator& comm) {
  const int w = comm.world_size(), r = comm.rank();
  for (auto dtype : all_dtypes()) {
    SCOPED_TRACE(c10::toString(dtype));
    at::Tensor want_sum = at::zeros({37}, at::kLong), want_max, want_min;
    for (int k = 0; k < w; ++k) {
      at::Tensor x = rank_values(k, 37, at::kLong);
      want_sum += x;
      want_max = k == 0 ? x : at::maximum(want_max, x);
      want_min = k == 0 ? x : at::minimum(want_min, x);
    }
    at::Tensor t = rank_values(r, 37, dtype);
    comm.all_reduce(t, dist::ReduceOp::Sum);
    EXPECT_TRUE(t.to(at::kLong).equal(want_sum));
    t = rank_values(r, 37, dtype);
    comm.all_reduce(t, dist::ReduceOp::Max);
    EXPECT_TRUE(t.to(at::kLong).equal(want_max));
    t = rank_values(r, 37, dtype);
    comm.all_reduce(t, dist::ReduceOp::Min);
    EXPECT_TRUE(t.to(at::kLong).equal(want_min));
    if (at::isFloatingType(dtype)) {
      t = rank_values(r, 37, dtype);
      comm.all_reduce(t, dist::ReduceOp::Avg);
      at::Tensor want_avg = want_sum.to(at::kDouble) / w;
      EXPECT_TRUE(at::allclose(t.to(at::kDouble), want_avg, 1e-2, 1e-2)) << t << want_avg;
    }
  }
}

inline void check_broadcast_and_gathers(dist::Communicator& comm) {
  const int w = comm.world_size(), r = comm.rank();
  for (auto dtype : all_dtypes()) {
    SCOPED_TRACE(c10::toString(dtype));
    for (int root = 0; root < w; ++root) {
      at::Tensor t = rank_values(r, 11, dtype);
      comm.broadcast(t, root);
      EXPECT_TRUE(t.equal(rank_values(root, 11, dtype))) << "root " << root;
    }
    at::Tensor mine = rank_values(r, 6, dtype).view({2, 3});
    at::Tensor gathered = comm.all_gather(mine);
    ASSERT_EQ(gathered.sizes(), (std::vector<int64_t>{w, 2, 3}));
    for (int k = 0; k < w; ++k) EXPECT_TRUE(gathered[k].equal(rank_values(k, 6, dtype).view({2, 3}))) << k;

    // reduce_scatter: input row k of every rank is summed into rank k's output.
    at::Tensor input = at::stack(std::vector<at::Tensor>(w, rank_values(r, 5, dtype)))
                           .add(at::arange(w, at::kLong).unsqueeze(1).to(dtype));
    at::Tensor output = at::empty({5}, at::TensorOptions().dtype(dtype));
    comm.reduce_scatter(input, output, dist::ReduceOp::Sum);
    at::Tensor want = at::zeros({5}, at::kLong);
    for (int k = 0; k < w; ++k) want += rank_values(k, 5, at::kLong) + r;
    EXPECT_TRUE(output.to(at::kLong).equal(want));
  }
}

inline void check_non_contiguous_and_async(dist::Communicator& comm) {
  const int w = comm.world_size(), r = comm.rank();
  // A transposed view: the result must land in the caller's strided tensor.
  at::Tensor base = rank_values(r, 12, at::kFloat).view({3, 4});
  at::Tensor view = base.t();
  ASSERT_FALSE(view.is_contiguous());
  comm.all_reduce(view, dist::ReduceOp::Sum);
  at::Tensor want = at::zeros({12}, at::kFloat);
  for (int k = 0; k < w; ++k) want += rank_values(k, 12, at::kFloat);
  EXPECT_TRUE(base.equal(want.view({3, 4})));

  at::Tensor column = at::zeros({4, 3}, at::kDouble).select(1, 1);  // stride 3
  if (r == 0) column.fill_(7);
  comm.broadcast(column, 0);
  EXPECT_TRUE(column.eq(7).all().item<bool>());

  // Several async collectives in flight, waited in issue order.
  std::vector<at::Tensor> tensors;
  std::vector<dist::WorkPtr> works;
  for (int i = 0; i < 5; ++i) {
    tensors.push_back(at::full({1000}, static_cast<double>(r + i), at::kDouble));
    works.push_back(comm.all_reduce_async(tensors.back(), dist::ReduceOp::Sum));
  }
  for (int i = 0; i < 5; ++i) {
    works[i]->wait(std::chrono::milliseconds(60000));
    EXPECT_TRUE(works[i]->is_completed());
    EXPECT_DOUBLE_EQ(tensors[i][999].item<double>(), w * (w - 1) / 2.0 + w * i);
  }
}

inline void check_bytes(dist::Communicator& comm) {
  const int w = comm.world_size(), r = comm.rank();
  std::string text = r == w - 1 ? std::string("hello\0world", 11) : "";
  comm.broadcast_bytes(text, w - 1);
  EXPECT_EQ(text, std::string("hello\0world", 11));
  auto all = comm.all_gather_bytes(std::string(static_cast<size_t>(r), 'x'));
  ASSERT_EQ(static_cast<int>(all.size()), w);
  for (int k = 0; k < w; ++k) EXPECT_EQ(all[k], std::string(static_cast<size_t>(k), 'x'));
  comm.barrier();
}

}  // namespace engram::checks
