#pragma once
// What the MPI tests share: the job's communicator and a scratch directory every rank agrees on.
#include <mpi.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>

#include "dist/communicator.h"
#include "dist/mpi_communicator.h"

namespace mpi_test {

inline const MPI_Comm kWorld = MPI_COMM_WORLD;

inline std::unique_ptr<engram::dist::Communicator> make_comm() {
  return engram::dist::make_mpi_communicator(MPI_COMM_WORLD, std::chrono::milliseconds(120000));
}

// A directory every rank agrees on (rank 0 picks and clears it).
inline std::string shared_dir(engram::dist::Communicator& comm, const std::string& name) {
  std::string dir = "/tmp/engram_mpi_test_" + name + "_" + std::to_string(comm.world_size());
  if (comm.rank() == 0) {
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
  }
  comm.barrier();
  return dir;
}

}  // namespace mpi_test
