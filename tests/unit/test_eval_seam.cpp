// The shared evaluation seam (eval/evaluation.h) with contenders registered by the test: every
// contender and every rank see the same questions and the whole stream in order; the table,
// results.json (metric names), table.csv and the curves carry what the contenders answered; the
// registry refuses unknown and repeated names. Ranks are threads (the Thread backend).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <mutex>

#include <nlohmann/json.hpp>

#include "../common/eval_stream_fixture.h"
#include "core/error.h"
#include "dist/thread_communicator.h"
#include "eval/evaluation.h"

using namespace engram;
namespace fs = std::filesystem;

namespace {

// What a contender saw, per rank.
struct Seen {
  std::vector<std::string> documents;
  std::vector<std::string> questions;
  std::vector<std::pair<int64_t, size_t>> after;  // (documents, questions) of answer_after calls
};

// Answers right exactly for questions about even stream positions; knows nothing before absorbing.
class RecordingContender : public eval::Contender {
 public:
  explicit RecordingContender(Seen* seen) : seen_(seen) {}
  double absorb(const eval::Stream& stream, eval::EvalContext&) override {
    for (const auto& d : stream.documents) seen_->documents.push_back(d.id);
    return 42.0;
  }
  std::vector<eval::Row> answer(const eval::Stream&, const std::vector<eval::StreamQuestion>& questions,
                                eval::EvalContext& ctx) override {
    for (const auto& q : questions) seen_->questions.push_back(q.qa->question);
    return {eval::Row{"recorder", score(questions, ctx), {{"answered", static_cast<double>(questions.size())}}},
            eval::Row{"recorder, ablation", eval::QaEvalResult{}, {}}};
  }
  bool has_curves() const override { return true; }
  eval::QaEvalResult answer_after(int64_t documents, const eval::Stream&,
                                  const std::vector<eval::StreamQuestion>& questions, eval::EvalContext& ctx) override {
    seen_->after.emplace_back(documents, questions.size());
    return score(questions, ctx);
  }

 private:
  static eval::QaEvalResult score(const std::vector<eval::StreamQuestion>& questions, eval::EvalContext& ctx) {
    eval::QaEvalResult r;
    // Each rank scores its half, then the sums are combined, as a real contender does.
    for (size_t i = static_cast<size_t>(ctx.comm.rank()); i < questions.size(); i += static_cast<size_t>(ctx.comm.world_size()))
      r.add(questions[i].gold_row % 2 == 0 ? questions[i].qa->answers.front() : "nowhere", *questions[i].qa);
    r.reduce(ctx.comm);
    return r;
  }
  Seen* seen_;
};

}  // namespace

