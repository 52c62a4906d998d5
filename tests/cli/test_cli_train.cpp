// Training commands as a user runs them: pretrain on 2 ranks, resume on 1 and on 3 ranks,
// SIGTERM saves and exits 0, generate from the result, convert to Hugging Face and back.
#include <filesystem>

#include <nlohmann/json.hpp>

#include "cli_util.h"

using namespace cli;
namespace fs = std::filesystem;

namespace {

// A tiny world, tokenizer and model: seconds per command.
class TinyRun : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir = ::testing::TempDir() + "cli_train";
    fs::remove_all(dir);
    sets = " --set synth.entities=200 --set synth.out_dir=" + dir + "/data --set tokenizer.input=" + dir +
           "/data/corpus.txt --set tokenizer.model=" + dir + "/tok.model --set tokenizer.vocab_size=400" +
           " --set pretrain.data=[" + dir + "/data/pretrain.jsonl] --set pretrain.eval_data=" + dir +
           "/data/valid.jsonl --set pretrain.out_dir=" + dir + "/base --set pretrain.eval_questions=8" +
           " --set model.d_model=32 --set model.n_layers=1 --set model.n_heads=2 --set model.d_ff=64" +
           " --set train.micro_batch=4 --set train.log_every=2 --set train.warmup_steps=2";
    ASSERT_EQ(run(kEngram + " synth" + sets).code, 0);
    ASSERT_EQ(run(kEngram + " tokenizer" + sets).code, 0);
  }
  static std::string dir, sets;
};
std::string TinyRun::dir, TinyRun::sets;

int metric_lines(const std::string& path) {
  std::ifstream in(path);
  int n = 0;
  for (std::string line; std::getline(in, line);) ++n;
  return n;
}

}  // namespace

TEST_F(TinyRun, PretrainResumesAtOtherWorldSizesGeneratesAndConverts) {
  Result r = run(kMpirun + "2 " + kEngram + " pretrain" + sets + " --set train.steps=6");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "pretrained 6 steps")) << r.output;
  EXPECT_TRUE(contains(r.output, "context in prompt (training templates)")) << r.output;
  EXPECT_TRUE(fs::exists(dir + "/base/model.h5"));
  EXPECT_TRUE(fs::exists(dir + "/base/tokenizer.model"));
  EXPECT_TRUE(fs::exists(dir + "/base/checkpoints/step_00000006.done"));
  EXPECT_EQ(metric_lines(dir + "/base/metrics.jsonl"), 3);
  auto report = nlohmann::json::parse(std::ifstream(dir + "/base/eval.json"));
  EXPECT_EQ(report["steps"], 6);

  // 2 -> 1 rank, then 1 -> 3 ranks: the run continues from the saved step.
  r = run(kMpirun + "1 " + kEngram + " pretrain" + sets + " --set train.steps=8");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "(saved by 2 ranks) on 1 ranks at step 6")) << r.output;
  EXPECT_TRUE(contains(r.output, "pretrained 8 steps")) << r.output;
  r = run(kMpirun + "3 " + kEngram + " pretrain" + sets + " --set train.steps=10");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "(saved by 1 ranks) on 3 ranks at step 8")) << r.output;
  EXPECT_TRUE(fs::exists(dir + "/base/checkpoints/step_00000010.done"));
  EXPECT_FALSE(fs::exists(dir + "/base/checkpoints/step_00000006.h5"));  // keep_checkpoints = 2

  // Generate from the run folder; then GPT-2 layout and back gives the same continuation.
  const std::string prompt = " --prompt \"Context: Ba Ko works as a baker. Question: What is the job of Ba Ko? Answer:\"";
  r = run(kEngram + " generate --checkpoint " + dir + "/base" + prompt + " -n 5 --only-new");
  ASSERT_EQ(r.code, 0) << r.output;
  const std::string original = r.output.substr(r.output.rfind('\n', r.output.size() - 2) + 1);
  r = run(kEngram + " convert --checkpoint " + dir + "/base --to-hf " + dir + "/hf");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(fs::exists(dir + "/hf/config.json"));
  EXPECT_TRUE(fs::exists(dir + "/hf/model.safetensors"));
  EXPECT_TRUE(fs::exists(dir + "/hf/tokenizer.model"));
  r = run(kEngram + " convert --hf " + dir + "/hf --out " + dir + "/back.h5");
  ASSERT_EQ(r.code, 0) << r.output;
  r = run(kEngram + " generate --checkpoint " + dir + "/back.h5" + prompt +
          " -n 5 --only-new");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_EQ(r.output.substr(r.output.rfind('\n', r.output.size() - 2) + 1), original);
  r = run(kEngram + " generate --hf " + dir + "/hf" + prompt +
          " -n 5 --only-new --strategy beam --beams 3");
  EXPECT_EQ(r.code, 0) << r.output;
}

