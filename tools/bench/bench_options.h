#pragma once
// Command lines of the benchmark binaries, on Boost.Program_options as engram's own CLI: --help
// prints the usage text and every option with its default; an unknown option or a bad value
// ends the run with a one-line reason and exit status 2.
#include <cstdio>
#include <sstream>
#include <string>

#include <boost/program_options.hpp>

namespace bench {

namespace po = boost::program_options;

enum class Parsed { Run, Help, Error };

// Parses argv against `options` (--help is added). `print`: whether this process prints (under
// mpirun, rank 0 only: every rank parses the same argv and reaches the same answer, so all ranks
// stop alike without a collective). Checks of their own that callers make after parsing report
// through fail() below.
inline Parsed parse_command_line(int argc, char** argv, const char* program, const std::string& usage,
                                 po::options_description options, po::variables_map* values, bool print = true) {
  options.add_options()("help,h", "print this text");
  try {
    po::store(po::parse_command_line(argc, argv, options), *values);
    if (values->count("help")) {
      std::ostringstream text;
      text << usage << "\n" << options;
      std::string out = text.str();
      if (out.back() != '\n') out += '\n';
      if (print) std::fputs(out.c_str(), stdout);
      return Parsed::Help;
    }
    po::notify(*values);
    return Parsed::Run;
  } catch (const po::error& e) {
    if (print) std::fprintf(stderr, "%s: %s (see --help)\n", program, e.what());
    return Parsed::Error;
  }
}

// A value that parses but is out of range: the same one-line form as parse errors.
inline Parsed fail(const char* program, const std::string& reason, bool print = true) {
  if (print) std::fprintf(stderr, "%s: %s (see --help)\n", program, reason.c_str());
  return Parsed::Error;
}

inline int exit_status(Parsed parsed) { return parsed == Parsed::Help ? 0 : 2; }

}  // namespace bench
