#include <gtest/gtest.h>

#include "core/error.h"
#include "dist/runtime.h"

using namespace engram;

TEST(BackendChoice, AutoPicksByWorldAndDevice) {
  std::string why;
  EXPECT_EQ(dist::choose_backend("auto", 1, false, true, &why), "local");
  EXPECT_EQ(dist::choose_backend("auto", 2, false, true, &why), "mpi");
  EXPECT_EQ(why, "auto: world size 2, CPU device");
  EXPECT_EQ(dist::choose_backend("auto", 4, true, true, &why), "nccl");
  EXPECT_EQ(dist::choose_backend("auto", 4, true, false, &why), "mpi");
  EXPECT_NE(why.find("built without NCCL"), std::string::npos);
  EXPECT_EQ(dist::choose_backend("mpi", 1, false, false, &why), "mpi");
}

TEST(BackendChoice, ImpossibleRequestsAreUserErrors) {
  EXPECT_THROW(dist::choose_backend("local", 2, false, true, nullptr), core::UserError);
  EXPECT_THROW(dist::choose_backend("nccl", 2, false, true, nullptr), core::UserError);
  EXPECT_THROW(dist::choose_backend("nccl", 2, true, false, nullptr), core::UserError);
}

TEST(ThreadBudget, CoresSharedByLocalRanks) {
  EXPECT_EQ(dist::choose_threads(0, 16, 16, 4), 4);
  EXPECT_EQ(dist::choose_threads(0, 2, 2, 2), 1);
  EXPECT_EQ(dist::choose_threads(0, 2, 2, 3), 1);   // never zero
  EXPECT_EQ(dist::choose_threads(0, 16, 1, 2), 1);  // bound to one core by the launcher
  EXPECT_EQ(dist::choose_threads(6, 2, 2, 2), 6);   // configured wins
}

TEST(Launcher, SlurmTaskCountMustMatchWorld) {
  EXPECT_NO_THROW(dist::check_launcher(nullptr, 2));
  EXPECT_NO_THROW(dist::check_launcher("2", 2));
  try {
    dist::check_launcher("4", 1);
    FAIL();
  } catch (const core::UserError& e) {
    EXPECT_NE(std::string(e.what()).find("SLURM_NTASKS=4 but MPI started 1 rank(s)"), std::string::npos) << e.what();
  }
}
