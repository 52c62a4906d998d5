// The base LM's quality bar, on the quickstart world with the quickstart config, 2 ranks, CPU:
// on valid entities (never seen in pretraining) the model reads — F1 >= 0.9 with the context in
// the prompt and the training question templates, >= 0.7 with held-out paraphrases — and does
// not already know: closed-book F1 <= 0.1.
// The whole quickstart pipeline as the README runs it (synth, tokenizer, pretrain), in a scratch
// folder: about 16 minutes on a 2-core machine.
#include <filesystem>

#include <nlohmann/json.hpp>

#include "../cli/cli_util.h"

using namespace cli;
namespace fs = std::filesystem;

TEST(E2E, PretrainedBaseModelReadsButDoesNotKnow) {
  const std::string dir = ::testing::TempDir() + "e2e_pretrain";
  fs::remove_all(dir);
  const std::string config = std::string(ENGRAM_SOURCE_DIR) + "/configs/quickstart.yaml";
  const std::string sets = " --config " + config + " --set synth.out_dir=" + dir + "/data --set tokenizer.input=" + dir +
                           "/data/corpus.txt --set tokenizer.model=" + dir + "/tokenizer.model --set pretrain.data=[" +
                           dir + "/data/pretrain.jsonl] --set pretrain.eval_data=" + dir +
                           "/data/valid.jsonl --set pretrain.out_dir=" + dir + "/base";
  Result r = run(kEngram + " synth" + sets);
  ASSERT_EQ(r.code, 0) << r.output;
  r = run(kEngram + " tokenizer" + sets);
  ASSERT_EQ(r.code, 0) << r.output;
  r = run(kMpirun + "2 " + kEngram + " pretrain" + sets);
  ASSERT_EQ(r.code, 0) << r.output;
  const size_t summary = r.output.find("pretrained ");
  ASSERT_NE(summary, std::string::npos) << r.output;
  std::cout << r.output.substr(summary) << std::flush;  // time, loss and the evaluation table

  auto report = nlohmann::json::parse(std::ifstream(dir + "/base/eval.json"));
  const auto& in_context = report["context_in_prompt"];
  const auto& closed = report["closed_book"];
  EXPECT_GE(in_context["training_templates"]["questions"].get<int>(), 100);
  EXPECT_GE(in_context["heldout"]["questions"].get<int>(), 100);
  EXPECT_GE(in_context["training_templates"]["f1"].get<double>(), 0.9);
  EXPECT_GE(in_context["heldout"]["f1"].get<double>(), 0.7);
  EXPECT_LE(closed["all"]["f1"].get<double>(), 0.1);
}
