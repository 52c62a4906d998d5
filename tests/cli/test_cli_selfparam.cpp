// The SELF-PARAM commands as a user runs them, on a tiny world and a tiny base LM: engram inject
// (batch on 2 ranks, sequential, and a Hugging Face base written back as a Hugging Face folder),
// generate closed book on the injected model, an injection killed (-9) or stopped (SIGTERM) and
// resumed to the same model, selfparam-eval's three protocols and results, the
// selfparam and ft_s rows of engram eval, and clear errors for bad input.
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "cli_util.h"

using namespace cli;
namespace fs = std::filesystem;

namespace {

class TinySelfParam : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir = ::testing::TempDir() + "cli_selfparam";
    fs::remove_all(dir);
    sets = tiny_world_sets(dir) + " --set selfparam.unrelated_file=" + dir +
           "/data/pretrain.jsonl --set selfparam.out_dir=" + dir + "/sp --set selfparam.epochs=2" +
           " --set selfparam.per_epoch=2 --set selfparam.sample_tokens=12 --set decoding.max_new_tokens=3" +
           " --set eval.out_dir=" + dir + "/eval --set eval.questions=12 --set eval.documents=6";
    ASSERT_EQ(run(kEngram + " synth" + sets).code, 0);
    ASSERT_EQ(run(kEngram + " tokenizer" + sets).code, 0);
    Result r = run(kMpirun + "2 " + kEngram + " pretrain" + sets);
    ASSERT_EQ(r.code, 0) << r.output;
    std::ifstream in(dir + "/data/test.jsonl");
    std::ofstream out(dir + "/docs.jsonl");
    std::string line;
    for (int i = 0; i < 3 && std::getline(in, line); ++i) out << line << "\n";
  }
  static std::string dir, sets;
};
std::string TinySelfParam::dir, TinySelfParam::sets;

nlohmann::json read_json(const std::string& path) { return nlohmann::json::parse(std::ifstream(path)); }

}  // namespace

TEST_F(TinySelfParam, InjectThenGenerateClosedBook) {
  Result r = run(kMpirun + "2 " + kEngram + " inject" + sets + " --documents " + dir + "/docs.jsonl --out " + dir + "/injected");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "injected 3 documents")) << r.output;
  EXPECT_TRUE(fs::exists(dir + "/injected/model.h5"));
  auto report = read_json(dir + "/injected/inject.json");
  EXPECT_EQ(report["extra_parameters"].get<int64_t>(), 0);  // merged
  EXPECT_EQ(report["documents"].get<int64_t>(), 3);
  // Three steps per target, targets split over 2 ranks: 2 epochs of 2 targets per document that got
  // any (this base LM had 2 pretraining steps: it may write none, which the report counts).
  const int64_t with_targets = 3 - report["documents_without_targets"].get<int64_t>();
  EXPECT_EQ(report["optimizer_steps"].get<int64_t>(), 3 * 2 * ((with_targets * 2 + 1) / 2));
  r = run(kEngram + " generate --checkpoint " + dir + "/injected --prompt \"Question: Who? Answer:\" -n 3");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "Question: Who? Answer:")) << r.output;
  // Sequential: one injection per document, each with the current model as teacher.
  r = run(kEngram + " inject" + sets + " --documents " + dir + "/docs.jsonl --out " + dir + "/sequential --mode sequential");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_EQ(read_json(dir + "/sequential/inject.json")["mode"].get<std::string>(), "sequential");
}

TEST_F(TinySelfParam, AKilledOrStoppedInjectionResumesToTheSameModel) {
  // The world's phrasings (no sampling); three documents in turn, 100 rounds each, a checkpoint
  // every 100 rounds: after each document.
  const std::string job = kEngram + " inject" + sets + " --set selfparam.targets=world --set selfparam.epochs=50" +
                          " --set selfparam.save_every=100 --set selfparam.lora.dropout=0.1 --documents " + dir +
                          "/docs.jsonl --mode sequential --out ";
  Result r = run(job + dir + "/whole");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_FALSE(fs::exists(dir + "/whole/checkpoints"));  // removed once the model is written
  // kill -9 during the second document: the checkpoint after the first is what is left.
  r = interrupt(job, dir + "/killed", "step_00000100", "KILL", "0.2");
  EXPECT_NE(r.code, 0) << r.output;
  r = run(job + dir + "/killed");
  ASSERT_EQ(r.code, 0) << r.output;
  auto report = read_json(dir + "/killed/inject.json");
  EXPECT_TRUE(contains(report["resumed_from"].get<std::string>(), "step_00000100.h5")) << report;
  EXPECT_EQ(report["targets_sampled"].get<int64_t>(), read_json(dir + "/whole/inject.json")["targets_sampled"].get<int64_t>());
  EXPECT_EQ(run("h5diff -q " + dir + "/whole/model.h5 " + dir + "/killed/model.h5 /model /model").code, 0);
  // SIGTERM inside the second document: saved there, exit 0, the same command continues it.
  r = interrupt(job, dir + "/stopped", "step_00000100", "TERM", "0.3");
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "stopped by a signal and saved")) << r.output;
  r = run(job + dir + "/stopped");
  ASSERT_EQ(r.code, 0) << r.output;
  report = read_json(dir + "/stopped/inject.json");
  EXPECT_FALSE(report["resumed_from"].get<std::string>().empty());
  EXPECT_FALSE(contains(report["resumed_from"].get<std::string>(), "step_00000100.h5")) << report;  // inside a part
  EXPECT_EQ(run("h5diff -q " + dir + "/whole/model.h5 " + dir + "/stopped/model.h5 /model /model").code, 0);
}

