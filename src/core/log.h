#pragma once
// Rank-aware logging on spdlog. After init_logging(), use spdlog::info/warn/error directly.
// Prefix: "[12:00:01.123 r0/2 host] I message". By default info is printed by rank 0 only and
// warnings and errors by every rank; `all_ranks` makes every rank print info too.
#include <string>

#include <spdlog/spdlog.h>

namespace engram::core {

struct LogOptions {
  int rank = 0;
  int world = 1;
  std::string host;
  bool all_ranks = false;
  std::string level = "info";  // trace, debug, info, warn, error
};

void init_logging(const LogOptions& options);

// The level names accepted by init_logging, for config validation.
bool is_log_level(const std::string& name);

}  // namespace engram::core
