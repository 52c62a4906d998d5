// The MAC commands as a user runs them, on a tiny world: mac-train on 2 ranks (resumed on 3,
// with backpropagation dropout and global banks), memorize on 2 ranks and --append on 3 with
// deduplication, a bank refused by another amortizer, answer at 1 and 3 ranks (flat answers
// agree across world sizes), mac-eval's table and results, and the reference presets; a bit-exact
// resume with the retriever's pool and token keys, whose bank then answers alike at 1 and 3 ranks.
#include <algorithm>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "cli_util.h"

using namespace cli;
namespace fs = std::filesystem;

namespace {

class TinyMac : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir = ::testing::TempDir() + "cli_mac";
    fs::remove_all(dir);
    sets = tiny_world_sets(dir) + tiny_mac_sets(dir) + " --set mac.retriever.dim=8" +
           " --set mac.train.log_every=1 --set mac.train.warmup_steps=1" +
           " --set eval.out_dir=" + dir + "/eval --set eval.questions=12 --set decoding.max_new_tokens=3";
    ASSERT_EQ(run(kEngram + " synth" + sets).code, 0);
    ASSERT_EQ(run(kEngram + " tokenizer" + sets).code, 0);
    Result r = run(kMpirun + "2 " + kEngram + " pretrain" + sets);
    ASSERT_EQ(r.code, 0) << r.output;
  }
  static std::string dir, sets;
};
std::string TinyMac::dir, TinyMac::sets;

std::vector<nlohmann::json> json_lines(const std::string& path) {
  std::vector<nlohmann::json> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
  return out;
}

std::string questions_file(const std::string& dir, int documents) {
  // The first documents of the test stream, as a user's own file.
  std::ifstream in(dir + "/data/test.jsonl");
  std::ofstream out(dir + "/questions.jsonl");
  std::string line;
  for (int i = 0; i < documents && std::getline(in, line); ++i) out << line << "\n";
  return dir + "/questions.jsonl";
}

}  // namespace

