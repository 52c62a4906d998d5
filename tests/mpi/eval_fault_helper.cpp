// A job whose contender fails on one rank: `engram eval`'s seam with a contender that throws on
// rank 1 while it absorbs the stream, the other ranks going on to the next collective. The job
// must end at once with the error naming the contender, the rank and the phase, as the engram
// command ends it (dist::Runtime::abort_job_if_distributed), and never wait for rank 1.
// usage: mpirun -np 2 eval_fault_helper DIR
#include <mpi.h>

#include <cstdio>

#include <spdlog/spdlog.h>

#include "../common/eval_stream_fixture.h"
#include "core/error.h"
#include "core/log.h"
#include "dist/mpi_communicator.h"
#include "dist/runtime.h"
#include "eval/evaluation.h"

using namespace engram;

namespace {

class FailsOnRankOne : public eval::Contender {
 public:
  double absorb(const eval::Stream&, eval::EvalContext& ctx) override {
    if (ctx.comm.rank() == 1) throw core::UserError("the documents of this rank are unreadable");
    return 0;
  }
  std::vector<eval::Row> answer(const eval::Stream&, const std::vector<eval::StreamQuestion>&,
                                eval::EvalContext&) override {
    return {};
  }
};

}  // namespace

int main(int argc, char** argv) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  int rank = 0, world = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  core::LogOptions log;
  log.rank = rank;
  log.world = world;
  core::init_logging(log);
  const std::string dir = argc > 1 ? argv[1] : "/tmp";
  if (rank == 0) testing_eval::write_stream(dir, 6);
  MPI_Barrier(MPI_COMM_WORLD);
  const config::Schema schema = app::full_schema();
  const config::Config cfg = testing_eval::eval_config(schema, dir, dir + "/stream.jsonl", "fails");
  auto comm = dist::make_mpi_communicator(MPI_COMM_WORLD, std::chrono::milliseconds(600000));
  eval::ContenderRegistry registry;
  registry.add({"fails", "throws on rank 1", [](eval::EvalContext&) { return std::make_unique<FailsOnRankOne>(); }});
  try {
    eval::EvalContext ctx(cfg, eval::eval_options_from(cfg), *comm, {});
    eval::run_evaluation(ctx, registry);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    std::fflush(stderr);
    dist::Runtime::abort_job_if_distributed(2);
    return 2;
  }
  std::printf("rank %d: not reached when a failing contender ends the job\n", rank);
  MPI_Finalize();
  return 0;
}
