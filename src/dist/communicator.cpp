#include "dist/communicator.h"

#include <mutex>

#include <ATen/ATen.h>

#include "core/error.h"

namespace engram::dist {
namespace {

bool supported_dtype(at::ScalarType t) {
  switch (t) {
    case at::kFloat: case at::kDouble: case at::kBFloat16: case at::kHalf: case at::kInt: case at::kLong:
      return true;
    default:
      return false;
  }
}

// Runs `then` once, on the waiting thread, after `inner` has completed: the copy back into a
// non-contiguous caller tensor and the division of an emulated Avg.
class ThenWork final : public Work {
 public:
  ThenWork(WorkPtr inner, std::function<void()> then) : inner_(std::move(inner)), then_(std::move(then)) {}
  bool is_completed() override { return inner_->is_completed(); }
  void wait(std::optional<std::chrono::milliseconds> timeout) override {
    inner_->wait(timeout);
    std::call_once(once_, then_);
  }

 private:
  WorkPtr inner_;
  std::function<void()> then_;
  std::once_flag once_;
};

// What every launcher does after the backend has the op: a contiguous stand-in `buffer` is copied
// back into the caller's `target`, and an emulated Avg (a Sum on the wire) is divided by the world.
WorkPtr finish(WorkPtr work, at::Tensor buffer, at::Tensor target, int divide_by) {
  const bool copy_back = !buffer.is_same(target);
  if (divide_by == 0 && !copy_back) return work;
  return std::make_shared<ThenWork>(std::move(work), [buffer, target, divide_by, copy_back]() mutable {
    if (divide_by != 0) buffer.div_(divide_by);
    if (copy_back) target.copy_(buffer);
  });
}

}  // namespace

std::string reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return "sum";
    case ReduceOp::Avg: return "avg";
    case ReduceOp::Max: return "max";
    case ReduceOp::Min: return "min";
  }
  return "?";
}

OpInfo Communicator::next_op(const char* name, int64_t bytes, bool blocking) {
  return OpInfo{seq_++, name, bytes, blocking};
}

void Communicator::check_tensor(const at::Tensor& tensor, const char* what) const {
  ENGRAM_CHECK(tensor.defined(), "{}: undefined tensor", what);
  ENGRAM_CHECK(supported_dtype(tensor.scalar_type()), "{}: dtype {} is not supported by collectives", what,
               c10::toString(tensor.scalar_type()));
  ENGRAM_CHECK(tensor.is_cuda() == wants_cuda(), "{}: the {} backend takes {} tensors, got one on {}", what,
               backend_name(), wants_cuda() ? "CUDA" : "CPU", tensor.device().str());
}

void Communicator::check_root(int root, const char* what) const {
  ENGRAM_CHECK(root >= 0 && root < world_size(), "{}: root {} outside world of {}", what, root, world_size());
}

WorkPtr Communicator::launch_all_reduce(at::Tensor& tensor, ReduceOp op, bool blocking) {
  check_tensor(tensor, "all_reduce");
  const bool emulate_avg = op == ReduceOp::Avg && !native_avg();
  ENGRAM_CHECK(!(op == ReduceOp::Avg && at::isIntegralType(tensor.scalar_type(), false)),
               "all_reduce: avg of integer tensors is not defined");
  at::Tensor buffer = tensor.is_contiguous() ? tensor : tensor.contiguous();
  WorkPtr work = do_all_reduce(buffer, emulate_avg ? ReduceOp::Sum : op,
                               next_op("all_reduce", static_cast<int64_t>(tensor.nbytes()), blocking));
  return finish(std::move(work), buffer, tensor, emulate_avg ? world_size() : 0);
}

WorkPtr Communicator::launch_broadcast(at::Tensor& tensor, int root, bool blocking) {
  check_tensor(tensor, "broadcast");
  check_root(root, "broadcast");
  at::Tensor buffer = tensor.is_contiguous() ? tensor : tensor.contiguous();
  WorkPtr work = do_broadcast(buffer, root, next_op("broadcast", static_cast<int64_t>(tensor.nbytes()), blocking));
  return finish(std::move(work), buffer, tensor, 0);
}

