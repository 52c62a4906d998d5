#pragma once
#include <string>

namespace engram::core {

// engram's version and the build type, compiler and git revision baked in at configure time.
std::string engram_version();
std::string build_description();

}  // namespace engram::core
