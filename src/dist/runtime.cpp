#include "dist/runtime.h"

#include <sched.h>
#include <unistd.h>

#include <cstdlib>
#include <sstream>
#include <thread>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <spdlog/spdlog.h>

#include "config/config.h"
#include "core/error.h"
#include "dist/local_communicator.h"
#include "dist/mpi_communicator.h"
#include "dist/mpi_util.h"
#include "dist/nccl_communicator.h"

namespace engram::dist {

int choose_threads(int configured, int node_cores, int usable_cores, int local_world) {
  if (configured > 0) return configured;
  int share = node_cores / std::max(1, local_world);
  return std::max(1, std::min(usable_cores, share));
}

void check_launcher(const char* slurm_ntasks, int world) {
  if (slurm_ntasks == nullptr || *slurm_ntasks == '\0') return;
  char* end = nullptr;
  long tasks = std::strtol(slurm_ntasks, &end, 10);
  if (*end != '\0' || tasks <= 0) return;  // not a count: not ours to judge
  if (tasks != world)
    core::fail(
        "SLURM_NTASKS={} but MPI started {} rank(s). Under SLURM, launch with `srun --mpi=pmix` (check "
        "`srun --mpi=list`) or `mpirun -np $SLURM_NTASKS`; an MPI without PMI support started by srun runs "
        "{} separate singleton jobs. For a deliberate single-process run inside an allocation, unset SLURM_NTASKS.",
        tasks, world, tasks);
}

std::string choose_backend(const std::string& requested, int world, bool cuda_device, bool nccl_built,
                           std::string* reason) {
  std::string why;
  std::string backend;
  if (requested == "local") {
    if (world > 1) core::fail("dist.backend: local runs a single process, but the world has {} ranks", world);
    backend = "local";
    why = "dist.backend = local";
  } else if (requested == "mpi") {
    backend = "mpi";
    why = "dist.backend = mpi";
  } else if (requested == "nccl") {
    if (!nccl_built)
      core::fail("dist.backend: nccl was asked for, but this engram was built without NCCL "
                 "(install the CUDA toolkit with NCCL and reconfigure with -DENGRAM_WITH_NCCL=ON)");
    if (!cuda_device) core::fail("dist.backend: nccl needs a CUDA device, and none is visible to this rank");
    backend = "nccl";
    why = "dist.backend = nccl";
  } else if (world == 1) {
    backend = "local";
    why = "auto: world size 1";
  } else if (cuda_device && nccl_built) {
    backend = "nccl";
    why = fmt::format("auto: world size {}, CUDA device, built with NCCL", world);
  } else {
    backend = "mpi";
    why = fmt::format("auto: world size {}, {}", world,
                      cuda_device ? "CUDA device but built without NCCL (CPU tensors over MPI)" : "CPU device");
  }
  if (reason) *reason = why;
  return backend;
}

int launcher_rank() {
  for (const char* name : {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"}) {
    if (const char* v = std::getenv(name)) return std::atoi(v);
  }
  return 0;
}

std::string mpi_library_version() {
  char text[MPI_MAX_LIBRARY_VERSION_STRING] = {};
  int length = 0;
  MPI_Get_library_version(text, &length);
  std::string version(text, length);
  return version.substr(0, version.find_first_of(",\n"));
}

namespace {

int usable_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return static_cast<int>(std::thread::hardware_concurrency());
  return CPU_COUNT(&set);
}

std::string host_name() {
  char buffer[256] = {};
  gethostname(buffer, sizeof(buffer) - 1);
  return buffer;
}

bool g_we_initialized_mpi = false;

}  // namespace

Runtime::Runtime(const config::Config& config) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    int provided = 0;
    ENGRAM_MPI(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided));
    g_we_initialized_mpi = true;
    if (provided < MPI_THREAD_MULTIPLE)
      spdlog::warn("MPI provides thread level {} < MPI_THREAD_MULTIPLE; collectives run on a worker thread", provided);
  }
  ENGRAM_MPI(MPI_Comm_rank(MPI_COMM_WORLD, &topology_.rank));
  ENGRAM_MPI(MPI_Comm_size(MPI_COMM_WORLD, &topology_.world));
  MPI_Comm node;
  ENGRAM_MPI(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, topology_.rank, MPI_INFO_NULL, &node));
  ENGRAM_MPI(MPI_Comm_rank(node, &topology_.local_rank));
  ENGRAM_MPI(MPI_Comm_size(node, &topology_.local_world));
  MPI_Comm_free(&node);
  int node_leader = topology_.local_rank == 0 ? 1 : 0;
  ENGRAM_MPI(MPI_Allreduce(&node_leader, &topology_.nodes, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD));
  topology_.host = host_name();
  topology_.pid = static_cast<int>(getpid());

  check_launcher(std::getenv("SLURM_NTASKS"), topology_.world);

  threads_ = choose_threads(static_cast<int>(config.get_int("dist.threads")),
                            static_cast<int>(std::thread::hardware_concurrency()), usable_cores(),
                            topology_.local_world);
  at::set_num_threads(threads_);

  int gpus = at::hasCUDA() ? at::detail::getCUDAHooks().getNumGPUs() : 0;
  device_ = gpus > 0 ? fmt::format("cuda:{}", topology_.local_rank % gpus) : "cpu";

  auto timeout = std::chrono::milliseconds(static_cast<int64_t>(config.get_float("dist.timeout_s") * 1000.0));
  if (timeout.count() <= 0) core::fail("dist.timeout_s: expected a positive number of seconds");
  std::string backend = choose_backend(config.get_string("dist.backend"), topology_.world, gpus > 0,
                                       nccl_available(), &backend_reason_);
  if (backend == "local") {
    comm_ = make_local_communicator(timeout);
  } else if (backend == "mpi") {
    comm_ = make_mpi_communicator(MPI_COMM_WORLD, timeout);
  } else {
    control_ = make_mpi_communicator(MPI_COMM_WORLD, timeout);
    comm_ = make_nccl_communicator(control_, topology_.local_rank % gpus, timeout);
  }
  spdlog::info("[dist] backend={} ({}) world={} nodes={} threads/rank={} device={}", backend, backend_reason_,
               topology_.world, topology_.nodes, threads_, device_);
}