TEST_F(TinyMac, TrainMemorizeAppendAnswerAndEvaluate) {
  // Meta-training on 2 ranks, then resumed on 3 with backprop dropout, global banks, the
  // aggregator's selection loss and a pool of summaries with hard distractors for the retriever.
  Result r = run(kMpirun + "2 " + kEngram + " mac-train" + sets + " --set mac.train.steps=3 --set mac.retriever.from_step=2");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "meta-trained 3 steps")) << r.output;
  EXPECT_TRUE(fs::exists(dir + "/mac/mac.h5"));
  r = run(kMpirun + "3 " + kEngram + " mac-train" + sets +
          " --set mac.train.steps=5 --set mac.backprop_ratio=0.5 --set mac.global_bank=true --set mac.selection_weight=0.5" +
          " --set mac.retriever.pool=8 --set mac.retriever.hard_negatives=2 --set mac.retriever.weight=0.5");
  ASSERT_EQ(r.code, 0) << r.output;
  // Every logged step has the QA loss, the final block's share of attention on the gold
  // document and the retriever's loss and accuracy.
  const auto metrics = json_lines(dir + "/mac/metrics.jsonl");
  ASSERT_EQ(metrics.size(), 5u);
  for (const auto& line : metrics) {
    const double share = line["gold_attention"].get<double>();
    EXPECT_GT(share, 0.0) << line;
    EXPECT_LE(share, 1.0 + 1e-6) << line;
    const double top1 = line["retriever_top1"].get<double>();
    EXPECT_GE(top1, 0.0) << line;
    EXPECT_LE(top1, 1.0) << line;
    // The retriever's weight: early_weight 0.1 for steps 1-2, 1 from step 3 (from_step 2 counts
    // finished steps), 0.5 on the resumed run.
    const int step = line["step"].get<int>();
    const bool resumed = step > 3;
    const double retriever = (resumed ? 0.5 : step <= 2 ? 0.1 : 1.0) * line["retriever_loss"].get<double>();
    EXPECT_GT(retriever, 0.0) << line;
    // The rest is the selection loss at weight 0.5 on the resumed run (its accuracy is a share).
    const double rest = line["loss"].get<double>() - line["qa_loss"].get<double>() - retriever;
    if (!resumed) {
      EXPECT_NEAR(rest, 0.0, 1e-5) << line;
      EXPECT_FALSE(line.contains("selection_loss")) << line;
    } else {
      EXPECT_GT(line["selection_loss"].get<double>(), 0.1) << line;
      EXPECT_NEAR(rest, 0.5 * line["selection_loss"].get<double>(), 1e-4) << line;
      EXPECT_GE(line["selection_top1"].get<double>(), 0.0) << line;
      EXPECT_LE(line["selection_top1"].get<double>(), 1.0) << line;
    }
  }
  EXPECT_TRUE(contains(r.output, "(saved by 2 ranks) on 3 ranks at step 3")) << r.output;
  EXPECT_TRUE(contains(r.output, "banks of 4 documents per rank (2 with gradient), 12 per question")) << r.output;
  EXPECT_TRUE(contains(r.output, "meta-trained 5 steps")) << r.output;

  // A bank of the first 30 test documents on 2 ranks; then 10 more plus 10 repeats on 3 ranks.
  const std::string first = dir + "/first.jsonl", more = dir + "/more.jsonl";
  {
    std::ifstream in(dir + "/data/test.jsonl");
    std::ofstream a(first), b(more);
    std::string line;
    for (int i = 0; i < 40 && std::getline(in, line); ++i) {
      if (i < 30) a << line << "\n";
      if (i >= 20) b << line << "\n";
    }
  }
  const std::string bank = dir + "/bank.h5";
  r = run(kMpirun + "2 " + kEngram + " mac-memorize" + sets + " --documents " + first + " --bank " + bank);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "30 documents offered, 30 new (0 already stored or repeated); 30 rows now"))
      << r.output;
  r = run(kMpirun + "3 " + kEngram + " mac-memorize" + sets + " --documents " + more + " --bank " + bank + " --append");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "20 documents offered, 10 new (10 already stored or repeated); 40 rows now"))
      << r.output;

  // Answers: flat aggregation gives the same predictions on 1 and 3 ranks.
  const std::string questions = questions_file(dir, 6);
  r = run(kMpirun + "1 " + kEngram + " mac-answer" + sets + " --set mac.aggregation=flat --bank " + bank +
          " --questions " + questions + " --out " + dir + "/a1.jsonl");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "against 40 documents (flat, 1 ranks)")) << r.output;
  r = run(kMpirun + "3 " + kEngram + " mac-answer" + sets + " --set mac.aggregation=flat --bank " + bank +
          " --questions " + questions + " --out " + dir + "/a3.jsonl");
  ASSERT_EQ(r.code, 0) << r.output;
  auto one = json_lines(dir + "/a1.jsonl"), three = json_lines(dir + "/a3.jsonl");
  ASSERT_EQ(one.size(), three.size());
  ASSERT_GT(one.size(), 0u);
  for (size_t i = 0; i < one.size(); ++i) EXPECT_EQ(one[i]["prediction"], three[i]["prediction"]) << i;
  r = run(kMpirun + "2 " + kEngram + " mac-answer" + sets + " --set mac.group_size=4 --bank " + bank + " --questions " +
          questions + " --out " + dir + "/h.jsonl");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "hierarchical M=4, 2 ranks")) << r.output;
  // Answers from the retriever's best 3 documents: the same on 1 and 3 ranks.
  for (int np : {1, 3}) {
    r = run(kMpirun + std::to_string(np) + " " + kEngram + " mac-answer" + sets + " --set mac.retriever.top_k=3 --bank " +
            bank + " --questions " + questions + " --out " + dir + "/r" + std::to_string(np) + ".jsonl");
    ASSERT_EQ(r.code, 0) << r.output;
    EXPECT_TRUE(contains(r.output, "(retriever top-3, hierarchical M=16, " + std::to_string(np) + " ranks)")) << r.output;
  }
  auto r1 = json_lines(dir + "/r1.jsonl"), r3 = json_lines(dir + "/r3.jsonl");
  ASSERT_EQ(r1.size(), one.size());
  for (size_t i = 0; i < r1.size(); ++i) EXPECT_EQ(r1[i]["prediction"], r3[i]["prediction"]) << i;

  // A different amortizer (another seed) refuses the bank.
  r = run(kMpirun + "1 " + kEngram + " mac-train" + sets + " --set run.seed=7 --set mac.out_dir=" + dir +
          "/mac7 --set mac.train.steps=1");
  ASSERT_EQ(r.code, 0) << r.output;
  r = run(kMpirun + "1 " + kEngram + " mac-answer" + sets + " --set mac.out_dir=" + dir + "/mac7 --bank " + bank +
          " --questions " + questions);
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "rebuild it with engram mac-memorize")) << r.output;

  // The evaluation table and its JSON.
  r = run(kMpirun + "2 " + kEngram + " mac-eval" + sets + " --set eval.documents=20 --set eval.curve_sizes=[1,16]" +
          " --set eval.retention_points=2 --set mac.hierarchy_carries=summary --set mac.group_size=4" +
          " --set mac.retriever.top_k=2");
  ASSERT_EQ(r.code, 0) << r.output;
  for (const char* row : {"| base LM, closed book |", "| context in prompt |", "| FT(C) uniform fine-tuning |",
                          "| MAC (hierarchical, M=4) |", "| MAC (flat) |", "| MAC + retrieval (top 2) |",
                          "| MAC + retrieval (top 1) |", "| MAC, gold document only |",
                          "| MAC, gold document removed |"})
    EXPECT_TRUE(contains(r.output, row)) << row << "\n" << r.output;
  auto results = nlohmann::json::parse(std::ifstream(dir + "/eval/results.json"));
  EXPECT_EQ(results["documents"], 20);
  EXPECT_EQ(results["rows"].size(), 9u);
  // Curves for MAC (the bank's first n documents) and FT(C) (the model after n documents).
  for (const char* key : {"mac", "ft"}) {
    const auto& curves = results["curves"][key];
    ASSERT_EQ(curves["f1_vs_documents"].size(), 2u) << key;
    EXPECT_EQ(curves["f1_vs_documents"][1]["documents"], 16) << key;
    ASSERT_EQ(curves["retention"].size(), 2u) << key;
    EXPECT_EQ(curves["retention"][1]["documents_seen"], 20) << key;
    EXPECT_EQ(curves["retention_first_documents"], 2) << key;
  }
  EXPECT_FALSE(results["curves"].contains("closed_book"));
  EXPECT_EQ(results["rows"][0]["contender"], "closed_book");
  EXPECT_EQ(results["rows"][8]["contender"], "mac");
  // One name per metric: MAC's prefix exact match is not called exact match.
  const auto& scores = results["rows"][3]["scores"]["all"];
  for (const char* metric : {"exact_match", "prefix_exact_match", "f1", "substring_accuracy", "questions"})
    EXPECT_TRUE(scores.contains(metric)) << metric;
  EXPECT_FALSE(scores.contains("em"));
  EXPECT_GE(scores["prefix_exact_match"].get<double>(), scores["exact_match"].get<double>());
  EXPECT_TRUE(fs::exists(dir + "/eval/table.csv"));
  EXPECT_TRUE(fs::exists(dir + "/eval/curves.csv"));
  EXPECT_GT(results["rows"][3]["storage_bytes_per_doc"].get<double>(), 2 * 32 * 4 - 1);  // T x d floats at least
  // Retriever rows report how often the gold document was retrieved (and first); flat
  // aggregation over the whole bank reports the attention share on it; hierarchical neither.
  for (int row : {5, 6}) {
    const double retrieved = results["rows"][row]["gold_retrieved"].get<double>();
    const double first = results["rows"][row]["gold_top1"].get<double>();
    EXPECT_GE(first, 0.0);
    EXPECT_GE(retrieved, first);
    EXPECT_LE(retrieved, 1.0);
  }
  EXPECT_FALSE(results["rows"][3].contains("gold_attention"));
  EXPECT_FALSE(results["rows"][3].contains("gold_retrieved"));
  EXPECT_GT(results["rows"][4]["gold_attention"].get<double>(), 0.0);
  EXPECT_LE(results["rows"][4]["gold_attention"].get<double>(), 1.0 + 1e-6);
  const double top1 = results["rows"][4]["gold_top1"].get<double>();
  EXPECT_GE(top1, 0.0);
  EXPECT_LE(top1, 1.0);
}