std::vector<double> logged_losses(const std::string& metrics) {
  std::vector<double> losses;
  std::ifstream in(metrics);
  for (std::string line; std::getline(in, line);) losses.push_back(nlohmann::json::parse(line)["loss"]);
  return losses;
}

// train.zero: a ZeRO-2 run on 2 ranks resumed by 3 ranks at ZeRO-1 follows the plain run's
// losses. One example per micro-step and 6 per step either way (2 ranks x 3 micro-steps, then
// 3 x 2), so every step averages the same six examples' losses; a constant learning rate, so
// the run stopped at step 4 has the schedule of the one that goes on to 8.
TEST_F(TinyRun, ZeroRunResumesAtAnotherWorldSizeAndStageOnTheSameTrajectory) {
  const std::string common =
      sets + " --set train.micro_batch=1 --set train.log_every=1 --set train.lr=1e-2 --set train.schedule=constant";
  const std::string plain = common + " --set pretrain.out_dir=" + dir + "/zero_plain";
  Result r = run(kMpirun + "2 " + kEngram + " pretrain" + plain + " --set train.accumulation=3 --set train.steps=8");
  ASSERT_EQ(r.code, 0) << r.output;
  const std::string sharded = common + " --set pretrain.out_dir=" + dir + "/zero_sharded";
  r = run(kMpirun + "2 " + kEngram + " pretrain" + sharded + " --set train.accumulation=3 --set train.steps=4 --set train.zero=2");
  ASSERT_EQ(r.code, 0) << r.output;
  r = run(kMpirun + "3 " + kEngram + " pretrain" + sharded + " --set train.accumulation=2 --set train.steps=8 --set train.zero=1");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "(saved by 2 ranks) on 3 ranks at step 4")) << r.output;
  const auto expected = logged_losses(dir + "/zero_plain/metrics.jsonl");
  const auto got = logged_losses(dir + "/zero_sharded/metrics.jsonl");
  ASSERT_EQ(expected.size(), 8u);
  ASSERT_EQ(got.size(), 8u);
  for (size_t s = 0; s < 8; ++s) EXPECT_NEAR(got[s], expected[s], 1e-4 * expected[s]) << "step " << s + 1;
  EXPECT_LT(expected[7], expected[0]);
}

TEST_F(TinyRun, SigtermSavesAndExitsZero) {
  const std::string out = dir + "/stopped";
  // timeout sends SIGTERM after 4 s; --preserve-status returns engram's own exit code.
  Result r = run("timeout --preserve-status -s TERM 4 " + kEngram + " pretrain" + sets +
                 " --set pretrain.out_dir=" + out + " --set train.steps=1000000");
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "stop signal: saving step")) << r.output;
  bool committed = false;
  for (const auto& entry : fs::directory_iterator(out + "/checkpoints"))
    committed = committed || entry.path().extension() == ".done";
  EXPECT_TRUE(committed);
  // Bad input to training commands is a clear error.
  r = run(kEngram + " pretrain" + sets + " --set pretrain.out_dir=" + out + " --set model.n_heads=3");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "model.n_heads")) << r.output;
  r = run(kEngram + " generate --checkpoint /nonexistent --prompt x");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "/nonexistent: no such model file or folder")) << r.output;
}

TEST(Cli, GenerateFromAFolderSavedByHuggingFaceContinuesAsHfDoes) {
  // tests/fixtures/hf/gpt2: a tiny GPT2LMHeadModel and byte-level BPE saved by transformers, with
  // the text HF's greedy generate() decoded (tools/hf_reference/make_fixtures.py).
  const std::string folder = ENGRAM_FIXTURES "/hf/gpt2";
  std::ifstream in(folder + "/reference.json");
  const auto ref = nlohmann::json::parse(in);
  std::string command = kEngram + " generate --hf " + folder + " --only-new -n 6";
  for (const auto& prompt : ref["prompts"]) command += " --prompt '" + prompt.get<std::string>() + "'";
  Result r = run(command);
  ASSERT_EQ(r.code, 0) << r.output;
  for (const auto& text : ref["greedy_text"])
    EXPECT_NE(r.output.find("\n" + text.get<std::string>() + "\n"), std::string::npos)
        << "expected line '" << text.get<std::string>() << "' in:\n" << r.output;
}
