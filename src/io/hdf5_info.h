#pragma once
#include <string>

namespace engram::io {

// "1.10.8 (parallel)" or "1.10.8 (serial)".
std::string hdf5_description();
bool hdf5_is_parallel();

}  // namespace engram::io
