#pragma once
// Process bootstrap for every engram command: MPI start-up, where this rank sits (world and
// node-local rank, node count, host), the CPU thread budget, the device, and the communicator
// chosen for it. Owns MPI: finalizes it when destroyed.
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "dist/communicator.h"
#include "dist/mpi_handle.h"

namespace engram::config {
class Config;
}

namespace engram::dist {

struct Topology {
  int rank = 0;
  int world = 1;
  int local_rank = 0;
  int local_world = 1;
  int nodes = 1;
  std::string host;
  int pid = 0;
};

// One row of the rank table (doctor, start-up log).
struct RankInfo {
  int rank = 0;
  int local_rank = 0;
  std::string host;
  int pid = 0;
  std::string device;
  int threads = 0;
};

class Runtime {
 public:
  // Initialises MPI (MPI_THREAD_MULTIPLE), reads the topology, checks the launcher, sets the
  // thread budget and builds the communicator from the dist.* options.
  explicit Runtime(const config::Config& config);
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  const Topology& topology() const { return topology_; }
  Communicator& comm() { return *comm_; }
  std::shared_ptr<Communicator> comm_ptr() { return comm_; }
  const std::string& device() const { return device_; }
  int threads() const { return threads_; }
  // Why the backend was chosen, e.g. "world size 2, CPU device -> mpi".
  const std::string& backend_reason() const { return backend_reason_; }
  // The job's MPI communicator, for parallel HDF5; none (not parallel) for a one-process run.
  MpiHandle mpi_handle() const;
  // Every rank's row, gathered on all ranks.
  std::vector<RankInfo> rank_table();

  // After an error on one rank of a multi-rank job: ends every process of the job at once with
  // `code` (MPI_Abort), so the others do not wait for this one until their deadline. Returns only
  // when there is no multi-rank job to end.
  static void abort_job_if_distributed(int code);

 private:
  Topology topology_;
  std::string device_;
  int threads_ = 1;
  std::string backend_reason_;
  std::shared_ptr<Communicator> control_;  // MPI, when the world has more than one rank
  std::shared_ptr<Communicator> comm_;
};

// Pure helpers, exposed for tests.
// Threads per rank: configured > 0 wins; else max(1, min(usable cores, node cores / local ranks)).
int choose_threads(int configured, int node_cores, int usable_cores, int local_world);
// SLURM_NTASKS set and != the MPI world size -> UserError explaining the singleton trap.
void check_launcher(const char* slurm_ntasks, int world);
// The backend for a requested name, world size and device; `reason` says why.
std::string choose_backend(const std::string& requested, int world, bool cuda_device, bool nccl_built,
                           std::string* reason);
// MPI_Get_library_version's first line, e.g. "Open MPI v4.1.4, ...".
std::string mpi_library_version();
// The rank this process will have, read from launcher environment variables before MPI starts
// (OMPI, PMI, SLURM); 0 when none is set. Used to print start-up errors once.
int launcher_rank();

}  // namespace engram::dist
