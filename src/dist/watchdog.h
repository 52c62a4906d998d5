#pragma once
// Watches the collectives a multi-process backend has in flight. Each one is registered with its
// sequence number, name and size when it starts; if one is still running after the deadline
// (dist.timeout_s) the watchdog logs a stall report (rank, op, seq, bytes, last completed seq)
// and calls `on_expire`, which aborts the whole job. A job never hangs silently.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <list>
#include <mutex>
#include <string>
#include <thread>

#include "dist/communicator.h"

namespace engram::dist {

class Watchdog {
 public:
  // on_expire receives the report; it is expected not to return (MPI_Abort).
  Watchdog(int rank, std::string backend, std::chrono::milliseconds timeout,
           std::function<void(const std::string& report)> on_expire);
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  // Registers a running op. `is_done`, when given, is polled by the watchdog (device work that
  // completes asynchronously); otherwise the op ends with end(id).
  uint64_t begin(const OpInfo& info, std::function<bool()> is_done = {});
  void end(uint64_t id);
  // Extra health probe polled with the deadlines (NCCL async errors); returns an error text or "".
  void set_health_probe(std::function<std::string()> probe);

  // The report the watchdog would write for `info` after `elapsed_s`; exposed for tests.
  std::string stall_report(const OpInfo& info, double elapsed_s) const;

 private:
  struct Entry {
    uint64_t id;
    OpInfo info;
    std::chrono::steady_clock::time_point start;
    std::function<bool()> is_done;
  };
  void run();

  int rank_;
  std::string backend_;
  std::chrono::milliseconds timeout_;
  std::function<void(const std::string&)> on_expire_;
  std::function<std::string()> health_probe_;

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::list<Entry> pending_;
  uint64_t next_id_ = 0;
  int64_t last_completed_seq_ = -1;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace engram::dist
