#pragma once
// Runs a backend's collectives one at a time, in the order they were issued, on a worker thread,
// so async collectives overlap with the caller's compute. The ordering is what keeps ranks in
// step: every rank issues the same sequence, and this queue never reorders it.
//
// A blocking op submitted while nothing is queued or running runs on the calling thread, and a
// thread that waits for an op which is next in line and not yet started runs it itself: a
// blocking call then costs what the raw MPI call costs, with no thread hand-off.
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

#include "dist/watchdog.h"
#include "dist/work.h"

namespace engram::dist {

class OpQueue {
 public:
  explicit OpQueue(Watchdog* watchdog);
  ~OpQueue();  // finishes what was queued, then stops the worker
  OpQueue(const OpQueue&) = delete;
  OpQueue& operator=(const OpQueue&) = delete;

  WorkPtr submit(const OpInfo& info, std::function<void()> run);

 private:
  struct Task;
  class TaskWork;
  void worker();
  // Runs `task` on the calling thread; `lock` is held on entry and on return.
  void execute(const std::shared_ptr<Task>& task, std::unique_lock<std::mutex>& lock);

  Watchdog* watchdog_;
  std::mutex mutex_;
  std::condition_variable work_available_;  // wakes the worker: only when it has something to run
  std::condition_variable task_done_;       // wakes waiters
  std::deque<std::shared_ptr<Task>> queue_;
  bool running_ = false;   // a task is executing (worker or a waiting caller)
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace engram::dist