TEST(EvalSeam, ContendersOnTheSameStreamSeeTheSameQuestionsAndFillOneTable) {
  const std::string dir = testing_eval::make_temp_dir();
  const std::string stream = testing_eval::write_stream(dir, 12);
  const config::Schema schema = app::full_schema();
  const config::Config cfg = testing_eval::eval_config(schema, dir, stream, "first, second");
  Seen seen[2][2];  // [rank][contender]
  dist::run_thread_ranks(2, std::chrono::milliseconds(30000), [&](dist::Communicator& comm) {
    eval::ContenderRegistry registry;  // one registration line per contender
    registry.add({"first", "records", [&](eval::EvalContext&) { return std::make_unique<RecordingContender>(&seen[comm.rank()][0]); }});
    registry.add({"second", "records", [&](eval::EvalContext&) { return std::make_unique<RecordingContender>(&seen[comm.rank()][1]); }});
    eval::EvalContext ctx(cfg, eval::eval_options_from(cfg), comm, {});
    eval::run_evaluation(ctx, registry);
  });

  // 24 questions, 5 picked evenly: positions 0, 4, 9, 14, 19 (i * 24 / 5) of the stream's list.
  const std::vector<std::string> expected = {"Where does entity 0 live?", "Where does entity 2 live?",
                                             "Entity 4 has its home in which city?", "Where does entity 7 live?",
                                             "Entity 9 has its home in which city?"};
  for (int rank = 0; rank < 2; ++rank)
    for (int c = 0; c < 2; ++c) {
      EXPECT_EQ(seen[rank][c].questions, expected) << "rank " << rank << " contender " << c;
      ASSERT_EQ(seen[rank][c].documents.size(), 12u);
      EXPECT_EQ(seen[rank][c].documents.front(), "doc-0");
      EXPECT_EQ(seen[rank][c].documents.back(), "doc-11");
      // Curves: 4 documents (100 is beyond the stream), then retention of the first tenth (1
      // document) after 6 and 12 documents.
      const std::vector<std::pair<int64_t, size_t>> after = {{4, 5}, {6, 2}, {12, 2}};
      EXPECT_EQ(seen[rank][c].after, after);
    }

  auto results = nlohmann::json::parse(std::ifstream(dir + "/eval/results.json"));
  EXPECT_EQ(results["documents"], 12);
  EXPECT_EQ(results["questions"], 5);
  ASSERT_EQ(results["rows"].size(), 4u);
  EXPECT_EQ(results["rows"][0]["contender"], "first");
  EXPECT_EQ(results["rows"][2]["contender"], "second");
  EXPECT_EQ(results["rows"][1]["method"], "recorder, ablation");
  const auto& all = results["rows"][0]["scores"]["all"];
  EXPECT_EQ(all["questions"], 5);
  EXPECT_DOUBLE_EQ(all["f1"].get<double>(), 3.0 / 5);  // entities 0, 2, 4 answered right
  EXPECT_DOUBLE_EQ(all["exact_match"].get<double>(), 3.0 / 5);
  EXPECT_DOUBLE_EQ(all["prefix_exact_match"].get<double>(), 3.0 / 5);
  EXPECT_DOUBLE_EQ(all["substring_accuracy"].get<double>(), 3.0 / 5);
  EXPECT_FALSE(all.contains("em"));
  EXPECT_EQ(results["rows"][0]["scores"]["heldout"]["questions"], 2);
  EXPECT_DOUBLE_EQ(results["rows"][0]["scores"]["heldout"]["f1"].get<double>(), 0.5);  // entity 4 right, 9 wrong
  EXPECT_DOUBLE_EQ(results["rows"][0]["answered"].get<double>(), 5.0);
  EXPECT_DOUBLE_EQ(results["rows"][0]["storage_bytes_per_doc"].get<double>(), 42.0);
  EXPECT_GT(results["rows"][0]["peak_bytes"].get<int64_t>(), 0);
  const auto& curves = results["curves"]["second"];
  ASSERT_EQ(curves["f1_vs_documents"].size(), 1u);
  EXPECT_EQ(curves["f1_vs_documents"][0]["documents"], 4);
  EXPECT_EQ(curves["retention_first_documents"], 1);
  ASSERT_EQ(curves["retention"].size(), 2u);
  EXPECT_EQ(curves["retention"][0]["documents_seen"], 6);
  EXPECT_DOUBLE_EQ(curves["retention"][0]["scores"]["all"]["f1"].get<double>(), 1.0);  // entity 0's two questions

  std::ifstream table(dir + "/eval/table.md");
  std::string text((std::istreambuf_iterator<char>(table)), {});
  EXPECT_NE(text.find("| recorder | 0.600 | 0.600 | 0.500 |"), std::string::npos) << text;
  std::ifstream csv(dir + "/eval/table.csv");
  std::string header, line;
  std::getline(csv, header);
  EXPECT_EQ(header.rfind("contender,method,questions,exact_match,prefix_exact_match,f1,", 0), 0u) << header;
  std::getline(csv, line);
  EXPECT_EQ(line.rfind("first,\"recorder\",5,0.600000,", 0), 0u) << line;
  fs::remove_all(dir);
}

TEST(EvalSeam, RegistryNamesWhatItKnows) {
  eval::ContenderRegistry registry;
  registry.add({"alpha", "", [](eval::EvalContext&) -> std::unique_ptr<eval::Contender> { return nullptr; }});
  registry.add({"beta", "", [](eval::EvalContext&) -> std::unique_ptr<eval::Contender> { return nullptr; }});
  try {
    registry.find("gamma");
    ADD_FAILURE() << "an unknown contender was found";
  } catch (const core::UserError& e) {
    EXPECT_EQ(std::string(e.what()), "eval.methods: no contender 'gamma' (known: alpha, beta)");
  }
  EXPECT_THROW(registry.add({"alpha", "", nullptr}), core::InternalError);
  EXPECT_EQ(registry.keys(), (std::vector<std::string>{"alpha", "beta"}));
}

TEST(EvalSeam, TheBuiltInContendersAreRegistered) {
  std::vector<std::string> keys = app::builtin_contenders().keys();
  EXPECT_EQ(keys, (std::vector<std::string>{"closed_book", "context", "ft", "mac", "selfparam", "ft_s", "longmem"}));
}

TEST(EvalSeam, AStreamWithoutQuestionsIsABadInput) {
  std::vector<data::Document> docs(3);
  docs[0].id = "a";
  EXPECT_THROW(eval::make_stream(docs, "s.jsonl", 0, 10), core::UserError);
  EXPECT_THROW(eval::make_stream({}, "s.jsonl", 0, 10), core::UserError);
}
