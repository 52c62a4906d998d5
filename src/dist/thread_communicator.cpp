#include "dist/thread_communicator.h"

#include <condition_variable>
#include <mutex>
#include <thread>

#include <ATen/ATen.h>

#include "core/error.h"

namespace engram::dist {

// What one rank posts for the current collective.
struct Posted {
  OpInfo info;
  int64_t numel = 0;
  at::ScalarType dtype = at::kFloat;
  int root = 0;
  ReduceOp op = ReduceOp::Sum;
  at::Tensor input;
  const std::string* bytes = nullptr;
};

class ThreadGroup {
 public:
  explicit ThreadGroup(int world) : world_(world), posted_(world) {}
  int world() const { return world_; }

  // Posts this rank's entry and waits until every rank has posted; checks they agree.
  void arrive(int rank, Posted entry, std::chrono::milliseconds timeout) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      posted_[rank] = std::move(entry);
    }
    meet(rank, posted_[rank].info, timeout);
    const Posted& mine = posted_[rank];
    for (int r = 0; r < world_; ++r) {
      const Posted& other = posted_[r];
      if (other.info.name != mine.info.name || other.info.seq != mine.info.seq || other.numel != mine.numel ||
          other.dtype != mine.dtype || other.root != mine.root || other.op != mine.op)
        throw MismatchError(fmt::format(
            "collective mismatch: rank {} called {} (seq {}, {} x {}) while rank {} called {} (seq {}, {} x {})", rank,
            mine.info.name, mine.info.seq, mine.numel, c10::toString(mine.dtype), r, other.info.name,
            other.info.seq, other.numel, c10::toString(other.dtype)));
    }
  }

  // Second rendezvous: everyone has read the posted inputs.
  void depart(int rank, std::chrono::milliseconds timeout) { meet(rank, posted_[rank].info, timeout); }

  const Posted& posted(int rank) const { return posted_[rank]; }

 private:
  void meet(int rank, const OpInfo& info, std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mutex_);
    if (broken_) throw TimeoutError(fmt::format("rank {}: {} seq {}: the group failed earlier", rank, info.name, info.seq));
    uint64_t generation = generation_;
    if (++arrived_ == world_) {
      arrived_ = 0;
      ++generation_;
      all_met_.notify_all();
      return;
    }
    bool met = all_met_.wait_for(lock, timeout, [&] { return generation_ != generation || broken_; });
    if (!met || (broken_ && generation_ == generation)) {
      broken_ = true;
      all_met_.notify_all();
      throw TimeoutError(fmt::format(
          "collective timed out on rank {} (thread): op {} seq {} bytes {} after {} ms; another rank did not join",
          rank, info.name, info.seq, info.bytes, timeout.count()));
    }
  }

  const int world_;
  std::mutex mutex_;
  std::condition_variable all_met_;
  int arrived_ = 0;
  uint64_t generation_ = 0;
  bool broken_ = false;
  std::vector<Posted> posted_;
};

namespace {

at::Tensor reduce(std::vector<at::Tensor> parts, ReduceOp op) {
  at::Tensor result = parts[0].clone();
  for (size_t i = 1; i < parts.size(); ++i) {
    switch (op) {
      case ReduceOp::Sum: case ReduceOp::Avg: result.add_(parts[i]); break;
      case ReduceOp::Max: result = at::maximum(result, parts[i]); break;
      case ReduceOp::Min: result = at::minimum(result, parts[i]); break;
    }
  }
  return result;
}

class ThreadCommunicator final : public Communicator {
 public:
  ThreadCommunicator(std::shared_ptr<ThreadGroup> group, int rank, std::chrono::milliseconds timeout)
      : Communicator(timeout), group_(std::move(group)), rank_(rank) {}
  std::string backend_name() const override { return "thread"; }
  int rank() const override { return rank_; }
  int world_size() const override { return group_->world(); }

