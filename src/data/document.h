#pragma once
// The values every reader produces and every method consumes (DESIGN.md, "Files users keep").
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace engram::data {

struct QA {
  std::string question;
  std::vector<std::string> answers;  // the first is the reference used for scoring
  // A question phrased with a held-out paraphrase template (synthetic world): never seen in
  // training, used to test that a method learned the fact, not the phrasing.
  bool heldout = false;
};

struct Document {
  std::string id;
  std::string text;
  std::optional<int64_t> time;  // seconds since the epoch, when the source has one
  std::vector<QA> qa;
};

}  // namespace engram::data
