#pragma once
// Peak resident memory of this process (Linux /proc), for benchmarks and evaluation tables.
#include <cstdint>

namespace engram::core {

// VmHWM in bytes (0 where /proc is unavailable).
int64_t peak_rss_bytes();
// Current VmRSS in bytes.
int64_t current_rss_bytes();
// Starts a new peak measurement (writes 5 to /proc/self/clear_refs); false where unsupported,
// and then peak_rss_bytes() keeps the peak since process start.
bool reset_peak_rss();

}  // namespace engram::core
