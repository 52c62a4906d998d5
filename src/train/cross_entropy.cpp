#include "train/cross_entropy.h"

#include <cstring>
#include <limits>
#include <vector>

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include "core/error.h"
#include "data/collate.h"
#include "train/cross_entropy_kernels.h"

namespace engram::train {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Rows per intra-op task: a row of the quickstart's vocabulary is ~2k exps.
constexpr int64_t kRowGrain = 16;

// CPU float32 and bf16 logits take the fused row loops; anything else (CUDA, double) the tensor ops.
bool fused(const at::Tensor& logits) {
  return logits.device().is_cpu() &&
         (logits.scalar_type() == at::kFloat || logits.scalar_type() == at::kBFloat16);
}

// The fused form computes the gradient in the forward (the row is in cache then) for an upstream
// gradient of 1, and the backward only scales it when the upstream gradient is not 1.
struct FusedTokenCrossEntropy : torch::autograd::Function<FusedTokenCrossEntropy> {
  // logits [N, V] contiguous, labels [N] int64; keep_grad false (no backward will come): the
  // gradient rows go to per-task scratch and are dropped.
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& logits, const at::Tensor& labels, bool keep_grad) {
    const int64_t N = logits.size(0), V = logits.size(1);
    const at::Tensor ids = labels.contiguous();
    const int64_t* label = ids.data_ptr<int64_t>();
    int64_t counted = 0;
    for (int64_t i = 0; i < N; ++i) {
      if (label[i] == data::kIgnoreLabel) continue;
      if (label[i] < 0 || label[i] >= V)
        core::fail("cross-entropy: label {} at row {} is outside the vocabulary [0, {})", label[i], i, V);
      ++counted;
    }
    constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
    if (counted == 0) {  // the mean of nothing: NaN, as LibTorch's (and the gradient with it)
      ctx->save_for_backward({at::full_like(logits, kNaN)});
      return at::scalar_tensor(kNaN, logits.options().dtype(at::kFloat));
    }
    const float share = 1.0f / static_cast<float>(counted);  // each counted row's part of the mean
    at::Tensor grad = keep_grad ? at::empty_like(logits) : at::Tensor();
    std::vector<float> row_loss(static_cast<size_t>(N), 0.0f);
    const bool bf16 = logits.scalar_type() == at::kBFloat16;
    const size_t elem = bf16 ? sizeof(uint16_t) : sizeof(float);
    const auto* x_all = static_cast<const char*>(logits.data_ptr());
    auto* g_all = keep_grad ? static_cast<char*>(grad.data_ptr()) : nullptr;
    at::parallel_for(0, N, kRowGrain, [&](int64_t begin, int64_t end) {
      // float32 copies of a bf16 row and its gradient; the dropped gradient row without keep_grad.
      std::vector<float> scratch(static_cast<size_t>((bf16 ? 2 : 1) * V));
      std::vector<uint16_t> bf16_row(bf16 && !keep_grad ? static_cast<size_t>(V) : 0);
      for (int64_t i = begin; i < end; ++i) {
        const size_t offset = static_cast<size_t>(i * V) * elem;
        if (label[i] == data::kIgnoreLabel) {
          if (keep_grad) std::memset(g_all + offset, 0, static_cast<size_t>(V) * elem);
          continue;
        }
        if (bf16) {
          auto* g = keep_grad ? reinterpret_cast<uint16_t*>(g_all + offset) : bf16_row.data();
          row_loss[static_cast<size_t>(i)] = kernels::cross_entropy_row_bf16(
              reinterpret_cast<const uint16_t*>(x_all + offset), V, label[i], share, g, scratch.data(),
              scratch.data() + V);
        } else {
          float* g = keep_grad ? reinterpret_cast<float*>(g_all + offset) : scratch.data();
          row_loss[static_cast<size_t>(i)] =
              kernels::cross_entropy_row(reinterpret_cast<const float*>(x_all + offset), V, label[i], share, g);
        }
      }
    });
    // The sum in a fixed order (double), whatever the thread count.
    double total = 0.0;
    for (float l : row_loss) total += l;
    if (keep_grad) ctx->save_for_backward({grad});
    return at::scalar_tensor(total / static_cast<double>(counted), logits.options().dtype(at::kFloat));
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    at::Tensor grad = ctx->get_saved_variables()[0];
    const at::Tensor& upstream = grad_outputs[0];
    if (upstream.item<float>() != 1.0f) grad = grad * upstream.to(grad.scalar_type());
    return {grad, at::Tensor(), at::Tensor()};
  }
};

struct TokenCrossEntropy : torch::autograd::Function<TokenCrossEntropy> {
  // logits [N, V], labels [N] -> the mean of -log p(label) over the rows that are not ignored.
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& logits, const at::Tensor& labels) {
    at::Tensor log_probs = at::log_softmax(logits, -1, at::kFloat);
    at::Tensor valid = labels.ne(data::kIgnoreLabel);
    at::Tensor index = labels.masked_fill(valid.logical_not(), 0).unsqueeze(1);  // [N, 1]
    // Each counted row's share of the mean; 0 for ignored rows (NaN when none counts, as LibTorch).
    at::Tensor share = valid.to(at::kFloat) / valid.sum().to(at::kFloat);
    ctx->save_for_backward({log_probs, index, share});
    ctx->saved_data["dtype"] = static_cast<int64_t>(logits.scalar_type());
    return -(log_probs.gather(1, index).squeeze(1) * share).sum();
  }

  // d loss / d logits = g * share * (softmax - one_hot(label)).
  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor& log_probs = saved[0];
    const at::Tensor& index = saved[1];
    at::Tensor row_scale = (grad_outputs[0] * saved[2]).unsqueeze(1);  // [N, 1]
    at::Tensor grad = at::exp(log_probs).mul_(row_scale);
    grad.scatter_add_(1, index, -row_scale);
    const auto dtype = static_cast<at::ScalarType>(ctx->saved_data["dtype"].toInt());
    return {grad.to(dtype), at::Tensor()};
  }
};

}  // namespace

at::Tensor token_cross_entropy(const at::Tensor& logits, const at::Tensor& labels) {
  const at::Tensor rows = logits.reshape({-1, logits.size(-1)}), flat = labels.reshape(-1);
  if (fused(rows) && rows.size(1) > 0) {
    const bool keep_grad = torch::GradMode::is_enabled() && rows.requires_grad();
    return FusedTokenCrossEntropy::apply(rows.contiguous(), flat.to(at::kLong), keep_grad);
  }
  return TokenCrossEntropy::apply(rows, flat);
}

}  // namespace engram::train
