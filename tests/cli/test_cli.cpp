// The real `engram` binary, as a user runs it: exit codes, messages, doctor on 2 ranks, and a
// stalled rank ending the job.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <chrono>
#include <filesystem>
#include <cstdio>
#include <fstream>
#include <string>

#include "cli_util.h"

using namespace cli;
namespace fs = std::filesystem;


TEST(Cli, VersionNamesEveryLibrary) {
  Result r = run(kEngram + " --version");
  EXPECT_EQ(r.code, 0);
  for (const char* part : {"engram 0.", "LibTorch 1.", "Open MPI", "HDF5", "(parallel)", "NCCL"})
    EXPECT_TRUE(contains(r.output, part)) << part << "\n" << r.output;
}

TEST(Cli, HelpListsCommandsAndCommandHelpExplains) {
  Result r = run(kEngram + " --help");
  EXPECT_EQ(r.code, 0);
  EXPECT_TRUE(contains(r.output, "doctor")) << r.output;
  r = run(kEngram + " doctor --help");
  EXPECT_EQ(r.code, 0);
  EXPECT_TRUE(contains(r.output, "checks every collective")) << r.output;
  EXPECT_TRUE(contains(r.output, "--set")) << r.output;
  r = run(kEngram + " doctor --help-config");
  EXPECT_EQ(r.code, 0);
  EXPECT_TRUE(contains(r.output, "dist.timeout_s")) << r.output;
  EXPECT_TRUE(contains(r.output, "one of: auto, mpi, nccl, local")) << r.output;
}

TEST(Cli, UnknownCommandAndOptionExitTwo) {
  Result r = run(kEngram + " frobnicate");
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(contains(r.output, "unknown command 'frobnicate'")) << r.output;
  r = run(kEngram + " doctor --frobnicate");
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(contains(r.output, "frobnicate")) << r.output;
}

TEST(Cli, UnknownConfigKeyNamesFileLineAndSuggestion) {
  std::string path = write_temp("bad_key.yaml", "log:\n  level: info\ndist:\n  timout_s: 3\n");
  Result r = run(kEngram + " doctor --config " + path);
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, path + ":4: unknown key 'dist.timout_s' (did you mean 'dist.timeout_s'?)"))
      << r.output;
}

TEST(Cli, WrongTypeNamesFileLineAndExpectedType) {
  std::string path = write_temp("bad_type.yaml", "dist:\n  threads: many\n");
  Result r = run(kEngram + " doctor -c " + path);
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, path + ":2: dist.threads: expected an integer, got 'many'")) << r.output;
}

TEST(Cli, BadSetAndBadChoice) {
  Result r = run(kEngram + " doctor --set dist.backend=gloo");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "expected one of auto, mpi, nccl, local, got 'gloo'")) << r.output;
  r = run(kEngram + " doctor --set nonsense");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "expected key=value")) << r.output;
}

TEST(Cli, DumpConfigAppliesFilesThenSet) {
  std::string path = write_temp("ok.yaml", "dist:\n  timeout_s: 30\n  threads: 2\n");
  Result r = run(kEngram + " doctor -c " + path + " --set dist.threads=1 --dump-config");
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "timeout_s: 30.0")) << r.output;
  EXPECT_TRUE(contains(r.output, "threads: 1\n")) << r.output;
  // An error before logging starts goes to stderr, not into the file stdout is redirected to.
  const std::string dumped = write_temp("dumped.yaml", "");
  r = run("(" + kEngram + " doctor --set dist.threads=x --dump-config > " + dumped + ")");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "dist.threads: expected an integer")) << r.output;
  std::ifstream in(dumped);
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), {}), "");
}

TEST(Cli, SlurmTaskCountMismatchIsAClearError) {
  Result r = run("SLURM_NTASKS=3 " + kEngram + " doctor");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "SLURM_NTASKS=3 but MPI started 1 rank(s)")) << r.output;
}

TEST(Cli, DoctorOnOneProcess) {
  Result r = run(kEngram + " doctor");
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "backend  local (auto: world size 1)")) << r.output;
  EXPECT_TRUE(contains(r.output, "health   all collectives correct on all 1 rank(s)")) << r.output;
  EXPECT_TRUE(contains(r.output, "GFLOP/s (1024^3 float32")) << r.output;
  EXPECT_TRUE(contains(r.output, "GFLOP/s in bf16 against ")) << r.output;
  // What train.bf16 = auto decides on this CPU.
  EXPECT_TRUE(contains(r.output, "train.bf16 auto: on here") || contains(r.output, "train.bf16 auto: off here")) << r.output;
}

