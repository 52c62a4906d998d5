#include <gtest/gtest.h>

#include <csignal>
#include <set>
#include <thread>

#include "core/error.h"
#include "core/progress.h"
#include "core/seed.h"
#include "core/signals.h"

using namespace engram::core;

TEST(Error, UserErrorExitsWithTwo) {
  try {
    fail("{}:{}: bad value '{}'", "a.yaml", 3, "x");
    FAIL();
  } catch (const UserError& e) {
    EXPECT_STREQ(e.what(), "a.yaml:3: bad value 'x'");
    EXPECT_EQ(e.exit_code(), 2);
  }
}

TEST(Error, CheckNamesExpressionAndLocation) {
  try {
    int x = 3;
    ENGRAM_CHECK(x == 4, "x was {}", x);
    FAIL();
  } catch (const InternalError& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("check failed: x == 4"), std::string::npos) << what;
    EXPECT_NE(what.find("test_core.cpp"), std::string::npos) << what;
    EXPECT_NE(what.find("x was 3"), std::string::npos) << what;
  }
}

TEST(Progress, DurationFormat) {
  EXPECT_EQ(format_duration(0), "0:00");
  EXPECT_EQ(format_duration(125), "2:05");
  EXPECT_EQ(format_duration(3723), "1:02:03");
  EXPECT_EQ(format_duration(-1), "?");
}

TEST(Progress, LineShowsCountRateAndEta) {
  Progress progress("train", 100, false, 0.0, "step");
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  std::string line = progress.line(50, "loss 1.5");
  EXPECT_EQ(line.rfind("train 50/100 (50.0%) ", 0), 0u) << line;
  EXPECT_NE(line.find(" step/s "), std::string::npos) << line;
  EXPECT_NE(line.find("ETA 0:00"), std::string::npos) << line;  // 50 more at >= 100/s: under a second
  EXPECT_NE(line.find("| loss 1.5"), std::string::npos) << line;
  // Rate: 50 items in ~0.2 s -> between 10 and 300 per second.
  double rate = std::stod(line.substr(line.find("%) ") + 3));
  EXPECT_GT(rate, 10);
  EXPECT_LT(rate, 300);
}

TEST(Progress, AResumedLoopCountsOnlyItsOwnItems) {
  Progress progress("train", 1000, false, 0.0, "step");
  progress.resume_from(900);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  std::string line = progress.line(920);
  EXPECT_EQ(line.rfind("train 920/1000 (92.0%) ", 0), 0u) << line;
  // 20 items in ~0.2 s: about 100/s (not 920 / 0.2 = 4600/s), so 80 more take about a second.
  double rate = std::stod(line.substr(line.find("%) ") + 3));
  EXPECT_GT(rate, 20);
  EXPECT_LT(rate, 110);
  EXPECT_EQ(line.find("ETA 0:00"), std::string::npos) << line;
}

TEST(Seed, DerivedSeedsAreDeterministicAndDistinct) {
  EXPECT_EQ(derive_seed(1234, {0, 1}), derive_seed(1234, {0, 1}));
  std::set<uint64_t> seen;
  for (uint64_t rank = 0; rank < 64; ++rank)
    for (uint64_t epoch = 0; epoch < 64; ++epoch) seen.insert(derive_seed(1234, {rank, epoch}));
  EXPECT_EQ(seen.size(), 64u * 64u);
  EXPECT_NE(derive_seed(1234, {1, 0}), derive_seed(1234, {0, 1}));  // order matters
  EXPECT_NE(derive_seed(1, {}), derive_seed(2, {}));
}

TEST(Signals, TermAndUsr1SetTheStopFlag) {
  install_stop_signal_handlers();
  clear_stop_request();
  EXPECT_FALSE(stop_requested());
  std::raise(SIGUSR1);
  EXPECT_TRUE(stop_requested());
  EXPECT_EQ(stop_signal(), SIGUSR1);
  clear_stop_request();
  std::raise(SIGTERM);  // would end the process without the handler
  EXPECT_EQ(stop_signal(), SIGTERM);
  clear_stop_request();
}
