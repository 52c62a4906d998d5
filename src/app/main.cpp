// engram <command> [options]: parses the command line and config, starts the distributed
// runtime, runs the command, and turns every failure into one clear message and an exit code
// (2 for bad input, 1 for internal errors, 3 for a distributed timeout raised by the watchdog).
#include <iostream>
#include <variant>

#include <fmt/ranges.h>

#include <ATen/Context.h>
#include <c10/util/Exception.h>
#include <spdlog/spdlog.h>

#include "app/command.h"
#include "config/config.h"
#include "core/allocator.h"
#include "core/error.h"
#include "core/log.h"
#include "core/signals.h"
#include "dist/runtime.h"

namespace po = boost::program_options;
using namespace engram;

namespace {

void print_usage(std::ostream& out) {
  out << "engram: keeps language models current (MAC, LongMem, SELF-PARAM) on one distributed runtime.\n\n"
         "usage: engram <command> [options]\n"
         "       mpirun -np N engram <command> [options]\n\n"
         "commands:\n";
  for (const auto& c : app::commands()) out << fmt::format("  {:<12} {}\n", c.name, c.summary);
  out << "\n"
         "options for every command:\n"
         "  -c, --config FILE     YAML config (repeatable; later files override earlier ones)\n"
         "  --set KEY=VALUE       override one option, e.g. --set dist.timeout_s=30 (repeatable)\n"
         "  --dump-config         print the effective config as YAML and exit\n"
         "  --help-config         list every config option with type, default and help\n"
         "  -h, --help            help for a command: engram <command> --help\n"
         "  --version             versions of engram and its libraries\n";
}

std::string format_value(const config::Value& value) {
  struct Printer {
    std::string operator()(int64_t v) const { return std::to_string(v); }
    std::string operator()(double v) const { return fmt::format("{}", v); }
    std::string operator()(bool v) const { return v ? "true" : "false"; }
    std::string operator()(const std::string& v) const { return v.empty() ? "\"\"" : v; }
    std::string operator()(const std::vector<std::string>& v) const { return fmt::format("[{}]", fmt::join(v, ", ")); }
  };
  return std::visit(Printer{}, value);
}

std::string config_reference(const config::Schema& schema) {
  std::string out;
  for (const auto& [name, option] : schema.options()) {
    out += fmt::format("  {:<24} {:<18} default {:<8} {}\n", name, config::type_name(option.type),
                       format_value(option.default_value), option.help);
    if (option.range.min || option.range.max)
      out += fmt::format("  {:<24} {:<18} {:<16} a value {}\n", "", "", "", option.range.text());
    if (!option.choices.empty()) {
      std::string joined;
      for (const auto& c : option.choices) joined += (joined.empty() ? "" : ", ") + c;
      out += fmt::format("  {:<24} {:<18} {:<16} one of: {}\n", "", "", "", joined);
    }
  }
  return out;
}

// `runtime` outlives this call: after an error, main() must abort the job before MPI is finalized.
int run_command(const app::Command& command, int argc, char** argv, std::unique_ptr<dist::Runtime>& runtime) {
  po::options_description common("options for every command");
  common.add_options()("config,c", po::value<std::vector<std::string>>()->composing(), "YAML config file")(
      "set", po::value<std::vector<std::string>>()->composing(), "KEY=VALUE override")(
      "dump-config", "print the effective config and exit")("help-config", "list every config option")(
      "help,h", "this help");
  po::options_description own(command.name + " options");
  if (command.add_options) command.add_options(own);
  po::options_description all;
  all.add(own).add(common);

  po::variables_map args;
  try {
    po::positional_options_description positional;
    for (const auto& name : command.positional) positional.add(name.c_str(), 1);
    po::store(po::command_line_parser(argc, argv).options(all).positional(positional).run(), args);
    po::notify(args);
  } catch (const po::error& e) {
    core::fail("engram {}: {} (see engram {} --help)", command.name, e.what(), command.name);
  }
  const bool printer = dist::launcher_rank() == 0;  // rank 0 prints help and dumps
  if (args.count("help")) {
    if (printer) std::cout << "usage: engram " << command.name << " [options]\n\n" << command.description << "\n\n" << all << "\n";
    return 0;
  }

  config::Schema schema = app::full_schema();
  if (args.count("help-config")) {
    if (printer) std::cout << "config options (set in YAML or with --set KEY=VALUE):\n" << config_reference(schema);
    return 0;
  }
  config::Config config(schema);
  if (args.count("config"))
    for (const auto& file : args["config"].as<std::vector<std::string>>()) config.merge_file(file);
  if (args.count("set"))
    for (const auto& assignment : args["set"].as<std::vector<std::string>>()) config.apply_override(assignment);
  if (args.count("dump-config")) {
    if (printer) std::cout << config.to_yaml(true);
    return 0;
  }

  core::LogOptions log;
  log.rank = dist::launcher_rank();
  log.level = config.get_string("log.level");
  log.all_ranks = config.get_bool("log.all_ranks");
  core::init_logging(log);
  core::install_stop_signal_handlers();
  // Denormals make CPU matmuls ~100x slower (DESIGN.md, CPU performance facts).
  at::globalContext().setFlushDenormal(true);

  if (command.needs_runtime) {
    runtime = std::make_unique<dist::Runtime>(config);
    const auto& topo = runtime->topology();
    log.rank = topo.rank;
    log.world = topo.world;
    log.host = topo.host;
    core::init_logging(log);
  }
  // The whole effective config at debug level; at info, what differs from the defaults and where
  // it was set (the whole config also goes into every output file).
  spdlog::debug("engram {}: effective config\n{}", command.name, config.to_yaml());
  std::string changed;
  for (const auto& [name, option] : schema.options())
    if (config.source_of(name) != "default")
      changed += fmt::format("\n  {} = {}  ({})", name, format_value(config.value_of(name)), config.source_of(name));
  spdlog::info("engram {}: config {}", command.name, changed.empty() ? "all defaults" : "set:" + changed);
  app::CommandContext context{config, args, runtime.get()};
  return command.run(context);
}

}  // namespace

