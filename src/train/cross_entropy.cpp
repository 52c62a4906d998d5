#include "train/cross_entropy.h"

#include <torch/torch.h>

#include "data/collate.h"

namespace engram::train {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

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
  return TokenCrossEntropy::apply(logits.reshape({-1, logits.size(-1)}), labels.reshape(-1));
}

}  // namespace engram::train
