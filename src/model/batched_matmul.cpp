#include "model/batched_matmul.h"

#include <cblas.h>

#include <algorithm>
#include <limits>
#include <vector>

#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>
#include <torch/torch.h>

namespace engram::model {
namespace {

// The BLAS layout of the last two dims of t [..., rows, cols]: row-major with leading dimension
// `ld` (trans false), or column-major, i.e. the row-major transpose (trans true). Either needs
// unit stride along one of the two dims.
struct Layout {
  bool ok = false;
  bool trans = false;
  int64_t ld = 0;
};

Layout layout_of(const at::Tensor& t) {
  const int64_t rows = t.size(-2), cols = t.size(-1), sr = t.stride(-2), sc = t.stride(-1);
  if ((sc == 1 || cols == 1) && sr >= std::max<int64_t>(cols, 1)) return {true, false, std::max<int64_t>(sr, 1)};
  if ((sr == 1 || rows == 1) && sc >= std::max<int64_t>(rows, 1)) return {true, true, std::max<int64_t>(sc, 1)};
  return {};
}

// Element offsets of each batch entry of t [..., r, c], in row-major order of the batch dims.
std::vector<int64_t> batch_offsets(const at::Tensor& t) {
  const int64_t dims = t.dim() - 2;
  std::vector<int64_t> offsets{0};
  for (int64_t d = 0; d < dims; ++d) {
    std::vector<int64_t> next;
    next.reserve(offsets.size() * static_cast<size_t>(t.size(d)));
    for (int64_t base : offsets)
      for (int64_t i = 0; i < t.size(d); ++i) next.push_back(base + i * t.stride(d));
    offsets = std::move(next);
  }
  return offsets;
}

// a [..., m, k] x b [..., k, n] with both float32 on the CPU and the same batch dims.
at::Tensor sgemm_batched(at::Tensor a, at::Tensor b) {
  Layout la = layout_of(a), lb = layout_of(b);
  if (!la.ok) a = a.contiguous(), la = layout_of(a);
  if (!lb.ok) b = b.contiguous(), lb = layout_of(b);
  const int64_t m = a.size(-2), k = a.size(-1), n = b.size(-1);
  std::vector<int64_t> out_sizes = a.sizes().vec();
  out_sizes.back() = n;
  at::Tensor c = at::empty(out_sizes, a.options());
  const std::vector<int64_t> oa = batch_offsets(a), ob = batch_offsets(b);
  const int64_t batch = static_cast<int64_t>(oa.size());
  if (c.numel() == 0) return c;
  if (k == 0) return c.zero_();
  const float* pa = a.data_ptr<float>();
  const float* pb = b.data_ptr<float>();
  float* pc = c.data_ptr<float>();
  const auto ta = la.trans ? CblasTrans : CblasNoTrans, tb = lb.trans ? CblasTrans : CblasNoTrans;
  // Entries per task: about 64k multiply-adds, so small products are not spread thinner than a
  // thread start costs.
  const int64_t grain = std::max<int64_t>(1, 65536 / std::max<int64_t>(m * n * k, 1));
  at::parallel_for(0, batch, grain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      cblas_sgemm(CblasRowMajor, ta, tb, static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), 1.0f,
                  pa + oa[static_cast<size_t>(i)], static_cast<int>(la.ld), pb + ob[static_cast<size_t>(i)],
                  static_cast<int>(lb.ld), 0.0f, pc + i * m * n, static_cast<int>(n));
  });
  return c;
}

struct BatchedMatmul : torch::autograd::Function<BatchedMatmul> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& a, const at::Tensor& b) {
    ctx->save_for_backward({a, b});
    return sgemm_batched(a, b);
  }
  // d a = d c b^T, d b = a^T d c: the same products on transposed views (no copies).
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor &a = saved[0], &b = saved[1], &dc = grads[0];
    at::Tensor da, db;
    if (ctx->needs_input_grad(0)) da = sgemm_batched(dc, b.transpose(-1, -2));
    if (ctx->needs_input_grad(1)) db = sgemm_batched(a.transpose(-1, -2), dc);
    return {da, db};
  }
};

bool takes_blas_path(const at::Tensor& a, const at::Tensor& b) {
  if (a.device().type() != at::kCPU || b.device().type() != at::kCPU) return false;
  if (a.scalar_type() != at::kFloat || b.scalar_type() != at::kFloat) return false;
  if (at::autocast::is_cpu_enabled()) return false;  // autocast decides the dtype there
  if (a.dim() < 3 || a.dim() != b.dim()) return false;
  if (a.size(-1) != b.size(-2)) return false;  // at::matmul reports the mismatch
  for (int64_t d = 0; d + 2 < a.dim(); ++d)
    if (a.size(d) != b.size(d)) return false;
  // cblas takes int sizes and leading dimensions.
  const int64_t limit = std::numeric_limits<int>::max();
  return a.size(-2) < limit && a.size(-1) < limit && b.size(-1) < limit && a.numel() < limit && b.numel() < limit;
}

}  // namespace

at::Tensor batched_matmul(const at::Tensor& a, const at::Tensor& b) {
  if (!takes_blas_path(a, b)) return at::matmul(a, b);
  return BatchedMatmul::apply(a, b);
}

}  // namespace engram::model
