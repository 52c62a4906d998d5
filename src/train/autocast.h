#pragma once
// bf16 autocast (train.bf16, mac.train.bf16) for the lifetime of a guard: the trainer's forward
// passes, and tests that run a model as the trainer does.
#include <ATen/autocast_mode.h>

namespace engram::train {

// CPU and CUDA ops both: they are separate switches in LibTorch (CPU's alone left a model on a
// GPU in float32). Off (`on` false) it does nothing.
class Bf16Autocast {
 public:
  explicit Bf16Autocast(bool on) : on_(on) {
    if (!on_) return;
    at::autocast::set_cpu_enabled(true);
    at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
    at::autocast::set_enabled(true);
    at::autocast::set_autocast_gpu_dtype(at::kBFloat16);
    at::autocast::increment_nesting();
  }
  ~Bf16Autocast() {
    if (!on_) return;
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    at::autocast::set_cpu_enabled(false);
    at::autocast::set_enabled(false);
  }
  Bf16Autocast(const Bf16Autocast&) = delete;
  Bf16Autocast& operator=(const Bf16Autocast&) = delete;

 private:
  bool on_;
};

}  // namespace engram::train
