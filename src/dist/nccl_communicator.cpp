#include "dist/nccl_communicator.h"

#include "core/error.h"

#ifdef ENGRAM_HAVE_NCCL

#include <cstring>
#include <thread>

#include <cuda_runtime.h>
#include <mpi.h>
#include <nccl.h>

#include <ATen/ATen.h>

#include "dist/watchdog.h"

namespace engram::dist {
namespace {

void check_cuda(cudaError_t rc, const char* call) {
  if (rc != cudaSuccess) throw core::InternalError(fmt::format("{} failed: {}", call, cudaGetErrorString(rc)));
}
void check_nccl(ncclResult_t rc, const char* call) {
  if (rc != ncclSuccess) throw core::InternalError(fmt::format("{} failed: {}", call, ncclGetErrorString(rc)));
}
#define ENGRAM_CUDA(call) check_cuda((call), #call)
#define ENGRAM_NCCL(call) check_nccl((call), #call)

ncclDataType_t nccl_type(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return ncclFloat32;
    case at::kDouble: return ncclFloat64;
    case at::kHalf: return ncclFloat16;
    case at::kBFloat16: return ncclBfloat16;
    case at::kInt: return ncclInt32;
    case at::kLong: return ncclInt64;
    default: ENGRAM_CHECK(false, "no NCCL type for {}", c10::toString(t));
  }
  return ncclFloat32;
}

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return ncclSum;
    case ReduceOp::Avg: return ncclAvg;
    case ReduceOp::Max: return ncclMax;
    case ReduceOp::Min: return ncclMin;
  }
  return ncclSum;
}

// Ends when the collective's end event has fired on the NCCL stream.
class NcclWork final : public Work {
 public:
  NcclWork(cudaEvent_t end, std::vector<at::Tensor> keep, OpInfo info)
      : end_(end), keep_(std::move(keep)), info_(std::move(info)) {}
  ~NcclWork() override { cudaEventDestroy(end_); }

  bool is_completed() override { return cudaEventQuery(end_) == cudaSuccess; }

