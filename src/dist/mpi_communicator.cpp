#include "dist/mpi_communicator.h"

#include <climits>

#include <ATen/ATen.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include "core/error.h"
#include "dist/mpi_util.h"
#include "dist/op_queue.h"
#include "dist/watchdog.h"

namespace engram::dist {

void check_mpi(int rc, const char* call) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(rc, text, &length);
  throw core::InternalError(fmt::format("{} failed: {}", call, std::string(text, length)));
}

namespace {

// MPI has no 16-bit float types: bf16 and fp16 travel as MPI_UINT16_T with user-defined
// reduction ops that compute in float and round back, as NCCL does.
template <typename T, typename Combine>
void reduce_16bit(void* in, void* inout, int* len, MPI_Datatype*) {
  auto* a = static_cast<const T*>(in);
  auto* b = static_cast<T*>(inout);
  for (int i = 0; i < *len; ++i) b[i] = T(Combine{}(static_cast<float>(a[i]), static_cast<float>(b[i])));
}
struct AddF { float operator()(float a, float b) const { return a + b; } };
struct MaxF { float operator()(float a, float b) const { return a > b ? a : b; } };
struct MinF { float operator()(float a, float b) const { return a < b ? a : b; } };

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator(MPI_Comm world, std::chrono::milliseconds timeout) : Communicator(timeout) {
    ENGRAM_MPI(MPI_Comm_dup(world, &comm_));
    ENGRAM_MPI(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
    ENGRAM_MPI(MPI_Comm_rank(comm_, &rank_));
    ENGRAM_MPI(MPI_Comm_size(comm_, &world_));
    create_16bit_ops();
    watchdog_ = std::make_unique<Watchdog>(rank_, "mpi", timeout, [](const std::string&) {
      // The stalled rank cannot leave its MPI call; only an abort ends every process of the job.
      MPI_Abort(MPI_COMM_WORLD, 3);
    });
    queue_ = std::make_unique<OpQueue>(watchdog_.get());
  }

  ~MpiCommunicator() override {
    queue_.reset();  // drain before the communicator goes away
    watchdog_.reset();
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (finalized) return;  // destroyed after MPI_Finalize: MPI already released everything
    for (MPI_Op& op : ops16_) MPI_Op_free(&op);
    MPI_Comm_free(&comm_);
  }

  std::string backend_name() const override { return "mpi"; }
  int rank() const override { return rank_; }
  int world_size() const override { return world_; }

 protected:
  WorkPtr do_all_reduce(at::Tensor& tensor, ReduceOp op, const OpInfo& info) override {
    MPI_Datatype type = mpi_type(tensor.scalar_type());
    MPI_Op mop = mpi_op(tensor.scalar_type(), op);
    char* data = static_cast<char*>(tensor.data_ptr());
    int64_t count = tensor.numel();
    size_t elem = tensor.element_size();
    MPI_Comm comm = comm_;
    at::Tensor keep = tensor;  // alive until the op has run, whatever the caller does with the Work
    return queue_->submit(info, [=] {
      (void)keep;
      // Element-wise ops can be split: counts above INT_MAX go in INT_MAX pieces.
      for (int64_t off = 0; off < count; off += INT_MAX) {
        int n = static_cast<int>(std::min<int64_t>(INT_MAX, count - off));
        ENGRAM_MPI(MPI_Allreduce(MPI_IN_PLACE, data + off * elem, n, type, mop, comm));
      }
    });
  }

  WorkPtr do_broadcast(at::Tensor& tensor, int root, const OpInfo& info) override {
    MPI_Datatype type = mpi_type(tensor.scalar_type());
    char* data = static_cast<char*>(tensor.data_ptr());
    int64_t count = tensor.numel();
    size_t elem = tensor.element_size();
    MPI_Comm comm = comm_;
    at::Tensor keep = tensor;
    return queue_->submit(info, [=] {
      (void)keep;
      for (int64_t off = 0; off < count; off += INT_MAX) {
        int n = static_cast<int>(std::min<int64_t>(INT_MAX, count - off));
        ENGRAM_MPI(MPI_Bcast(data + off * elem, n, type, root, comm));
      }
    });
  }

  WorkPtr do_all_gather(const at::Tensor& input, at::Tensor& output, const OpInfo& info) override {
    ENGRAM_CHECK(input.numel() <= INT_MAX, "all_gather: {} elements per rank exceed MPI's int count", input.numel());
    MPI_Datatype type = mpi_type(input.scalar_type());
    const void* in = input.data_ptr();
    void* out = output.data_ptr();
    int n = static_cast<int>(input.numel());
    MPI_Comm comm = comm_;
    at::Tensor keep_in = input, keep_out = output;  // alive until the op has run
    return queue_->submit(info, [=] {
      (void)keep_in, (void)keep_out;
      ENGRAM_MPI(MPI_Allgather(in, n, type, out, n, type, comm));
    });
  }

  WorkPtr do_reduce_scatter(const at::Tensor& input, at::Tensor& output, ReduceOp op, const OpInfo& info) override {
    ENGRAM_CHECK(output.numel() <= INT_MAX, "reduce_scatter: {} elements per rank exceed MPI's int count",
                 output.numel());
    MPI_Datatype type = mpi_type(input.scalar_type());
    MPI_Op mop = mpi_op(input.scalar_type(), op);
    const void* in = input.data_ptr();
    void* out = output.data_ptr();
    int n = static_cast<int>(output.numel());
    MPI_Comm comm = comm_;
    at::Tensor keep_in = input, keep_out = output;
    return queue_->submit(info, [=] {
      (void)keep_in, (void)keep_out;
      ENGRAM_MPI(MPI_Reduce_scatter_block(in, out, n, type, mop, comm));
    });
  }

  void do_barrier(const OpInfo& info) override {
    MPI_Comm comm = comm_;
    queue_->submit(info, [=] { ENGRAM_MPI(MPI_Barrier(comm)); })->wait();
  }

  void do_broadcast_bytes(std::string& bytes, int root, const OpInfo& info) override {
    MPI_Comm comm = comm_;
    std::string* target = &bytes;
    queue_->submit(info, [=] {
      uint64_t size = target->size();
      ENGRAM_MPI(MPI_Bcast(&size, 1, MPI_UINT64_T, root, comm));
      ENGRAM_CHECK(size <= INT_MAX, "broadcast_bytes: {} bytes exceed MPI's int count", size);
      target->resize(size);
      ENGRAM_MPI(MPI_Bcast(target->data(), static_cast<int>(size), MPI_CHAR, root, comm));
    })->wait();
  }

  std::vector<std::string> do_all_gather_bytes(const std::string& bytes, const OpInfo& info) override {
    MPI_Comm comm = comm_;
    int world = world_;
    std::vector<std::string> result;
    queue_->submit(info, [&, comm, world] {
      ENGRAM_CHECK(bytes.size() <= INT_MAX, "all_gather_bytes: {} bytes exceed MPI's int count", bytes.size());
      int size = static_cast<int>(bytes.size());
      std::vector<int> sizes(world), offsets(world);
      ENGRAM_MPI(MPI_Allgather(&size, 1, MPI_INT, sizes.data(), 1, MPI_INT, comm));
      int64_t total = 0;
      for (int r = 0; r < world; ++r) {
        offsets[r] = static_cast<int>(total);
        total += sizes[r];
      }
      ENGRAM_CHECK(total <= INT_MAX, "all_gather_bytes: {} bytes in all exceed MPI's int count", total);
      std::string all(static_cast<size_t>(total), '\0');
      ENGRAM_MPI(MPI_Allgatherv(bytes.data(), size, MPI_CHAR, all.data(), sizes.data(), offsets.data(), MPI_CHAR,
                                comm));
      for (int r = 0; r < world; ++r) result.push_back(all.substr(offsets[r], sizes[r]));
    })->wait();
    return result;
  }

 private:
  void create_16bit_ops() {
    ENGRAM_MPI(MPI_Op_create(&reduce_16bit<c10::BFloat16, AddF>, 1, &ops16_[0]));
    ENGRAM_MPI(MPI_Op_create(&reduce_16bit<c10::BFloat16, MaxF>, 1, &ops16_[1]));
    ENGRAM_MPI(MPI_Op_create(&reduce_16bit<c10::BFloat16, MinF>, 1, &ops16_[2]));
    ENGRAM_MPI(MPI_Op_create(&reduce_16bit<c10::Half, AddF>, 1, &ops16_[3]));
    ENGRAM_MPI(MPI_Op_create(&reduce_16bit<c10::Half, MaxF>, 1, &ops16_[4]));
    ENGRAM_MPI(MPI_Op_create(&reduce_16bit<c10::Half, MinF>, 1, &ops16_[5]));
  }

  static MPI_Datatype mpi_type(at::ScalarType t) {
    switch (t) {
      case at::kFloat: return MPI_FLOAT;
      case at::kDouble: return MPI_DOUBLE;
      case at::kInt: return MPI_INT32_T;
      case at::kLong: return MPI_INT64_T;
      case at::kBFloat16: case at::kHalf: return MPI_UINT16_T;
      default: ENGRAM_CHECK(false, "no MPI type for {}", c10::toString(t));
    }
    return MPI_DATATYPE_NULL;
  }

  MPI_Op mpi_op(at::ScalarType t, ReduceOp op) const {
    int index = op == ReduceOp::Sum ? 0 : op == ReduceOp::Max ? 1 : 2;
    ENGRAM_CHECK(op != ReduceOp::Avg, "Avg reaches the MPI backend only as Sum");
    if (t == at::kBFloat16) return ops16_[index];
    if (t == at::kHalf) return ops16_[3 + index];
    return op == ReduceOp::Sum ? MPI_SUM : op == ReduceOp::Max ? MPI_MAX : MPI_MIN;
  }

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int world_ = 1;
  MPI_Op ops16_[6] = {MPI_OP_NULL, MPI_OP_NULL, MPI_OP_NULL, MPI_OP_NULL, MPI_OP_NULL, MPI_OP_NULL};
  std::unique_ptr<Watchdog> watchdog_;
  std::unique_ptr<OpQueue> queue_;
};

}  // namespace

std::unique_ptr<Communicator> make_mpi_communicator(MPI_Comm world, std::chrono::milliseconds timeout) {
  return std::make_unique<MpiCommunicator>(world, timeout);
}

}  // namespace engram::dist