TEST(MacPresets, ReferenceConfigsParse) {
  for (const char* name : {"distilgpt2", "gpt2-large", "gpt2-xl", "llama2-7b"}) {
    Result r = run(kEngram + " mac-train --config " + std::string(ENGRAM_SOURCE_DIR) + "/configs/mac/" + name +
                   ".yaml --dump-config");
    ASSERT_EQ(r.code, 0) << name << "\n" << r.output;
    EXPECT_TRUE(contains(r.output, "backprop_ratio")) << r.output;
  }
}

TEST(MacErrors, MissingModelOrBankAreClearErrors) {
  Result r = run(kEngram + " mac-answer --set mac.out_dir=/nonexistent --bank /nonexistent/b.h5 --questions x.jsonl");
  EXPECT_EQ(r.code, 2) << r.output;
  r = run(kEngram + " mac-memorize");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "give the bank file with --bank FILE")) << r.output;
}

TEST_F(TinyMac, ResumeWithARetrieverPoolContinuesBitExactly) {
  // 4 steps on 2 ranks with the pool (summarised again every step) and hard distractors from
  // step 1, context distillation, and a checkpoint every 2 steps; then the step-4 checkpoint is
  // dropped and the run resumed from step 2. Steps 3-4 use the pool filled in steps 1-2, so they
  // repeat exactly only if each rank's pool was restored.
  const std::string out = dir + "/mac_pool";
  const std::string pool_sets = sets + " --set mac.out_dir=" + out + " --set mac.train.steps=4" +
                                " --set mac.train.save_every=2 --set mac.retriever.from_step=1" +
                                " --set mac.retriever.pool=8 --set mac.retriever.hard_negatives=2" +
                                " --set mac.distill_weight=0.5 --set mac.doc_tokens=400" +  // documents whole for the teacher
                                " --set mac.retriever.keys=tokens --set mac.retriever.token_negatives=6" +
                                " --set mac.eval_every=2 --set mac.val_bank=5 --set mac.val_questions=7";
  Result r = run(kMpirun + "2 " + kEngram + " mac-train" + pool_sets);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "5 documents held out for validation")) << r.output;
  for (const char* step : {"validation at step 2: F1 ", "validation at step 4: F1 "})
    EXPECT_TRUE(contains(r.output, std::string(step))) << step << "\n" << r.output;
  EXPECT_TRUE(contains(r.output, "over 7 questions of 5 held-out documents")) << r.output;
  ASSERT_TRUE(fs::exists(out + "/best.h5"));
  ASSERT_TRUE(fs::remove(out + "/checkpoints/step_00000004.done"));
  r = run(kMpirun + "2 " + kEngram + " mac-train" + pool_sets);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "at step 2")) << r.output;
  // metrics.jsonl: steps 1-4 of the first run, then 3-4 again.
  const auto metrics = json_lines(out + "/metrics.jsonl");
  ASSERT_EQ(metrics.size(), 6u);
  EXPECT_TRUE(contains(r.output, "context distillation for")) << r.output;
  EXPECT_FALSE(contains(r.output, "context distillation for 0 of")) << r.output;
  for (const auto& line : metrics) {  // the loss: QA + w x retriever (w 0.1 at step 1, then 1) + 0.5 x distillation
                                      // + the token keys' loss
    EXPECT_GT(line["distill_loss"].get<double>(), 0.0) << line;
    EXPECT_GT(line["token_retriever_loss"].get<double>(), 0.0) << line;
    const double w = line["step"].get<int>() == 1 ? 0.1 : 1.0;
    EXPECT_NEAR(line["loss"].get<double>(), line["qa_loss"].get<double>() + w * line["retriever_loss"].get<double>() +
                                                0.5 * line["distill_loss"].get<double>() +
                                                line["token_retriever_loss"].get<double>(), 1e-4) << line;
  }
  for (int i : {2, 3}) {
    const auto& first = metrics[static_cast<size_t>(i)];
    const auto& again = metrics[static_cast<size_t>(i + 2)];
    ASSERT_EQ(first["step"], again["step"]);
    for (const char* key : {"loss", "qa_loss", "retriever_loss", "retriever_top1", "distill_loss", "grad_norm",
                            "token_retriever_loss", "token_retriever_top1"})
      EXPECT_EQ(first[key].get<double>(), again[key].get<double>()) << key << " at step " << first["step"];
  }

  // Validation at steps 2 and 4, and at 4 again after the resume; best.json holds the best of
  // them, which the resume kept.
  const auto validations = json_lines(out + "/validation.jsonl");
  ASSERT_EQ(validations.size(), 3u);
  double best_f1 = -1;
  for (size_t i = 0; i < validations.size(); ++i) {
    EXPECT_EQ(validations[i]["step"].get<int>(), i == 0 ? 2 : 4);
    best_f1 = std::max(best_f1, validations[i]["f1"].get<double>());
  }
  EXPECT_EQ(validations[2]["f1"].get<double>(), validations[1]["f1"].get<double>());  // the same step 4
  EXPECT_FALSE(validations[2]["best"].get<bool>());  // it did not beat itself
  const auto best = nlohmann::json::parse(std::ifstream(out + "/best.json"));
  EXPECT_EQ(best["f1"].get<double>(), best_f1);

  // Its bank stores the token keys (written on 2 ranks, appended on 3), and answering from the
  // best document by those keys gives the same answers on 1 and 3 ranks.
  const std::string bank = out + "/bank.h5", model = " --set mac.out_dir=" + out;
  const std::string questions = questions_file(dir, 6);
  r = run(kMpirun + "2 " + kEngram + " mac-memorize" + sets + model + " --documents " + questions + " --bank " + bank);
  ASSERT_EQ(r.code, 0) << r.output;
  r = run(kMpirun + "3 " + kEngram + " mac-memorize" + sets + model + " --documents " + dir + "/data/test.jsonl --bank " +
          bank + " --append");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "(6 already stored or repeated)")) << r.output;
  for (int np : {1, 3}) {
    r = run(kMpirun + std::to_string(np) + " " + kEngram + " mac-answer" + sets + model + " --set mac.retriever.top_k=1" +
            " --bank " + bank + " --questions " + questions + " --out " + out + "/k" + std::to_string(np) + ".jsonl");
    ASSERT_EQ(r.code, 0) << r.output;
  }
  auto k1 = json_lines(out + "/k1.jsonl"), k3 = json_lines(out + "/k3.jsonl");
  ASSERT_EQ(k1.size(), k3.size());
  ASSERT_GT(k1.size(), 0u);
  for (size_t i = 0; i < k1.size(); ++i) EXPECT_EQ(k1[i]["prediction"], k3[i]["prediction"]) << i;
}
