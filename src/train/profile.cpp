#include "train/profile.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <torch/csrc/autograd/profiler_legacy.h>

namespace engram::train {

namespace profiler = torch::autograd::profiler;

StepProfile::StepProfile() {
  profiler::enableProfilerLegacy(
      torch::profiler::impl::ProfilerConfig(torch::profiler::impl::ProfilerState::CPU, /*report_input_shapes=*/true));
  recording_ = true;
}

StepProfile::~StepProfile() {
  if (recording_) profiler::disableProfilerLegacy();
}

std::string StepProfile::write(const std::string& dir, int64_t steps) {
  recording_ = false;
  profiler::thread_event_lists lists = profiler::disableProfilerLegacy();
  std::vector<profiler::LegacyEvent*> events;
  // Totals by op and input shapes: each push matched with its pop on the same thread list.
  struct Total {
    double us = 0;
    int64_t calls = 0;
  };
  std::map<std::string, Total> totals;
  for (auto& list : lists) {
    std::vector<profiler::LegacyEvent*> open;
    for (auto& e : list) {
      events.push_back(&e);
      if (e.kindStr() == "push") {
        open.push_back(&e);
      } else if (e.kindStr() == "pop" && !open.empty()) {
        profiler::LegacyEvent* start = open.back();
        open.pop_back();
        std::string shapes;
        for (const auto& s : start->shapes())
          if (!s.empty()) shapes += fmt::format(" [{}]", fmt::join(s, ","));
        Total& t = totals[std::string(start->name()) + shapes];
        t.us += start->cpuElapsedUs(e);
        ++t.calls;
      }
    }
  }
  std::filesystem::create_directories(dir);
  const std::string trace = dir + "/profile.json";
  {
    std::ofstream out(trace);
    profiler::writeProfilerEventsToStream(out, events);
  }
  std::vector<std::pair<std::string, Total>> rows(totals.begin(), totals.end());
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.second.us > b.second.us; });
  std::ofstream table(dir + "/profile_ops.txt");
  table << fmt::format("# ms per step (inclusive: an op's time contains the ops it calls), calls per step, op "
                       "[input shapes]; {} profiled steps\n",
                       steps);
  const double per_step = 1.0 / static_cast<double>(std::max<int64_t>(steps, 1));
  for (const auto& [name, t] : rows)
    table << fmt::format("{:10.3f} {:8.1f}  {}\n", t.us / 1e3 * per_step, static_cast<double>(t.calls) * per_step, name);
  return trace;
}

}  // namespace engram::train
