// Activation checkpointing of one decoder block (DecoderImpl::set_activation_checkpointing).
#include "model/decoder_internal.h"

#include <torch/torch.h>

namespace engram::model::detail {
namespace {

// Runs one block without keeping its activations, and recomputes them in backward: forward under
// no_grad saving the block input and the generator state; backward re-runs the block with grad on
// from the same generator state (same dropout masks), back-propagates through it (which also
// accumulates the block's parameter gradients), and returns the input's gradient.
// The block and what it shares with the others (passed as one non-tensor argument: autograd
// tracks only x).
struct BlockCall {
  BlockImpl* block;
  const AttnContext& ctx;  // its bias, fused, key_real, cos and sin
};

AttnContext saved_context(torch::autograd::AutogradContext* ctx) {
  AttnContext actx;
  actx.bias = ctx->saved_data["bias"].toTensor();
  actx.fused = ctx->saved_data["fused"].toBool();
  actx.key_real = ctx->saved_data["key_real"].toTensor();
  actx.cos = ctx->saved_data["cos"].toTensor();
  actx.sin = ctx->saved_data["sin"].toTensor();
  return actx;
}

struct CheckpointedBlock : public torch::autograd::Function<CheckpointedBlock> {
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, at::Tensor x,
                                                const BlockCall& call) {
    ctx->saved_data["block"] = reinterpret_cast<int64_t>(call.block);
    ctx->saved_data["rng"] = at::detail::getDefaultCPUGenerator().get_state();
    ctx->saved_data["bias"] = call.ctx.bias;
    ctx->saved_data["fused"] = call.ctx.fused;
    ctx->saved_data["key_real"] = call.ctx.key_real;
    ctx->saved_data["cos"] = call.ctx.cos;
    ctx->saved_data["sin"] = call.ctx.sin;
    ctx->save_for_backward({x});
    torch::NoGradGuard no_grad;
    return {call.block->forward(x, saved_context(ctx))};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_out) {
    auto* block = reinterpret_cast<BlockImpl*>(ctx->saved_data["block"].toInt());
    at::Tensor x = ctx->get_saved_variables()[0].detach().requires_grad_(true);
    at::Generator gen = at::detail::getDefaultCPUGenerator();
    at::Tensor now = gen.get_state();
    gen.set_state(ctx->saved_data["rng"].toTensor());
    const AttnContext actx = saved_context(ctx);
    at::Tensor y;
    {
      torch::AutoGradMode enable(true);
      y = block->forward(x, actx);
    }
    gen.set_state(now);
    torch::autograd::backward({y}, {grad_out[0]});
    return {x.grad(), at::Tensor()};
  }
};

}  // namespace

at::Tensor checkpointed_block(BlockImpl& block, const at::Tensor& x, const AttnContext& ctx) {
  return CheckpointedBlock::apply(x, BlockCall{&block, ctx})[0];
}

}  // namespace engram::model::detail