 protected:
  WorkPtr do_all_reduce(at::Tensor& tensor, ReduceOp op, const OpInfo& info) override {
    group_->arrive(rank_, post(info, tensor, 0, op), timeout());
    std::vector<at::Tensor> parts;
    for (int r = 0; r < world_size(); ++r) parts.push_back(group_->posted(r).input);
    at::Tensor result = reduce(parts, op);
    group_->depart(rank_, timeout());
    tensor.copy_(result);
    return done();
  }

  WorkPtr do_broadcast(at::Tensor& tensor, int root, const OpInfo& info) override {
    group_->arrive(rank_, post(info, tensor, root, ReduceOp::Sum), timeout());
    at::Tensor value = group_->posted(root).input.clone();
    group_->depart(rank_, timeout());
    tensor.copy_(value);
    return done();
  }

  WorkPtr do_all_gather(const at::Tensor& input, at::Tensor& output, const OpInfo& info) override {
    group_->arrive(rank_, post(info, input, 0, ReduceOp::Sum), timeout());
    at::Tensor rows = output.view({world_size(), -1});
    for (int r = 0; r < world_size(); ++r) rows[r].copy_(group_->posted(r).input.reshape(-1));
    group_->depart(rank_, timeout());
    return done();
  }

  WorkPtr do_reduce_scatter(const at::Tensor& input, at::Tensor& output, ReduceOp op, const OpInfo& info) override {
    group_->arrive(rank_, post(info, input, 0, op), timeout());
    std::vector<at::Tensor> parts;
    for (int r = 0; r < world_size(); ++r) parts.push_back(group_->posted(r).input.view({world_size(), -1})[rank_]);
    at::Tensor result = reduce(parts, op);
    group_->depart(rank_, timeout());
    output.view(-1).copy_(result);
    return done();
  }

  void do_barrier(const OpInfo& info) override {
    Posted entry;
    entry.info = info;
    group_->arrive(rank_, entry, timeout());
    group_->depart(rank_, timeout());
  }

  void do_broadcast_bytes(std::string& bytes, int root, const OpInfo& info) override {
    Posted entry;
    entry.info = info;
    entry.root = root;
    entry.bytes = &bytes;
    group_->arrive(rank_, entry, timeout());
    std::string value = *group_->posted(root).bytes;
    group_->depart(rank_, timeout());
    bytes = value;
  }

  std::vector<std::string> do_all_gather_bytes(const std::string& bytes, const OpInfo& info) override {
    Posted entry;
    entry.info = info;
    entry.bytes = &bytes;
    group_->arrive(rank_, entry, timeout());
    std::vector<std::string> all;
    for (int r = 0; r < world_size(); ++r) all.push_back(*group_->posted(r).bytes);
    group_->depart(rank_, timeout());
    return all;
  }

 private:
  static Posted post(const OpInfo& info, const at::Tensor& tensor, int root, ReduceOp op) {
    Posted entry;
    entry.info = info;
    entry.numel = tensor.numel();
    entry.dtype = tensor.scalar_type();
    entry.root = root;
    entry.op = op;
    entry.input = tensor;
    return entry;
  }
  static WorkPtr done() { return std::make_shared<CompletedWork>(); }

  std::shared_ptr<ThreadGroup> group_;
  int rank_;
};

}  // namespace

std::shared_ptr<ThreadGroup> make_thread_group(int world) {
  ENGRAM_CHECK(world >= 1, "thread group of {} ranks", world);
  return std::make_shared<ThreadGroup>(world);
}

std::unique_ptr<Communicator> make_thread_communicator(std::shared_ptr<ThreadGroup> group, int rank,
                                                       std::chrono::milliseconds timeout) {
  ENGRAM_CHECK(rank >= 0 && rank < group->world(), "rank {} outside thread group of {}", rank, group->world());
  return std::make_unique<ThreadCommunicator>(std::move(group), rank, timeout);
}

void run_thread_ranks(int world, std::chrono::milliseconds timeout, const std::function<void(Communicator&)>& body) {
  auto group = make_thread_group(world);
  std::vector<std::exception_ptr> errors(world);
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      try {
        auto comm = make_thread_communicator(group, r, timeout);
        body(*comm);
      } catch (...) {
        errors[r] = std::current_exception();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace engram::dist
