#include "model/activation.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include "model/activation_kernels.h"

namespace engram::model {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

constexpr double kScale = kernels::kGeluScale;
constexpr double kCubic = kernels::kGeluCubic;

// u = kScale (x + kCubic x^3), built in place from x^2 (which the backward reuses).
at::Tensor sigmoid_argument(const at::Tensor& x, const at::Tensor& x_squared) {
  return x_squared.mul(kScale * kCubic).add_(kScale).mul_(x);
}

// Float32 takes the fused loops (activation_kernels.h), split across LibTorch's threads; other
// dtypes (double in tests, bf16 under autocast) the tensor-op form below.
bool fused(const at::Tensor& x) { return x.scalar_type() == at::kFloat && x.device().is_cpu(); }

constexpr int64_t kGrain = 1 << 15;  // elements per intra-op thread's piece, at least

struct GeluTanh : torch::autograd::Function<GeluTanh> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x) {
    ctx->save_for_backward({x});
    if (fused(x)) {
      const at::Tensor in = x.contiguous();
      at::Tensor out = at::empty_like(in);
      const float* xs = in.data_ptr<float>();
      float* ys = out.data_ptr<float>();
      at::parallel_for(0, in.numel(), kGrain, [&](int64_t b, int64_t e) { kernels::gelu_tanh_forward(xs + b, ys + b, e - b); });
      return out;
    }
    return sigmoid_argument(x, x * x).sigmoid_().mul_(x);
  }

  // d/dx [x s(u)] = s + x s (1 - s) du/dx, with du/dx = kScale (1 + 3 kCubic x^2).
  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const at::Tensor x = ctx->get_saved_variables()[0];
    if (fused(x) && grad_outputs[0].scalar_type() == at::kFloat) {
      const at::Tensor in = x.contiguous(), upstream = grad_outputs[0].contiguous();
      at::Tensor grad = at::empty_like(in);
      const float *xs = in.data_ptr<float>(), *dys = upstream.data_ptr<float>();
      float* dxs = grad.data_ptr<float>();
      at::parallel_for(0, in.numel(), kGrain, [&](int64_t b, int64_t e) { kernels::gelu_tanh_backward(xs + b, dys + b, dxs + b, e - b); });
      return {grad};
    }
    at::Tensor x_squared = x * x;
    at::Tensor s = sigmoid_argument(x, x_squared).sigmoid_();
    at::Tensor du = x_squared.mul_(3 * kScale * kCubic).add_(kScale);
    at::Tensor grad = s.neg().add_(1).mul_(x).mul_(du).add_(1).mul_(s).mul_(grad_outputs[0]);
    return {grad};
  }
};

}  // namespace

at::Tensor gelu_tanh(const at::Tensor& x) { return GeluTanh::apply(x); }

}  // namespace engram::model
