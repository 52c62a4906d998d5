// The MPI backend, one process per rank, against the same expectations as the Thread backend.
#include <gtest/gtest.h>
#include <mpi.h>

#include "../common/collective_checks.h"
#include "../common/grad_reducer_checks.h"
#include "dist/mpi_communicator.h"

using namespace engram;

namespace {
std::unique_ptr<dist::Communicator> make_comm() {
  return dist::make_mpi_communicator(MPI_COMM_WORLD, std::chrono::milliseconds(120000));
}
}  // namespace

TEST(Mpi, WorldMatchesMpi) {
  auto comm = make_comm();
  int rank = 0, world = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  EXPECT_EQ(comm->rank(), rank);
  EXPECT_EQ(comm->world_size(), world);
  EXPECT_GE(world, 2);
}

TEST(Mpi, AllReduceEveryOpAndDtype) {
  auto comm = make_comm();
  checks::check_all_reduce(*comm);
}

TEST(Mpi, BroadcastAllGatherReduceScatter) {
  auto comm = make_comm();
  checks::check_broadcast_and_gathers(*comm);
}

TEST(Mpi, NonContiguousAndAsync) {
  auto comm = make_comm();
  checks::check_non_contiguous_and_async(*comm);
}

TEST(Mpi, Bytes) {
  auto comm = make_comm();
  checks::check_bytes(*comm);
}

TEST(Mpi, GradReducerEqualsPerTensorAllReduce) {
  auto comm = make_comm();
  checks::check_grad_reducer(*comm);
}

TEST(Mpi, LargeAllReduceAcrossManyBuffers) {
  auto comm = make_comm();
  // 8 MB in flight at once in four async pieces: ordering and completion under load.
  std::vector<at::Tensor> parts;
  std::vector<dist::WorkPtr> works;
  for (int i = 0; i < 4; ++i) {
    parts.push_back(at::full({1 << 19}, static_cast<float>(comm->rank() + i)));
    works.push_back(comm->all_reduce_async(parts.back(), dist::ReduceOp::Max));
  }
  for (int i = 0; i < 4; ++i) {
    works[i]->wait();
    EXPECT_EQ(parts[i][12345].item<float>(), static_cast<float>(comm->world_size() - 1 + i));
  }
}
