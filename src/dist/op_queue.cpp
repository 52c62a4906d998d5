#include "dist/op_queue.h"

#include <fmt/format.h>

namespace engram::dist {

struct OpQueue::Task {
  OpInfo info;
  std::function<void()> run;
  bool done = false;
  std::exception_ptr error;
};

class OpQueue::TaskWork final : public Work {
 public:
  TaskWork(OpQueue* queue, std::shared_ptr<Task> task) : queue_(queue), task_(std::move(task)) {}

  bool is_completed() override {
    std::lock_guard<std::mutex> lock(queue_->mutex_);
    return task_->done;
  }

  void wait(std::optional<std::chrono::milliseconds> timeout) override {
    std::unique_lock<std::mutex> lock(queue_->mutex_);
    if (!task_->done && !queue_->running_ && !queue_->queue_.empty() && queue_->queue_.front() == task_) {
      queue_->queue_.pop_front();
      queue_->execute(task_, lock);
    }
    auto finished = [this] { return task_->done; };
    if (timeout) {
      if (!queue_->task_done_.wait_for(lock, *timeout, finished))
        throw TimeoutError(fmt::format("{} seq {} not finished after {} ms", task_->info.name, task_->info.seq,
                                       timeout->count()));
    } else {
      queue_->task_done_.wait(lock, finished);
    }
    if (task_->error) std::rethrow_exception(task_->error);
  }

 private:
  OpQueue* queue_;
  std::shared_ptr<Task> task_;
};

OpQueue::OpQueue(Watchdog* watchdog) : watchdog_(watchdog) { thread_ = std::thread([this] { worker(); }); }

OpQueue::~OpQueue() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  work_available_.notify_all();
  thread_.join();
}

WorkPtr OpQueue::submit(const OpInfo& info, std::function<void()> run) {
  auto task = std::make_shared<Task>();
  task->info = info;
  task->run = std::move(run);
  std::unique_lock<std::mutex> lock(mutex_);
  if (info.blocking && queue_.empty() && !running_) {
    // Nothing ahead of it: run it here, without waking the worker (a hand-off costs ~5 us).
    execute(task, lock);
  } else {
    queue_.push_back(task);
    lock.unlock();
    work_available_.notify_one();
  }
  return std::make_shared<TaskWork>(this, task);
}

void OpQueue::execute(const std::shared_ptr<Task>& task, std::unique_lock<std::mutex>& lock) {
  running_ = true;
  lock.unlock();
  uint64_t watch = watchdog_ ? watchdog_->begin(task->info) : 0;
  try {
    task->run();
  } catch (...) {
    task->error = std::current_exception();
  }
  if (watchdog_) watchdog_->end(watch);
  lock.lock();
  task->done = true;
  running_ = false;
  task_done_.notify_all();
  // Waking the worker costs a context switch: do it only when something is queued.
  if (!queue_.empty()) work_available_.notify_one();
}

void OpQueue::worker() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (true) {
    work_available_.wait(lock, [this] { return (!queue_.empty() && !running_) || (stopping_ && queue_.empty()); });
    if (queue_.empty()) return;  // stopping, nothing left
    auto task = queue_.front();
    queue_.pop_front();
    execute(task, lock);
  }
}

}  // namespace engram::dist
