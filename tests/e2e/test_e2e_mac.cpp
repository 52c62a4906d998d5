// MAC's quality bar on the quickstart world, 2 ranks, CPU (issue: MAC end to end), from the
// base LM of the quickstart config to the evaluation table: with a bank of >= 1,000 test
// documents and held-out question paraphrases, MAC F1 >= 0.6, >= 5x closed-book F1 and above
// FT(C); without the gold document F1 falls to within 0.05 of closed book; hierarchical (M=16)
// within 0.05 F1 of flat.
// NOT YET REGISTERED in tests/CMakeLists.txt: the quickstart MAC does not reach the bar yet;
// register it (label e2e) when it does.
#include <filesystem>

#include <nlohmann/json.hpp>

#include "../cli/cli_util.h"

using namespace cli;
namespace fs = std::filesystem;

namespace {

double heldout_f1(const nlohmann::json& results, const std::string& method_prefix) {
  for (const auto& row : results["rows"])
    if (row["method"].get<std::string>().rfind(method_prefix, 0) == 0) return row["scores"]["heldout"]["f1"];
  ADD_FAILURE() << "no row " << method_prefix;
  return -1;
}

}  // namespace

TEST(E2E, MacAnswersFromItsMemoryBank) {
  const std::string dir = ::testing::TempDir() + "e2e_mac";
  fs::remove_all(dir);
  const std::string config = std::string(ENGRAM_SOURCE_DIR) + "/configs/quickstart.yaml";
  const std::string sets = " --config " + config + " --set synth.out_dir=" + dir + "/data --set tokenizer.input=" + dir +
                           "/data/corpus.txt --set tokenizer.model=" + dir + "/tokenizer.model --set pretrain.data=[" +
                           dir + "/data/pretrain.jsonl] --set pretrain.eval_data=" + dir +
                           "/data/valid.jsonl --set pretrain.out_dir=" + dir + "/base --set mac.base=" + dir +
                           "/base --set mac.out_dir=" + dir + "/mac --set mac.train_data=[" + dir +
                           "/data/train.jsonl] --set mac.test_data=" + dir + "/data/test.jsonl --set mac.eval.out_dir=" +
                           dir + "/eval --set mac.eval.documents=1000";
  for (const char* step : {"synth", "tokenizer"}) {
    Result r = run(kEngram + " " + step + sets);
    ASSERT_EQ(r.code, 0) << r.output;
  }
  for (const char* step : {"pretrain", "mac-train", "mac-eval"}) {
    Result r = run(kMpirun + "2 " + kEngram + " " + step + sets);
    ASSERT_EQ(r.code, 0) << r.output;
  }
  auto results = nlohmann::json::parse(std::ifstream(dir + "/eval/results.json"));
  EXPECT_GE(results["documents"].get<int>(), 1000);
  const double closed = heldout_f1(results, "base LM, closed book");
  const double ft = heldout_f1(results, "FT(C)");
  // The headline rows: with a retriever in the config (mac.retriever.top_k) the retrieved-K rows.
  const bool retriever = results["rows"][3]["method"].get<std::string>().rfind("MAC (retriever", 0) == 0;
  const double mac = heldout_f1(results, retriever ? "MAC (retriever top-" : "MAC (hierarchical");
  const double flat = retriever ? results["rows"][4]["scores"]["heldout"]["f1"].get<double>() : heldout_f1(results, "MAC (flat)");
  const double removed = heldout_f1(results, "MAC, gold document removed");
  EXPECT_GE(mac, 0.6);
  EXPECT_GE(mac, 5 * closed);
  EXPECT_GT(mac, ft);
  EXPECT_LE(std::abs(removed - closed), 0.05);
  EXPECT_LE(std::abs(mac - flat), 0.05);
}
