#pragma once
// MPI backend: CPU tensors, blocking MPI collectives run in issue order by an OpQueue (async
// forms overlap with compute), each one watched by the Watchdog, which calls MPI_Abort on expiry.
#include <memory>

#include <mpi.h>

#include "dist/communicator.h"

namespace engram::dist {

// `world` is duplicated: engram's traffic never mixes with the caller's.
std::unique_ptr<Communicator> make_mpi_communicator(MPI_Comm world, std::chrono::milliseconds timeout);

}  // namespace engram::dist