Runtime::~Runtime() {
  comm_.reset();
  control_.reset();
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (g_we_initialized_mpi && !finalized) MPI_Finalize();
}

std::vector<RankInfo> Runtime::rank_table() {
  std::string mine = fmt::format("{}\t{}\t{}\t{}\t{}\t{}", topology_.rank, topology_.local_rank, topology_.host,
                                 topology_.pid, device_, threads_);
  std::vector<RankInfo> table;
  for (const std::string& row : comm_->all_gather_bytes(mine)) {
    std::istringstream in(row);
    RankInfo info;
    std::string field;
    std::getline(in, field, '\t'); info.rank = std::stoi(field);
    std::getline(in, field, '\t'); info.local_rank = std::stoi(field);
    std::getline(in, info.host, '\t');
    std::getline(in, field, '\t'); info.pid = std::stoi(field);
    std::getline(in, info.device, '\t');
    std::getline(in, field, '\t'); info.threads = std::stoi(field);
    table.push_back(info);
  }
  return table;
}

MpiHandle MpiHandle::world() {
  static const MPI_Comm world = MPI_COMM_WORLD;
  return MpiHandle(&world);
}

MpiHandle Runtime::mpi_handle() const { return topology_.world > 1 ? MpiHandle::world() : MpiHandle(); }

void Runtime::abort_job_if_distributed(int code) {
  int initialized = 0, finalized = 0, world = 1;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (!initialized || finalized) return;
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  if (world > 1) MPI_Abort(MPI_COMM_WORLD, code);
}

}  // namespace engram::dist