TEST(Cli, DoctorOnTwoRanksPrintsBothRanks) {
  Result r = run(kMpirun + "2 " + kEngram + " doctor");
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "    0      0 ")) << r.output;
  EXPECT_TRUE(contains(r.output, "    1      1 ")) << r.output;
  EXPECT_TRUE(contains(r.output, "backend  mpi (auto: world size 2, CPU device)")) << r.output;
  EXPECT_TRUE(contains(r.output, "health   all collectives correct on all 2 rank(s)")) << r.output;
  EXPECT_TRUE(contains(r.output, "busbw_GB/s")) << r.output;
}

TEST(Cli, StalledRankEndsTheJobWithinTheTimeout) {
  Result r = run(kMpirun + "2 " + std::string(STALL_HELPER) + " 3");
  EXPECT_NE(r.code, 0) << r.output;
  EXPECT_LT(r.seconds, 30.0) << r.output;
  EXPECT_TRUE(contains(r.output, "collective timed out on rank")) << r.output;
  EXPECT_TRUE(contains(r.output, "seq 1")) << r.output;
  EXPECT_FALSE(contains(r.output, "not reached")) << r.output;
}

TEST(Cli, AContenderFailingOnOneRankEndsTheEvaluationJob) {
  // Rank 1's contender throws while absorbing the stream; rank 0 goes on to the next collective.
  // The job must end (ctest's timeout catches a hang) with the failure named, not wait for rank 1.
  const std::string dir = ::testing::TempDir() + "cli_eval_fault";
  fs::create_directories(dir);
  Result r = run(kMpirun + "2 " + std::string(EVAL_FAULT_HELPER) + " " + dir);
  EXPECT_NE(r.code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "eval: contender 'fails' failed on rank 1 while absorbing the stream: the documents "
                                 "of this rank are unreadable"))
      << r.output;
  EXPECT_FALSE(contains(r.output, "not reached")) << r.output;
}

// ---- text and data commands ----

TEST(Cli, SynthTokenizerAndStatsPipeline) {
  const std::string dir = ::testing::TempDir() + "cli_world";
  std::string sets = " --set synth.entities=300 --set synth.out_dir=" + dir + " --set tokenizer.input=" + dir +
                     "/corpus.txt --set tokenizer.model=" + dir + "/tok.model --set tokenizer.vocab_size=400";
  Result r = run(kEngram + " synth" + sets);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "pretrain 150 train 60 valid 15 test 75 documents")) << r.output;

  r = run(kEngram + " tokenizer" + sets);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "(vocab 400, pad 0 unk 1 bos 2 eos 3)")) << r.output;

  r = run(kEngram + " data stats --input " + dir + "/test.jsonl --tokenizer " + dir + "/tok.model");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "documents                75")) << r.output;
  EXPECT_TRUE(contains(r.output, "text tokens")) << r.output;
  // Every fact is asked twice in the test split: once with a held-out paraphrase.
  auto at = r.output.find("questions                ");
  ASSERT_NE(at, std::string::npos);
  long questions = std::stol(r.output.substr(at + 25));
  EXPECT_TRUE(contains(r.output, "(" + std::to_string(questions / 2) + " held-out paraphrases)")) << r.output;
}

TEST(Cli, SynthRejectsBadSizes) {
  Result r = run(kEngram + " synth --set synth.entities=10 --set synth.out_dir=" + ::testing::TempDir() + "x");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "--set synth.entities=10: synth.entities: expected a value in [100, 1000000], got 10"))
      << r.output;
}

TEST(Cli, TokenizerWithoutCorpusSaysWhatToDo) {
  Result r = run(kEngram + " tokenizer --set tokenizer.input=/nonexistent/corpus.txt");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "run `engram synth` first")) << r.output;
}

TEST(Cli, DataStatsOnEveryFormat) {
  const std::string fixtures = ENGRAM_FIXTURES "/data/";
  Result r = run(kEngram + " data stats --json --input " + fixtures + "squad.json");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "\"format\":\"squad-json\"")) << r.output;
  EXPECT_TRUE(contains(r.output, "\"documents\":3,")) << r.output;
  EXPECT_TRUE(contains(r.output, "\"questions\":5,")) << r.output;
  for (const char* file : {"streamingqa.csv", "archivalqa.csv", "native.jsonl"}) {
    r = run(kEngram + " data stats --input " + fixtures + file);
    EXPECT_EQ(r.code, 0) << file << r.output;
    EXPECT_TRUE(contains(r.output, "bad rows                 0")) << file << r.output;
  }
}

TEST(Cli, DataStatsBadRowsStopOrAreCounted) {
  const std::string path = ENGRAM_FIXTURES "/data/native_bad.jsonl";
  Result r = run(kEngram + " data stats --input " + path);
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, path + ":2: invalid JSON")) << r.output;
  r = run(kEngram + " data stats --input " + path + " --set data.on_bad_row=skip");
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "bad rows                 6")) << r.output;
  EXPECT_TRUE(contains(r.output, "bad row: " + path + ":3: missing field 'text'")) << r.output;
  r = run(kEngram + " data frobnicate --input " + path);
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "unknown action 'frobnicate'")) << r.output;
}
