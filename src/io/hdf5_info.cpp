#include "io/hdf5_info.h"

#include <hdf5.h>

#include <fmt/format.h>

namespace engram::io {

bool hdf5_is_parallel() {
#ifdef H5_HAVE_PARALLEL
  return true;
#else
  return false;
#endif
}

std::string hdf5_description() {
  unsigned major = 0, minor = 0, release = 0;
  H5get_libversion(&major, &minor, &release);
  return fmt::format("{}.{}.{} ({})", major, minor, release, hdf5_is_parallel() ? "parallel" : "serial");
}

}  // namespace engram::io