TEST_F(TinySelfParam, AHuggingFaceBaseIsWrittenBackAsHuggingFace) {
  Result r = run(kEngram + " convert --checkpoint " + dir + "/base --to-hf " + dir + "/hf_base");
  ASSERT_EQ(r.code, 0) << r.output;
  r = run(kEngram + " inject" + sets + " --hf " + dir + "/hf_base --tokenizer " + dir + "/tok.model --documents " + dir +
          "/docs.jsonl --out " + dir + "/hf_injected");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(fs::exists(dir + "/hf_injected/config.json"));
  EXPECT_TRUE(fs::exists(dir + "/hf_injected/model.safetensors"));
  EXPECT_EQ(read_json(dir + "/hf_injected/config.json")["model_type"].get<std::string>(), "gpt2");
  r = run(kEngram + " generate --hf " + dir + "/hf_injected --tokenizer " + dir + "/tok.model --prompt \"Question: Who? Answer:\" -n 2");
  EXPECT_EQ(r.code, 0) << r.output;
}

TEST_F(TinySelfParam, EvaluationProtocolsAndTableRows) {
  Result r = run(kMpirun + "2 " + kEngram + " selfparam-eval" + sets +
                 " --set selfparam.single_documents=2 --set selfparam.batch_documents=3 --set selfparam.sequential_documents=2"
                 " --set selfparam.locality_documents=2");
  ASSERT_EQ(r.code, 0) << r.output;
  auto results = read_json(dir + "/sp/results.json");
  for (const char* row : {"SELF-PARAM", "FT(S)", "FT(C)", "closed book", "context in prompt"})
    EXPECT_TRUE(results["single"]["rows"].contains(row)) << row;
  EXPECT_EQ(results["batch"]["documents"].get<int>(), 3);
  EXPECT_TRUE(results["batch"]["locality"].contains("after SELF-PARAM"));
  for (const char* run : {"sequential", "sequential_without_unrelated"}) {
    EXPECT_EQ(results[run]["f1"].size(), 6u) << run;  // i = 0..2 injections x j = 0..1 documents
    EXPECT_TRUE(results[run]["f1"].contains("2-1")) << run;
  }
  r = run(kMpirun + "2 " + kEngram + " eval" + sets + " --methods closed_book,selfparam,ft_s");
  ASSERT_EQ(r.code, 0) << r.output;
  auto table = read_json(dir + "/eval/results.json");
  ASSERT_EQ(table["rows"].size(), 3u);
  EXPECT_EQ(table["rows"][1]["contender"].get<std::string>(), "selfparam");
  EXPECT_EQ(table["rows"][1]["storage_bytes_per_doc"].get<double>(), 0.0);
  EXPECT_TRUE(table["rows"][1].contains("targets_dropped_as_test_questions"));
  EXPECT_TRUE(table["rows"][1].contains("in_context_f1_after"));
  EXPECT_EQ(table["rows"][2]["contender"].get<std::string>(), "ft_s");
  // Both injected models are compared with the same base LM figures.
  EXPECT_EQ(table["rows"][1]["in_context_f1_before"], table["rows"][2]["in_context_f1_before"]);
  EXPECT_EQ(table["rows"][1]["perplexity_before"], table["rows"][2]["perplexity_before"]);
}

TEST_F(TinySelfParam, BadInputIsAClearError) {
  Result r = run(kEngram + " inject" + sets + " --out " + dir + "/x");
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(contains(r.output, "--documents")) << r.output;
  r = run(kEngram + " inject" + sets + " --set selfparam.unrelated_file= --documents " + dir + "/docs.jsonl --out " + dir + "/x");
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(contains(r.output, "selfparam.unrelated_file")) << r.output;
  r = run(kEngram + " inject" + sets + " --set selfparam.unrelated_file=" + dir + "/missing.jsonl --documents " + dir +
          "/docs.jsonl --out " + dir + "/x");
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(contains(r.output, "missing.jsonl")) << r.output;
  r = run(kEngram + " inject" + sets + " --mode sideways --documents " + dir + "/docs.jsonl --out " + dir + "/x");
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(contains(r.output, "--mode")) << r.output;
  r = run(kEngram + " selfparam-eval" + sets + " --experiments single,sequentail");
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(contains(r.output, "sequentail")) << r.output;
  r = run(kEngram + " selfparam-eval" + sets + " --set selfparam.reduction=median");
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(contains(r.output, "selfparam.reduction")) << r.output;
}
