#include <torch/version.h>

#include <fmt/format.h>

#include "app/command.h"
#include "core/build_info.h"
#include "dist/nccl_communicator.h"
#include "dist/runtime.h"
#include "io/hdf5_info.h"

namespace engram::app {

std::string version_text() {
  return fmt::format(
      "{}\n"
      "LibTorch {}\n"
      "MPI      {}\n"
      "HDF5     {}\n"
      "NCCL     {}\n",
      core::build_description(), TORCH_VERSION, dist::mpi_library_version(), io::hdf5_description(),
      dist::nccl_available() ? dist::nccl_version() : "off (built without NCCL)");
}

}  // namespace engram::app
