// A job with a bug: rank 1 skips an all_reduce and goes on to a barrier. The watchdog must
// report the stalled collective and end the job with a non-zero exit within the deadline.
// usage: mpirun -np 2 stall_helper TIMEOUT_SECONDS
#include <mpi.h>

#include <cstdlib>
#include <cstdio>

#include <ATen/ATen.h>

#include "core/log.h"
#include "dist/mpi_communicator.h"

int main(int argc, char** argv) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  engram::core::LogOptions log;
  log.rank = rank;
  log.world = 2;
  engram::core::init_logging(log);
  double timeout_s = argc > 1 ? std::atof(argv[1]) : 3.0;
  auto comm = engram::dist::make_mpi_communicator(
      MPI_COMM_WORLD, std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000)));
  at::Tensor t = at::ones({1024});
  comm->all_reduce(t);  // seq 0: everyone joins
  if (rank != 1) comm->all_reduce(t);  // seq 1: rank 1 skips it
  comm->barrier();
  std::printf("rank %d: not reached when the watchdog works\n", rank);
  MPI_Finalize();
  return 0;
}
