#include "dist/watchdog.h"

#include <algorithm>

#include <spdlog/spdlog.h>

namespace engram::dist {

Watchdog::Watchdog(int rank, std::string backend, std::chrono::milliseconds timeout,
                   std::function<void(const std::string&)> on_expire)
    : rank_(rank), backend_(std::move(backend)), timeout_(timeout), on_expire_(std::move(on_expire)) {
  thread_ = std::thread([this] { run(); });
}

Watchdog::~Watchdog() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

uint64_t Watchdog::begin(const OpInfo& info, std::function<bool()> is_done) {
  std::lock_guard<std::mutex> lock(mutex_);
  uint64_t id = next_id_++;
  pending_.push_back(Entry{id, info, std::chrono::steady_clock::now(), std::move(is_done)});
  return id;
}

void Watchdog::end(uint64_t id) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto it = pending_.begin(); it != pending_.end(); ++it) {
    if (it->id == id) {
      last_completed_seq_ = std::max<int64_t>(last_completed_seq_, static_cast<int64_t>(it->info.seq));
      pending_.erase(it);
      return;
    }
  }
}

void Watchdog::set_health_probe(std::function<std::string()> probe) {
  std::lock_guard<std::mutex> lock(mutex_);
  health_probe_ = std::move(probe);
}

std::string Watchdog::stall_report(const OpInfo& info, double elapsed_s) const {
  return fmt::format(
      "collective timed out on rank {} ({}): op {} seq {} bytes {} still running after {:.1f} s "
      "(dist.timeout_s = {:.0f}); last completed seq {}. Another rank did not join this collective: "
      "it skipped it, called a different one, or is stuck. Ending the job.",
      rank_, backend_, info.name, info.seq, info.bytes, elapsed_s, timeout_.count() / 1000.0,
      last_completed_seq_);
}

void Watchdog::run() {
  // Poll often enough to end a short test timeout promptly, rarely enough to cost nothing.
  const auto poll = std::clamp(timeout_ / 20, std::chrono::milliseconds(10), std::chrono::milliseconds(1000));
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stopping_) {
    wake_.wait_for(lock, poll, [this] { return stopping_; });
    if (stopping_) break;
    auto now = std::chrono::steady_clock::now();
    std::string failure;
    for (auto it = pending_.begin(); it != pending_.end();) {
      if (it->is_done && it->is_done()) {
        last_completed_seq_ = std::max<int64_t>(last_completed_seq_, static_cast<int64_t>(it->info.seq));
        it = pending_.erase(it);
        continue;
      }
      double elapsed = std::chrono::duration<double>(now - it->start).count();
      if (now - it->start > timeout_ && failure.empty()) failure = stall_report(it->info, elapsed);
      ++it;
    }
    if (failure.empty() && health_probe_) failure = health_probe_();
    if (!failure.empty()) {
      lock.unlock();
      spdlog::error("{}", failure);
      spdlog::default_logger()->flush();
      on_expire_(failure);
      lock.lock();
      stopping_ = true;  // on_expire should not return; if it does, stop watching
    }
  }
}

}  // namespace engram::dist
