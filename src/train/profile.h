#pragma once
// train.profile_steps: LibTorch's profiler over a window of training steps, written as
//   <dir>/profile.json   a Chrome trace (chrome://tracing, Perfetto): where a step spends its time
//   <dir>/profile_ops.txt  one line per op and input shapes, by total time: which call to make faster
// Recording slows the profiled steps down; only the shares mean anything.
#include <string>

namespace engram::train {

class StepProfile {
 public:
  StepProfile();   // starts recording this thread's ops (and those of the threads it starts)
  ~StepProfile();  // stops without writing if write() was not called
  // Stops and writes both files into `dir`; returns the trace's path.
  std::string write(const std::string& dir, int64_t steps);

 private:
  bool recording_ = false;
};

}  // namespace engram::train
