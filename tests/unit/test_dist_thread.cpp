// The Thread backend at several world sizes, against computed expectations, plus what only it
// can check in one process: collective mismatches and a rank that skips a collective.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include "../common/collective_checks.h"
#include "../common/grad_reducer_checks.h"
#include "core/error.h"
#include "core/timer.h"
#include "dist/local_communicator.h"
#include "dist/thread_communicator.h"

using namespace engram;
using std::chrono::milliseconds;

class ThreadWorld : public ::testing::TestWithParam<int> {};

TEST_P(ThreadWorld, AllReduceEveryOpAndDtype) {
  dist::run_thread_ranks(GetParam(), milliseconds(30000), [](dist::Communicator& c) { checks::check_all_reduce(c); });
}
TEST_P(ThreadWorld, BroadcastAllGatherReduceScatter) {
  dist::run_thread_ranks(GetParam(), milliseconds(30000),
                         [](dist::Communicator& c) { checks::check_broadcast_and_gathers(c); });
}
TEST_P(ThreadWorld, NonContiguousAndAsync) {
  dist::run_thread_ranks(GetParam(), milliseconds(30000),
                         [](dist::Communicator& c) { checks::check_non_contiguous_and_async(c); });
}
TEST_P(ThreadWorld, Bytes) {
  dist::run_thread_ranks(GetParam(), milliseconds(30000), [](dist::Communicator& c) { checks::check_bytes(c); });
}
TEST_P(ThreadWorld, GradReducerEqualsPerTensorAllReduce) {
  dist::run_thread_ranks(GetParam(), milliseconds(30000),
                         [](dist::Communicator& c) { checks::check_grad_reducer(c); });
}
INSTANTIATE_TEST_SUITE_P(Worlds, ThreadWorld, ::testing::Values(1, 2, 3, 4));

TEST(LocalBackend, BehavesAsWorldOfOne) {
  auto comm = dist::make_local_communicator(milliseconds(1000));
  checks::check_all_reduce(*comm);
  checks::check_broadcast_and_gathers(*comm);
  checks::check_bytes(*comm);
  checks::check_grad_reducer(*comm);
}

TEST(ThreadBackend, SkippedCollectiveTimesOutOnTheWaitingRank) {
  core::Stopwatch clock;
  try {
    dist::run_thread_ranks(2, milliseconds(500), [](dist::Communicator& c) {
      at::Tensor t = at::ones({4});
      if (c.rank() == 0) c.all_reduce(t);  // rank 1 skips it
    });
    FAIL() << "expected a timeout";
  } catch (const dist::TimeoutError& e) {
    EXPECT_NE(std::string(e.what()).find("rank 0"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("all_reduce seq 0"), std::string::npos) << e.what();
  }
  EXPECT_LT(clock.seconds(), 5.0);
}

TEST(ThreadBackend, DifferentCollectivesAreAMismatch) {
  try {
    dist::run_thread_ranks(2, milliseconds(2000), [](dist::Communicator& c) {
      at::Tensor t = at::ones({4});
      if (c.rank() == 0) c.all_reduce(t);
      else c.broadcast(t, 0);
    });
    FAIL() << "expected a mismatch";
  } catch (const dist::MismatchError& e) {
    EXPECT_NE(std::string(e.what()).find("all_reduce"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("broadcast"), std::string::npos) << e.what();
  }
}

TEST(ThreadBackend, WaitWithTimeoutOnCompletedWorkReturns) {
  dist::run_thread_ranks(2, milliseconds(5000), [](dist::Communicator& c) {
    at::Tensor t = at::ones({3});
    auto work = c.all_reduce_async(t, dist::ReduceOp::Sum);
    work->wait(milliseconds(10));
    EXPECT_TRUE(t.eq(2).all().item<bool>());
  });
}

TEST(Communicator, RejectsBadArguments) {
  auto comm = dist::make_local_communicator(milliseconds(1000));
  at::Tensor ints = at::ones({3}, at::kInt);
  EXPECT_THROW(comm->all_reduce(ints, dist::ReduceOp::Avg), core::InternalError);
  at::Tensor bytes = at::ones({3}, at::kByte);
  EXPECT_THROW(comm->all_reduce(bytes), core::InternalError);
  at::Tensor t = at::ones({3});
  EXPECT_THROW(comm->broadcast(t, 1), core::InternalError);
  at::Tensor wrong = at::empty({4});
  EXPECT_THROW(comm->all_gather(t, wrong), core::InternalError);
}
