#include "core/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>

#include "core/error.h"

namespace engram::core {

bool is_log_level(const std::string& name) {
  return name == "trace" || name == "debug" || name == "info" || name == "warn" || name == "error";
}

void init_logging(const LogOptions& options) {
  if (!is_log_level(options.level))
    fail("log.level: '{}' is not a level (expected trace, debug, info, warn or error)", options.level);
  // Logs go to stderr so that a command's result on stdout stays clean for pipes.
  spdlog::drop("engram");  // re-initialised once the rank is known
  auto logger = spdlog::stderr_color_mt("engram");
  std::string prefix = options.world > 1
                           ? fmt::format("r{}/{} {}", options.rank, options.world, options.host)
                           : options.host;
  logger->set_pattern(fmt::format("[%H:%M:%S.%e {}] %^%L%$ %v", prefix));
  auto level = spdlog::level::from_str(options.level);
  if (options.rank != 0 && !options.all_ranks && level < spdlog::level::warn) level = spdlog::level::warn;
  logger->set_level(level);
  logger->flush_on(spdlog::level::warn);
  spdlog::set_default_logger(logger);
}

}  // namespace engram::core