int main(int argc, char** argv) {
  core::keep_large_allocations_in_heap();
  if (argc < 2) {
    print_usage(std::cerr);
    return core::kExitUserError;
  }
  std::string name = argv[1];
  if (name == "--help" || name == "-h" || name == "help") {
    print_usage(std::cout);
    return 0;
  }
  if (name == "--version" || name == "version") {
    std::cout << app::version_text();
    return 0;
  }
  const app::Command* command = nullptr;
  for (const auto& c : app::commands())
    if (c.name == name) command = &c;
  if (command == nullptr) {
    std::cerr << "engram: unknown command '" << name << "'\n\n";
    print_usage(std::cerr);
    return core::kExitUserError;
  }

  // Until the rank is known: errors to stderr (spdlog's own default writes to stdout, which
  // `--dump-config > file` would swallow).
  core::init_logging(core::LogOptions{});
  int code = 0;
  std::unique_ptr<dist::Runtime> runtime;
  try {
    code = run_command(*command, argc - 1, argv + 1, runtime);
  } catch (const core::UserError& e) {
    spdlog::error("{}", e.what());
    code = e.exit_code();
  } catch (const core::InternalError& e) {
    spdlog::error("internal error: {}", e.what());
    code = core::kExitInternalError;
  } catch (const c10::Error& e) {
    spdlog::error("LibTorch error: {}", e.what_without_backtrace());
    code = core::kExitInternalError;
  } catch (const std::exception& e) {
    spdlog::error("error: {}", e.what());
    code = core::kExitInternalError;
  }
  if (code != 0) {
    spdlog::default_logger()->flush();
    dist::Runtime::abort_job_if_distributed(code);
  }
  runtime.reset();  // finalizes MPI after every rank has finished
  return code;
}
