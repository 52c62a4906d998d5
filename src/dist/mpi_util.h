#pragma once
// MPI helpers shared by the dist/ sources (only dist/ includes mpi.h).
#include <mpi.h>

#include <string>

namespace engram::dist {

// Throws InternalError naming the MPI call and MPI's own error text when rc != MPI_SUCCESS.
void check_mpi(int rc, const char* call);

#define ENGRAM_MPI(call) ::engram::dist::check_mpi((call), #call)

}  // namespace engram::dist
