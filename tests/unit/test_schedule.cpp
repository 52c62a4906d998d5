#include <gtest/gtest.h>

#include "core/error.h"
#include "train/schedule.h"

using engram::train::Schedule;

TEST(Schedule, WarmupThenCosineToTheFloor) {
  Schedule s{Schedule::Kind::Cosine, 1.0, 10, 110, 0.1};
  EXPECT_DOUBLE_EQ(s.at(0), 0.1);  // (0 + 1) / 10
  EXPECT_DOUBLE_EQ(s.at(9), 1.0);
  EXPECT_DOUBLE_EQ(s.at(10), 1.0);                    // decay starts at the peak
  EXPECT_NEAR(s.at(10 + 99 / 2), 0.1 + 0.9 * 0.5 * (1 + std::cos(M_PI * 49.0 / 99.0)), 1e-12);
  EXPECT_DOUBLE_EQ(s.at(109), 0.1);                   // the last step sits on the floor
  EXPECT_DOUBLE_EQ(s.at(500), 0.1);
}

TEST(Schedule, LinearAndConstant) {
  Schedule linear{Schedule::Kind::Linear, 2.0, 0, 11, 0.0};
  EXPECT_DOUBLE_EQ(linear.at(0), 2.0);
  EXPECT_DOUBLE_EQ(linear.at(5), 1.0);
  EXPECT_DOUBLE_EQ(linear.at(10), 0.0);
  Schedule constant{Schedule::Kind::Constant, 3e-4, 5, 100, 0.1};
  EXPECT_DOUBLE_EQ(constant.at(2), 3e-4 * 3 / 5);
  EXPECT_DOUBLE_EQ(constant.at(50), 3e-4);
  EXPECT_EQ(engram::core::parse_enum<Schedule::Kind>("linear", "train.schedule"), Schedule::Kind::Linear);
  try {
    engram::core::parse_enum<Schedule::Kind>("triangle", "train.schedule");
    ADD_FAILURE() << "an unknown schedule was accepted";
  } catch (const engram::core::UserError& e) {
    EXPECT_EQ(std::string(e.what()), "train.schedule: expected one of constant, linear, cosine, got 'triangle'");
  }
}
