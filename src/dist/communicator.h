#pragma once
// The data plane and control plane every method talks to. One interface, several backends:
//   mpi    - CPU tensors over MPI (one process per rank)
//   nccl   - CUDA tensors over NCCL, barrier/bytes over MPI
//   local  - world size 1, no communication
//   thread - N ranks as threads of one process (tests)
// Contract: all ranks issue the same collectives in the same order. Every collective gets a
// sequence number and a deadline (dist.timeout_s); a stalled one is reported (rank, op, seq,
// bytes) and ends the job (see watchdog.h).
//
// The public methods validate their arguments and handle what every backend would otherwise
// repeat (non-contiguous tensors, Avg on backends without a native average); backends
// implement the protected do_* methods on contiguous tensors only.
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "dist/work.h"

namespace at {
class Tensor;
}

namespace engram::dist {

enum class ReduceOp { Sum, Avg, Max, Min };
std::string reduce_op_name(ReduceOp op);

// What the watchdog and error messages say about one collective.
struct OpInfo {
  uint64_t seq = 0;
  std::string name;
  int64_t bytes = 0;
  // The caller waits for it right away (the blocking API): a backend may run it on the calling
  // thread when nothing else is queued, saving a thread hand-off per call.
  bool blocking = false;
};

class Communicator {
 public:
  explicit Communicator(std::chrono::milliseconds timeout) : timeout_(timeout) {}
  virtual ~Communicator() = default;
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  virtual std::string backend_name() const = 0;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  std::chrono::milliseconds timeout() const { return timeout_; }

  // In place: every rank ends with op(tensor over all ranks).
  WorkPtr all_reduce_async(at::Tensor& tensor, ReduceOp op = ReduceOp::Sum);
  // In place: every rank ends with root's tensor.
  WorkPtr broadcast_async(at::Tensor& tensor, int root);
  // output: [world, *input.shape]; output[r] = input of rank r.
  WorkPtr all_gather_async(const at::Tensor& input, at::Tensor& output);
  // input: [world, *output.shape]; output = op over ranks of input[rank].
  WorkPtr reduce_scatter_async(const at::Tensor& input, at::Tensor& output, ReduceOp op = ReduceOp::Sum);

  void all_reduce(at::Tensor& tensor, ReduceOp op = ReduceOp::Sum);
  void broadcast(at::Tensor& tensor, int root);
  void all_gather(const at::Tensor& input, at::Tensor& output);
  at::Tensor all_gather(const at::Tensor& input);
  void reduce_scatter(const at::Tensor& input, at::Tensor& output, ReduceOp op = ReduceOp::Sum);

  // Control plane (always synchronous, also watched by the deadline).
  void barrier();
  void broadcast_bytes(std::string& bytes, int root);
  std::vector<std::string> all_gather_bytes(const std::string& bytes);

  // Sequence number the next collective will get.
  uint64_t next_seq() const { return seq_; }

 protected:
  // Backends may rely on: tensors contiguous, on the backend's device, dtypes supported,
  // shapes consistent (checked here). `op` is never Avg unless native_avg() is true.
  virtual WorkPtr do_all_reduce(at::Tensor& tensor, ReduceOp op, const OpInfo& info) = 0;
  virtual WorkPtr do_broadcast(at::Tensor& tensor, int root, const OpInfo& info) = 0;
  virtual WorkPtr do_all_gather(const at::Tensor& input, at::Tensor& output, const OpInfo& info) = 0;
  virtual WorkPtr do_reduce_scatter(const at::Tensor& input, at::Tensor& output, ReduceOp op,
                                    const OpInfo& info) = 0;
  virtual void do_barrier(const OpInfo& info) = 0;
  virtual void do_broadcast_bytes(std::string& bytes, int root, const OpInfo& info) = 0;
  virtual std::vector<std::string> do_all_gather_bytes(const std::string& bytes, const OpInfo& info) = 0;
  virtual bool native_avg() const { return false; }
  // True for backends whose tensors live on a CUDA device.
  virtual bool wants_cuda() const { return false; }

 private:
  OpInfo next_op(const char* name, int64_t bytes, bool blocking);
  WorkPtr launch_all_reduce(at::Tensor& tensor, ReduceOp op, bool blocking);
  WorkPtr launch_broadcast(at::Tensor& tensor, int root, bool blocking);
  WorkPtr launch_all_gather(const at::Tensor& input, at::Tensor& output, bool blocking);
  WorkPtr launch_reduce_scatter(const at::Tensor& input, at::Tensor& output, ReduceOp op, bool blocking);
  void check_tensor(const at::Tensor& tensor, const char* what) const;
  void check_root(int root, const char* what) const;

  std::chrono::milliseconds timeout_;
  uint64_t seq_ = 0;
};

}  // namespace engram::dist