WorkPtr Communicator::launch_all_gather(const at::Tensor& input, at::Tensor& output, bool blocking) {
  check_tensor(input, "all_gather");
  check_tensor(output, "all_gather output");
  ENGRAM_CHECK(output.scalar_type() == input.scalar_type(), "all_gather: output dtype differs from input");
  ENGRAM_CHECK(output.numel() == input.numel() * world_size(),
               "all_gather: output has {} elements, expected world {} x {}", output.numel(), world_size(),
               input.numel());
  at::Tensor in = input.contiguous();
  at::Tensor buffer = output.is_contiguous() ? output : output.contiguous();
  WorkPtr work = do_all_gather(in, buffer, next_op("all_gather", static_cast<int64_t>(output.nbytes()), blocking));
  return finish(std::move(work), buffer, output, 0);
}

WorkPtr Communicator::launch_reduce_scatter(const at::Tensor& input, at::Tensor& output, ReduceOp op,
                                                   bool blocking) {
  check_tensor(input, "reduce_scatter");
  check_tensor(output, "reduce_scatter output");
  ENGRAM_CHECK(output.scalar_type() == input.scalar_type(), "reduce_scatter: output dtype differs from input");
  ENGRAM_CHECK(input.numel() == output.numel() * world_size(),
               "reduce_scatter: input has {} elements, expected world {} x {}", input.numel(), world_size(),
               output.numel());
  ENGRAM_CHECK(!(op == ReduceOp::Avg && at::isIntegralType(input.scalar_type(), false)),
               "reduce_scatter: avg of integer tensors is not defined");
  const bool emulate_avg = op == ReduceOp::Avg && !native_avg();
  at::Tensor in = input.contiguous();
  at::Tensor buffer = output.is_contiguous() ? output : output.contiguous();
  WorkPtr work = do_reduce_scatter(in, buffer, emulate_avg ? ReduceOp::Sum : op,
                                   next_op("reduce_scatter", static_cast<int64_t>(input.nbytes()), blocking));
  return finish(std::move(work), buffer, output, emulate_avg ? world_size() : 0);
}

WorkPtr Communicator::all_reduce_async(at::Tensor& tensor, ReduceOp op) { return launch_all_reduce(tensor, op, false); }
WorkPtr Communicator::broadcast_async(at::Tensor& tensor, int root) { return launch_broadcast(tensor, root, false); }
WorkPtr Communicator::all_gather_async(const at::Tensor& input, at::Tensor& output) {
  return launch_all_gather(input, output, false);
}
WorkPtr Communicator::reduce_scatter_async(const at::Tensor& input, at::Tensor& output, ReduceOp op) {
  return launch_reduce_scatter(input, output, op, false);
}

void Communicator::all_reduce(at::Tensor& tensor, ReduceOp op) { launch_all_reduce(tensor, op, true)->wait(); }
void Communicator::broadcast(at::Tensor& tensor, int root) { launch_broadcast(tensor, root, true)->wait(); }
void Communicator::all_gather(const at::Tensor& input, at::Tensor& output) {
  launch_all_gather(input, output, true)->wait();
}
at::Tensor Communicator::all_gather(const at::Tensor& input) {
  std::vector<int64_t> shape{world_size()};
  for (int64_t s : input.sizes()) shape.push_back(s);
  at::Tensor output = at::empty(shape, input.options());
  all_gather(input, output);
  return output;
}
void Communicator::reduce_scatter(const at::Tensor& input, at::Tensor& output, ReduceOp op) {
  launch_reduce_scatter(input, output, op, true)->wait();
}

void Communicator::barrier() { do_barrier(next_op("barrier", 0, true)); }

void Communicator::broadcast_bytes(std::string& bytes, int root) {
  check_root(root, "broadcast_bytes");
  do_broadcast_bytes(bytes, root, next_op("broadcast_bytes", static_cast<int64_t>(bytes.size()), true));
}

std::vector<std::string> Communicator::all_gather_bytes(const std::string& bytes) {
  return do_all_gather_bytes(bytes, next_op("all_gather_bytes", static_cast<int64_t>(bytes.size()), true));
}

}  // namespace engram::dist
