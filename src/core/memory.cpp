#include "core/memory.h"

#include <malloc.h>

#include <fstream>
#include <string>

namespace engram::core {
namespace {

int64_t status_kib(const std::string& key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(key + ":", 0) == 0) return std::stoll(line.substr(key.size() + 1));  // "VmHWM:   1234 kB"
  return 0;
}

}  // namespace

int64_t peak_rss_bytes() { return status_kib("VmHWM") * 1024; }
int64_t current_rss_bytes() { return status_kib("VmRSS") * 1024; }

bool reset_peak_rss() {
  // Free heap memory is handed back first: the peak then starts from what is in use, not from
  // what an earlier phase left in the allocator (core/allocator.h keeps large blocks).
  malloc_trim(0);
  std::ofstream out("/proc/self/clear_refs");
  if (!out) return false;
  out << "5";
  out.flush();
  return static_cast<bool>(out);
}

}  // namespace engram::core
