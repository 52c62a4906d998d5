#pragma once
// An `engram` subcommand: its name, help, own options, and what it runs. Every command also
// accepts the common options (--config, --set, --dump-config, --help-config, --help).
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <boost/program_options.hpp>

#include "config/config.h"

namespace engram::dist {
class Runtime;
}

namespace engram::app {

struct CommandContext {
  const config::Config& config;
  const boost::program_options::variables_map& args;  // the command's own options
  dist::Runtime* runtime;                             // null for commands that run without MPI
};

struct Command {
  std::string name;
  std::string summary;      // one line for `engram --help`
  std::string description;  // paragraph for `engram NAME --help`
  std::function<void(boost::program_options::options_description&)> add_options;
  std::function<int(CommandContext&)> run;
  bool needs_runtime = true;  // starts MPI and a communicator
  std::vector<std::string> positional;  // own options that may also be given by position
};

// The registry, in the order `engram --help` lists them.
const std::vector<Command>& commands();

// Every option of every subsystem.
config::Schema full_schema();

// Options declared next to the command that owns them.
void declare_tokenizer_options(config::Schema& schema);


// Version lines: engram, LibTorch, MPI, HDF5 (parallel yes/no), NCCL.
std::string version_text();

// Commands (one file each).
Command doctor_command();
Command synth_command();
Command tokenizer_command();
Command data_command();
Command pretrain_command();
Command generate_command();
Command convert_command();
Command eval_command();
Command mac_train_command();
Command mac_memorize_command();
Command mac_answer_command();
Command mac_eval_command();
Command inject_command();
Command selfparam_eval_command();
Command longmem_train_command();
Command longmem_ppl_command();

// The contenders `engram eval` knows, in the order `engram eval --help` lists them (contenders.cpp).
}  // namespace engram::app

namespace engram::eval {
class ContenderRegistry;
}
namespace engram::app {
const eval::ContenderRegistry& builtin_contenders();
// engram eval's body (cmd_eval.cpp): eval.methods, or `default_methods` when given, or --methods.
int run_evaluation_command(CommandContext& ctx, std::vector<std::string> default_methods);
void add_evaluation_options(boost::program_options::options_description& options);

}  // namespace engram::app