  void wait(std::optional<std::chrono::milliseconds> timeout) override {
    if (!timeout) {
      // Order the compute stream after the collective; the host does not block.
      ENGRAM_CUDA(cudaStreamWaitEvent(cudaStreamLegacy, end_, 0));
      return;
    }
    auto deadline = std::chrono::steady_clock::now() + *timeout;
    while (cudaEventQuery(end_) == cudaErrorNotReady) {
      if (std::chrono::steady_clock::now() > deadline)
        throw TimeoutError(fmt::format("{} seq {} not finished after {} ms", info_.name, info_.seq, timeout->count()));
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
    ENGRAM_CUDA(cudaEventQuery(end_));
  }

 private:
  cudaEvent_t end_;
  std::vector<at::Tensor> keep_;
  OpInfo info_;
};

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(std::shared_ptr<Communicator> control, int device, std::chrono::milliseconds timeout)
      : Communicator(timeout), control_(std::move(control)), device_(device) {
    rank_ = control_->rank();
    world_ = control_->world_size();
    ENGRAM_CUDA(cudaSetDevice(device_));
    // Rank 0 makes the unique id; the MPI control plane carries it to everyone.
    ncclUniqueId id;
    if (rank_ == 0) ENGRAM_NCCL(ncclGetUniqueId(&id));
    std::string bytes(reinterpret_cast<const char*>(&id), sizeof(id));
    control_->broadcast_bytes(bytes, 0);
    ENGRAM_CHECK(bytes.size() == sizeof(id), "NCCL unique id of {} bytes", bytes.size());
    std::memcpy(&id, bytes.data(), sizeof(id));
    ENGRAM_NCCL(ncclCommInitRank(&comm_, world_, id, rank_));
    ENGRAM_CUDA(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    ncclComm_t comm = comm_;
    watchdog_ = std::make_unique<Watchdog>(rank_, "nccl", timeout, [comm](const std::string&) {
      ncclCommAbort(comm);
      MPI_Abort(MPI_COMM_WORLD, 3);
    });
    watchdog_->set_health_probe([comm]() -> std::string {
      ncclResult_t async = ncclSuccess;
      if (ncclCommGetAsyncError(comm, &async) != ncclSuccess || async == ncclSuccess) return "";
      return fmt::format("NCCL asynchronous error: {}", ncclGetErrorString(async));
    });
    control_->barrier();
  }

  ~NcclCommunicator() override {
    watchdog_.reset();
    cudaStreamSynchronize(stream_);
    ncclCommDestroy(comm_);
    cudaStreamDestroy(stream_);
  }

  std::string backend_name() const override { return "nccl"; }
  int rank() const override { return rank_; }
  int world_size() const override { return world_; }

 protected:
  bool native_avg() const override { return true; }
  bool wants_cuda() const override { return true; }

  WorkPtr do_all_reduce(at::Tensor& tensor, ReduceOp op, const OpInfo& info) override {
    return launch(info, {tensor}, [&] {
      ENGRAM_NCCL(ncclAllReduce(tensor.data_ptr(), tensor.data_ptr(), tensor.numel(), nccl_type(tensor.scalar_type()),
                                nccl_op(op), comm_, stream_));
    });
  }

  WorkPtr do_broadcast(at::Tensor& tensor, int root, const OpInfo& info) override {
    return launch(info, {tensor}, [&] {
      ENGRAM_NCCL(ncclBroadcast(tensor.data_ptr(), tensor.data_ptr(), tensor.numel(), nccl_type(tensor.scalar_type()),
                                root, comm_, stream_));
    });
  }

  WorkPtr do_all_gather(const at::Tensor& input, at::Tensor& output, const OpInfo& info) override {
    return launch(info, {input, output}, [&] {
      ENGRAM_NCCL(ncclAllGather(input.data_ptr(), output.data_ptr(), input.numel(), nccl_type(input.scalar_type()),
                                comm_, stream_));
    });
  }

  WorkPtr do_reduce_scatter(const at::Tensor& input, at::Tensor& output, ReduceOp op, const OpInfo& info) override {
    return launch(info, {input, output}, [&] {
      ENGRAM_NCCL(ncclReduceScatter(input.data_ptr(), output.data_ptr(), output.numel(),
                                    nccl_type(input.scalar_type()), nccl_op(op), comm_, stream_));
    });
  }

  // The control plane stays on MPI: it carries host data, not device tensors.
  void do_barrier(const OpInfo&) override {
    ENGRAM_CUDA(cudaStreamSynchronize(stream_));
    control_->barrier();
  }
  void do_broadcast_bytes(std::string& bytes, int root, const OpInfo&) override {
    control_->broadcast_bytes(bytes, root);
  }
  std::vector<std::string> do_all_gather_bytes(const std::string& bytes, const OpInfo&) override {
    return control_->all_gather_bytes(bytes);
  }

 private:
  template <typename Issue>
  WorkPtr launch(const OpInfo& info, std::vector<at::Tensor> keep, Issue issue) {
    ENGRAM_CUDA(cudaSetDevice(device_));
    cudaEvent_t ready, end;
    ENGRAM_CUDA(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming));
    ENGRAM_CUDA(cudaEventCreateWithFlags(&end, cudaEventDisableTiming));
    ENGRAM_CUDA(cudaEventRecord(ready, cudaStreamLegacy));
    ENGRAM_CUDA(cudaStreamWaitEvent(stream_, ready, 0));
    ENGRAM_CUDA(cudaEventDestroy(ready));  // destruction is deferred until the event has fired
    issue();
    ENGRAM_CUDA(cudaEventRecord(end, stream_));
    watchdog_->begin(info, [end] { return cudaEventQuery(end) != cudaErrorNotReady; });
    return std::make_shared<NcclWork>(end, std::move(keep), info);
  }

  std::shared_ptr<Communicator> control_;
  int device_;
  int rank_ = 0;
  int world_ = 1;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<Watchdog> watchdog_;
};

}  // namespace

bool nccl_available() { return true; }
std::string nccl_version() {
  int v = 0;
  ncclGetVersion(&v);
  // NCCL >= 2.9 encodes major*10000 + minor*100 + patch.
  return fmt::format("{}.{}.{}", v / 10000, (v / 100) % 100, v % 100);
}

std::unique_ptr<Communicator> make_nccl_communicator(std::shared_ptr<Communicator> control, int device,
                                                     std::chrono::milliseconds timeout) {
  return std::make_unique<NcclCommunicator>(std::move(control), device, timeout);
}

}  // namespace engram::dist

#else  // built without NCCL

namespace engram::dist {

bool nccl_available() { return false; }
std::string nccl_version() { return "off"; }
std::unique_ptr<Communicator> make_nccl_communicator(std::shared_ptr<Communicator>, int, std::chrono::milliseconds) {
  core::fail("dist.backend: nccl was asked for, but this engram was built without NCCL "
             "(reconfigure with the CUDA toolkit and NCCL present, ENGRAM_WITH_NCCL=ON)");
}

}  // namespace engram::dist

#endif
