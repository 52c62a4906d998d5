// The LongMem commands as a user runs them, on a tiny world and a tiny base LM: longmem-train on 2
// ranks (SideNet file, recall report), a run killed (-9) or stopped (SIGUSR1) and resumed to the
// same SideNet (each rank's memory comes back with the checkpoint), longmem-ppl's table, the
// longmem rows of engram eval, and clear errors for bad input.
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "cli_util.h"

using namespace cli;
namespace fs = std::filesystem;

namespace {

class TinyLongMem : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir = ::testing::TempDir() + "cli_longmem";
    fs::remove_all(dir);
    sets = tiny_world_sets(dir) + " --set synth.long_documents=true --set synth.long_count=6" +
           " --set synth.long_train_count=40 --set synth.long_filler_words=80 --set longmem.train_data=[" + dir +
           "/data/long_train.jsonl] --set longmem.recall_data=" + dir + "/data/long_test.jsonl" +
           " --set longmem.seq_len=64 --set longmem.memory_tokens=256 --set longmem.retrieve_tokens=8" +
           " --set longmem.reduction=1 --set longmem.max_new_tokens=3 --set longmem.train.micro_batch=2" +
           " --set longmem.train.steps=6 --set longmem.train.log_every=2 --set decoding.max_new_tokens=3" +
           " --set eval.out_dir=" + dir + "/eval --set eval.questions=8 --set eval.documents=6";
    ASSERT_EQ(run(kEngram + " synth" + sets).code, 0);
    ASSERT_EQ(run(kEngram + " tokenizer" + sets).code, 0);
    Result r = run(kMpirun + "2 " + kEngram + " pretrain" + sets);
    ASSERT_EQ(r.code, 0) << r.output;
  }
  static std::string dir, sets;
};
std::string TinyLongMem::dir, TinyLongMem::sets;

nlohmann::json read_json(const std::string& path) { return nlohmann::json::parse(std::ifstream(path)); }

}  // namespace

TEST_F(TinyLongMem, TrainMeasurePerplexityAndEvaluate) {
  Result r = run(kMpirun + "2 " + kEngram + " longmem-train" + sets + " --set longmem.out_dir=" + dir + "/lm");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "trained the SideNet 6 steps")) << r.output;
  EXPECT_TRUE(contains(r.output, "retrieval hit rate")) << r.output;
  EXPECT_TRUE(fs::exists(dir + "/lm/sidenet.h5"));
  auto report = read_json(dir + "/lm/eval.json");
  EXPECT_EQ(report["recall"]["documents"].get<int64_t>(), 6);
  EXPECT_GT(report["recall"]["memory_tokens"].get<double>(), 0.0);  // the facts were beyond a 64-token window
  EXPECT_GT(report["recall"]["longmem"]["all"]["questions"].get<int64_t>(), 6);

  r = run(kEngram + " longmem-ppl" + sets + " --set longmem.out_dir=" + dir + "/lm --text " + dir +
          "/data/long_test.jsonl");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "wrong memory")) << r.output;
  auto ppl = read_json(dir + "/lm/ppl.json")["rows"];
  ASSERT_GE(ppl.size(), 2u);
  EXPECT_EQ(ppl[0]["tokens"].get<int64_t>() % 64, 0);  // whole segments
  for (const char* reader : {"backbone", "sidenet_no_memory", "longmem", "longmem_wrong_memory"})
    EXPECT_GT(ppl[1][reader].get<double>(), 1.0) << reader;
  // The first segment meets an empty memory: LongMem reads as the SideNet without memory.
  EXPECT_NEAR(ppl[0]["longmem"].get<double>(), ppl[0]["sidenet_no_memory"].get<double>(), 1e-3);

  r = run(kMpirun + "2 " + kEngram + " eval" + sets + " --set longmem.out_dir=" + dir +
          "/lm --methods closed_book,longmem");
  ASSERT_EQ(r.code, 0) << r.output;
  auto results = read_json(dir + "/eval/results.json");
  std::vector<std::string> names;
  for (const auto& row : results["rows"]) names.push_back(row["method"].get<std::string>());
  EXPECT_NE(std::find(names.begin(), names.end(), "LongMem (memory holds the stream)"), names.end()) << results;
  EXPECT_NE(std::find(names.begin(), names.end(), "LongMem (memory of 256 tokens, FIFO)"), names.end()) << results;
}

TEST_F(TinyLongMem, AKilledOrStoppedRunResumesToTheSameSideNet) {
  const std::string train = kEngram + " longmem-train" + sets +
                            " --set longmem.train.steps=1500 --set longmem.train.save_every=100 --set longmem.dropout=0.1" +
                            " --set longmem.recall_documents=1 --set longmem.out_dir=";
  // Long enough (1500 tiny steps, several seconds) for the signals to arrive mid-training. kill -9
  // of one process (under mpirun the ranks would outlive a killed mpirun).
  Result r = run(train + dir + "/whole1");
  ASSERT_EQ(r.code, 0) << r.output;
  r = interrupt(train, dir + "/killed", "step_00000100", "KILL", "0.3");
  EXPECT_NE(r.code, 0) << r.output;
  r = run(train + dir + "/killed");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_EQ(run("h5diff -q " + dir + "/whole1/sidenet.h5 " + dir + "/killed/sidenet.h5").code, 0);
  // SIGUSR1 on 2 ranks (mpirun forwards it; a SIGTERM'd mpirun exits non-zero itself): saved at a
  // step boundary mid-training, exit 0, and the same command continues with each rank's memory.
  const std::string job = kMpirun + "2 " + train;
  r = run(job + dir + "/whole2");
  ASSERT_EQ(r.code, 0) << r.output;
  r = interrupt(job, dir + "/stopped", "step_00000100", "USR1", "0.2");
  EXPECT_EQ(r.code, 0) << r.output;
  r = run(job + dir + "/stopped");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_EQ(run("h5diff -q " + dir + "/whole2/sidenet.h5 " + dir + "/stopped/sidenet.h5").code, 0);
}

TEST_F(TinyLongMem, BadInputIsAClearError) {
  Result r = run(kEngram + " longmem-ppl" + sets + " --set longmem.out_dir=" + dir + "/none --text x.jsonl");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "sidenet.h5")) << r.output;
  r = run(kEngram + " longmem-train" + sets + " --set longmem.memory_tokens=30 --set longmem.out_dir=" + dir + "/bad");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "longmem.memory_tokens")) << r.output;
  r = run(kEngram + " longmem-train" + sets + " --set longmem.reduction=5 --set longmem.out_dir=" + dir + "/bad");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "longmem.reduction")) << r.output;
  r = run(kEngram + " eval" + sets + " --set longmem.out_dir=" + dir + "/none --methods longmem");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "longmem-train")) << r.output;
}
