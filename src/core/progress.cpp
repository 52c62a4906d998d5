#include "core/progress.h"

#include <cmath>

#include <spdlog/spdlog.h>

namespace engram::core {

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  auto total = static_cast<int64_t>(std::llround(seconds));
  int64_t h = total / 3600, m = (total / 60) % 60, s = total % 60;
  return h > 0 ? fmt::format("{}:{:02d}:{:02d}", h, m, s) : fmt::format("{}:{:02d}", m, s);
}

Progress::Progress(std::string label, int64_t total, bool enabled, double interval_s, std::string unit)
    : label_(std::move(label)), total_(total), enabled_(enabled), interval_s_(interval_s), unit_(std::move(unit)) {}

std::string Progress::line(int64_t done, const std::string& extra) const {
  double elapsed = clock_.seconds();
  double rate = elapsed > 0 ? static_cast<double>(done - resumed_) / elapsed : 0.0;
  std::string out;
  if (total_ > 0) {
    double eta = rate > 0 ? static_cast<double>(total_ - done) / rate : -1;
    out = fmt::format("{} {}/{} ({:.1f}%) {:.1f} {}/s elapsed {} ETA {}", label_, done, total_,
                      100.0 * static_cast<double>(done) / static_cast<double>(total_), rate, unit_,
                      format_duration(elapsed), format_duration(eta));
  } else {
    out = fmt::format("{} {} {:.1f} {}/s elapsed {}", label_, done, rate, unit_, format_duration(elapsed));
  }
  if (!extra.empty()) out += " | " + extra;
  return out;
}

void Progress::update(int64_t done, const std::string& extra) {
  if (!enabled_) return;
  double now = clock_.seconds();
  bool finished = total_ > 0 && done >= total_;
  if (!finished && now - last_print_ < interval_s_) return;
  last_print_ = now;
  spdlog::info("{}", line(done, extra));
}

}  // namespace engram::core
