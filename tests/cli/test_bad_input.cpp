// The bad-input suite: each kind of bad input a user can hand engram, given to the real binary.
// Every one must end with exit code 2 and a message that names the place (file, line, key or
// tensor) and the cause; none may crash, hang, or be accepted. One case per kind; `@` in a
// command or a needle stands for the case's own folder.
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cli_util.h"

using namespace cli;
namespace fs = std::filesystem;

namespace {

const std::string kFixtures = ENGRAM_FIXTURES;

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

std::string replace_all(std::string text, const std::string& from, const std::string& to) {
  for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size()))
    text.replace(at, from.size(), to);
  return text;
}

// The tiny world every case can use: a corpus, a tokenizer, a base LM, a trained MAC and its
// bank, under one folder made once for the suite.
class World {
 public:
  static World& get() {
    static World world;
    return world;
  }
  std::string dir, sets;
  bool ready = false;

  // "<command> <its own settings>" with the world's settings put between: the command's win.
  std::string with_sets(const std::string& line) const {
    const size_t space = std::min(line.find(' ', 1), line.size());
    return line.substr(0, space) + sets + line.substr(space);
  }

 private:
  World() {
    dir = ::testing::TempDir() + "bad_input_world";
    fs::remove_all(dir);
    sets = tiny_world_sets(dir) + tiny_mac_sets(dir) +
           " --set mac.train.steps=1 --set eval.questions=4 --set decoding.max_new_tokens=2";
    const std::vector<std::string> steps = {
        " synth", " tokenizer", " pretrain", " mac-train",
        " mac-train --set run.seed=7 --set mac.out_dir=" + dir + "/mac7",  // another amortizer
        " mac-memorize --documents " + dir + "/data/valid.jsonl --bank " + dir + "/bank.h5"};
    for (const std::string& step : steps) {
      Result r = run(kEngram + with_sets(step));
      if (r.code != 0) {
        ADD_FAILURE() << "world step" << step << " failed:\n" << r.output;
        return;
      }
    }
    ready = true;
  }
};

struct BadInput {
  std::string name;
  // Writes the case's files into its folder and returns the command line after `engram `.
  std::function<std::string(const std::string& dir)> command;
  std::vector<std::string> needles;  // the message must contain each (`@`: the case's folder)
};

// A config file with `yaml`, given to `command`.
BadInput config_case(std::string name, std::string yaml, std::vector<std::string> needles,
                     std::string command = "pretrain --dump-config") {
  return {std::move(name),
          [yaml, command](const std::string& dir) {
            write_bytes(dir + "/c.yaml", yaml);
            return command + " -c " + dir + "/c.yaml";
          },
          std::move(needles)};
}

// `engram data stats` on a file named `name` holding `text`.
BadInput data_case(std::string name, std::string file, std::string text, std::vector<std::string> needles) {
  return {std::move(name),
          [file, text](const std::string& dir) {
            write_bytes(dir + "/" + file, text);
            return "data stats --input " + dir + "/" + file;
          },
          std::move(needles)};
}

// A copy of the GPT-2 fixture folder, changed by `damage`, converted with `engram convert`.
BadInput hf_case(std::string name, std::function<void(const std::string& folder)> damage,
                 std::vector<std::string> needles) {
  return {std::move(name),
          [damage](const std::string& dir) {
            fs::copy(kFixtures + "/hf/gpt2", dir + "/gpt2", fs::copy_options::recursive);
            damage(dir + "/gpt2");
            return "convert --hf " + dir + "/gpt2 --out " + dir + "/model.h5";
          },
          std::move(needles)};
}

// The fixture's model.safetensors with its JSON header edited by `edit` (the data left as is).
std::function<void(const std::string&)> edit_safetensors_header(std::function<void(nlohmann::json&)> edit) {
  return [edit](const std::string& folder) {
    const std::string path = folder + "/model.safetensors";
    const std::string bytes = read_bytes(path);
    uint64_t length = 0;
    std::memcpy(&length, bytes.data(), 8);
    nlohmann::json header = nlohmann::json::parse(bytes.substr(8, length));
    edit(header);
    std::string text = header.dump();
    text.resize(length, ' ');  // the same length keeps the data where it was
    write_bytes(path, bytes.substr(0, 8) + text + bytes.substr(8 + length));
  };
}

std::function<void(const std::string&)> edit_config_json(const std::string& from, const std::string& to) {
  return [from, to](const std::string& folder) {
    const std::string path = folder + "/config.json";
    write_bytes(path, replace_all(read_bytes(path), from, to));
  };
}

// A command on the world: `command` writes what it needs and returns the command line; the
// world's settings follow it.
BadInput world_case(std::string name, std::function<std::string(const std::string& dir)> command,
                    std::vector<std::string> needles) {
  return {std::move(name), [command](const std::string& dir) { return World::get().with_sets(command(dir)); },
          std::move(needles)};
}

// Cuts `path` to `fraction` of its size, as a full disk or a broken copy leaves it.
void truncate(const std::string& path, double fraction) {
  fs::resize_file(path, static_cast<uintmax_t>(static_cast<double>(fs::file_size(path)) * fraction));
}

std::string truncated_copy(const std::string& from, const std::string& to, double fraction) {
  fs::copy_file(from, to, fs::copy_options::overwrite_existing);
  truncate(to, fraction);
  return to;
}

std::vector<BadInput> config_cases() {
  return {
      config_case("MalformedYaml", "train:\n  steps: [1, 2\n", {"@/c.yaml:3", "YAML syntax error"}),
      config_case("UnknownKey", "train:\n  stepz: 3\n", {"@/c.yaml:2", "unknown key 'train.stepz'", "train.steps"}),
      config_case("WrongType", "train:\n  steps: many\n", {"@/c.yaml:2", "train.steps", "integer"}),
      config_case("BetaOutOfRange", "train:\n  beta1: 1.5\n", {"@/c.yaml:2", "train.beta1", "in [0, 1)"}),
      config_case("NegativeClipping", "train:\n  clip_norm: -1\n", {"@/c.yaml:2", "train.clip_norm", ">= 0"}),
      config_case("ZeroSequenceLength", "pretrain:\n  seq_len: 0\n", {"@/c.yaml:2", "pretrain.seq_len", ">= 8"}),
      config_case("ZeroDocumentTokens", "mac:\n  doc_tokens: 0\n", {"@/c.yaml:2", "mac.doc_tokens", ">= 1"}),
      config_case("NanLearningRate", "train:\n  lr: .nan\n", {"@/c.yaml:2", "train.lr"}),
      config_case("InfiniteTimeout", "dist:\n  timeout_s: .inf\n", {"@/c.yaml:2", "dist.timeout_s"}),
      config_case("DuplicateKey", "train:\n  lr: 0.1\n  lr: 0.2\n", {"@/c.yaml:3", "'train.lr' is set twice", "@/c.yaml:2"}),
      config_case("BadChoice", "model:\n  preset: gpt5\n", {"@/c.yaml:2", "model.preset", "gpt2"}),
      config_case("ListAtTopLevel", "- train\n- steps\n", {"@/c.yaml", "map"}),
      {"NegativeWarmupOnCommandLine", [](const std::string&) { return "pretrain --dump-config --set train.warmup_steps=-1"; },
       {"--set train.warmup_steps=-1", ">= 0"}},
      {"SetWithoutValue", [](const std::string&) { return "pretrain --dump-config --set train.steps"; },
       {"--set 'train.steps'", "expected key=value"}},
      {"MissingConfigFile", [](const std::string& dir) { return "pretrain --dump-config -c " + dir + "/nope.yaml"; },
       {"@/nope.yaml", "cannot open"}},
      {"ConfigIsADirectory", [](const std::string& dir) { return "pretrain --dump-config -c " + dir; },
       {"@", "Is a directory"}},
  };
}

std::vector<BadInput> data_cases() {
  const std::string row = R"({"id": "a", "text": "Ann lives in Oslo.", "qa": [{"question": "Where?", "answers": ["Oslo"]}]})";
  return {
      data_case("JsonlMalformed", "bad.jsonl", row + "\n{\"id\": \"b\", \"text\": \n", {"@/bad.jsonl:2", "JSON"}),
      data_case("JsonlMissingText", "bad.jsonl", "{\"id\": \"a\"}\n", {"@/bad.jsonl:1", "text"}),
      data_case("JsonlNumberOverflow", "bad.jsonl", "{\"id\": \"a\", \"text\": \"x\", \"time\": 1e400}\n",
                {"@/bad.jsonl", "JSON"}),
      data_case("JsonlEmptyDocument", "bad.jsonl", "{\"id\": \"a\", \"text\": \"\"}\n", {"@/bad.jsonl:1", "empty"}),
      data_case("TenMegabyteDocument", "big.jsonl",
                "{\"id\": \"a\", \"text\": \"" + std::string(10 << 20, 'x') + "\"}\n", {"@/big.jsonl:1", "MB"}),
      data_case("CsvWrongFieldCount", "bad.csv", "text,question,answers\nt,q,a\nt,q\n", {"@/bad.csv:3", "fields"}),
      data_case("CsvUnterminatedQuote", "bad.csv", "text,question,answers\n\"t,q,a\n", {"@/bad.csv", "quote"}),
      data_case("CsvUnparseableDate", "bad.csv", "text,question,answers,publication_date\nt,q,a,last week\n",
                {"@/bad.csv:2", "'last week' is not a time"}),
      data_case("SquadNotAnObject", "bad.json", "[1, 2]\n", {"@/bad.json", "not a SQuAD v1.1 file"}),
      data_case("UnknownFileType", "notes.txt", "hello\n", {"@/notes.txt", "unknown data file type"}),
      {"DataIsADirectory", [](const std::string& dir) {
         fs::create_directories(dir + "/d.jsonl");
         return "data stats --input " + dir + "/d.jsonl";
       },
       {"@/d.jsonl", "directory"}},
      {"DataFileMissing", [](const std::string& dir) { return "data stats --input " + dir + "/none.jsonl"; },
       {"@/none.jsonl", "No such file"}},
      world_case("EmptyPretrainingData", [](const std::string& dir) {
        write_bytes(dir + "/empty.jsonl", "");
        return "pretrain --set pretrain.out_dir=" + dir + "/base --set pretrain.data=[" + dir + "/empty.jsonl]";
      }, {"pretrain.data", "no documents", "@/empty.jsonl"}),
      world_case("EmptyTestStream", [](const std::string& dir) {
        write_bytes(dir + "/empty.jsonl", "");
        return "eval --set eval.methods=[closed_book] --set eval.out_dir=" + dir + "/eval --set stream.test=" + dir +
               "/empty.jsonl";
      }, {"@/empty.jsonl", "no documents"}),
  };
}

std::vector<BadInput> weight_cases() {
  return {
      hf_case("SafetensorsTruncated",
              [](const std::string& f) { truncate(f + "/model.safetensors", 0.5); },
              {"@/gpt2/model.safetensors"}),
      hf_case("SafetensorsHeaderPastTheEnd",
              [](const std::string& f) {
                std::string bytes = read_bytes(f + "/model.safetensors");
                const uint64_t huge = uint64_t(1) << 40;
                std::memcpy(bytes.data(), &huge, 8);
                write_bytes(f + "/model.safetensors", bytes);
              },
              {"@/gpt2/model.safetensors", "header"}),
      hf_case("SafetensorsOffsetsPastTheEnd", edit_safetensors_header([](nlohmann::json& h) {
                h["transformer.wte.weight"]["data_offsets"][1] = 1 << 30;
              }),
              {"@/gpt2/model.safetensors", "transformer.wte.weight"}),
      hf_case("SafetensorsShapeDisagreesWithBytes", edit_safetensors_header([](nlohmann::json& h) {
                h["transformer.ln_f.weight"]["shape"] = {31};
              }),
              {"@/gpt2/model.safetensors", "transformer.ln_f.weight"}),
      hf_case("SafetensorsUnknownDtype", edit_safetensors_header([](nlohmann::json& h) {
                h["transformer.ln_f.weight"]["dtype"] = "Q7";
              }),
              {"@/gpt2/model.safetensors", "Q7"}),
      hf_case("SafetensorsHeaderNotJson",
              [](const std::string& f) {
                std::string bytes = read_bytes(f + "/model.safetensors");
                bytes[8] = '#';
                write_bytes(f + "/model.safetensors", bytes);
              },
              {"@/gpt2/model.safetensors", "invalid safetensors header"}),
      hf_case("HfConfigLiesAboutLayers", edit_config_json("\"n_layer\": 2", "\"n_layer\": 2000000"),
              {"@/gpt2/config.json", "2000000 layers", "do not describe these weights"}),
      hf_case("HfConfigLiesAboutVocabulary", edit_config_json("\"vocab_size\": 400", "\"vocab_size\": 4000000000000"),
              {"@/gpt2/config.json", "vocab 4000000000000", "do not describe these weights"}),
      hf_case("HfConfigNumberOverflow", edit_config_json("\"n_layer\": 2", "\"n_layer\": 1e400"),
              {"@/gpt2/config.json", "JSON"}),
      hf_case("HfConfigUnsupportedType", edit_config_json("\"model_type\": \"gpt2\"", "\"model_type\": \"bert\""),
              {"@/gpt2/config.json", "bert", "not supported"}),
      hf_case("HfConfigMissing", [](const std::string& f) { fs::remove(f + "/config.json"); },
              {"@/gpt2/config.json"}),
  };
}

std::vector<BadInput> tokenizer_cases() {
  auto gpt2_copy = [](const std::string& dir) {
    fs::copy(kFixtures + "/gpt2_tiny", dir + "/tok", fs::copy_options::recursive);
    return dir + "/tok";
  };
  auto pretrain_with = [](const std::string& dir, const std::string& tokenizer) {
    return "pretrain --set pretrain.out_dir=" + dir + "/base --set tokenizer.model=" + tokenizer;
  };
  return {
      world_case("SentencePieceModelThatIsText", [=](const std::string& dir) {
        write_bytes(dir + "/tok.model", "this is not a tokenizer\n");
        return pretrain_with(dir, dir + "/tok.model");
      }, {"@/tok.model", "SentencePiece"}),
      world_case("TokenizerMissing", [=](const std::string& dir) { return pretrain_with(dir, dir + "/none.model"); },
                 {"@/none.model", "does not exist"}),
      world_case("VocabJsonNotJson", [=](const std::string& dir) {
        write_bytes(gpt2_copy(dir) + "/vocab.json", "{\"a\": 1,");
        return pretrain_with(dir, dir + "/tok");
      }, {"@/tok/vocab.json", "malformed JSON"}),
      world_case("VocabJsonHugeId", [=](const std::string& dir) {
        const std::string vocab = gpt2_copy(dir) + "/vocab.json";
        write_bytes(vocab, replace_all(read_bytes(vocab), "\"<|endoftext|>\": ", "\"<|endoftext|>\": 2000000000, \"x\": "));
        return pretrain_with(dir, dir + "/tok");
      }, {"@/tok/vocab.json", "2000000000", "expected an integer in [0,"}),
      world_case("MergesWithUnknownToken", [=](const std::string& dir) {
        std::ofstream(gpt2_copy(dir) + "/merges.txt", std::ios::app) << "zzzq yyyq\n";
        return pretrain_with(dir, dir + "/tok");
      }, {"@/tok/merges.txt", "not in vocab.json"}),
      world_case("Gpt2FolderWithoutMerges", [=](const std::string& dir) {
        fs::remove(gpt2_copy(dir) + "/merges.txt");
        return pretrain_with(dir, dir + "/tok");
      }, {"@/tok/merges.txt", "missing"}),
  };
}

// The world's folder; read when a case runs, so that listing the cases builds nothing.
std::string world_dir() { return World::get().dir; }

std::vector<BadInput> state_cases() {
  return {
      world_case("ModelFileTruncated", [](const std::string& dir) {
        return "generate --checkpoint " + truncated_copy(world_dir() + "/base/model.h5", dir + "/model.h5", 0.5) + " --prompt x";
      }, {"@/model.h5", "damaged or truncated HDF5 file", "truncated file"}),
      world_case("ModelFileThatIsText", [](const std::string& dir) {
        write_bytes(dir + "/model.h5", "not a model\n");
        return "generate --checkpoint " + dir + "/model.h5 --prompt x";
      }, {"@/model.h5", "not an HDF5 file"}),
      world_case("BankTruncated", [](const std::string& dir) {
        return "mac-answer --questions " + world_dir() + "/data/valid.jsonl --bank " +
               truncated_copy(world_dir() + "/bank.h5", dir + "/bank.h5", 0.6);
      }, {"@/bank.h5", "damaged or truncated HDF5 file"}),
      world_case("BankOfAnotherModel", [](const std::string&) {
        return "mac-answer --questions " + world_dir() + "/data/valid.jsonl --bank " + world_dir() + "/bank.h5 --set mac.out_dir=" +
               world_dir() + "/mac7";
      }, {"bank.h5", "rebuild it with engram mac-memorize"}),
      world_case("CheckpointOfAnotherConfig", [](const std::string& dir) {
        fs::create_directories(dir + "/base");
        fs::copy(world_dir() + "/base/checkpoints", dir + "/base/checkpoints", fs::copy_options::recursive);
        return "pretrain --set pretrain.out_dir=" + dir + "/base --set train.steps=4 --set model.d_ff=48";
      }, {"@/base/checkpoints/step_00000002.h5", "mlp"}),
      world_case("EveryCheckpointDamaged", [](const std::string& dir) {
        fs::create_directories(dir + "/base");
        fs::copy(world_dir() + "/base/checkpoints", dir + "/base/checkpoints", fs::copy_options::recursive);
        write_bytes(dir + "/base/checkpoints/step_00000002.h5", "gone");
        return "pretrain --set pretrain.out_dir=" + dir + "/base --set train.steps=4";
      }, {"@/base/checkpoints", "no committed checkpoint loads", "step_00000002.h5"}),
      {"LocalBackendOnTwoRanks", [](const std::string&) {
         return "doctor --set dist.backend=local";  // run by the test under 2 ranks (name ends in TwoRanks)
       },
       {"dist.backend", "local runs a single process", "2 ranks"}},
  };
}

std::vector<BadInput> all_cases() {
  std::vector<BadInput> all;
  for (auto part : {config_cases(), data_cases(), weight_cases(), tokenizer_cases(), state_cases()})
    all.insert(all.end(), part.begin(), part.end());
  return all;
}

void PrintTo(const BadInput& c, std::ostream* out) { *out << c.name; }

class BadInputs : public ::testing::TestWithParam<BadInput> {};

TEST_P(BadInputs, ExitTwoNamingThePlaceAndTheCause) {
  ASSERT_TRUE(World::get().ready);
  const BadInput& c = GetParam();
  const std::string dir = ::testing::TempDir() + "bad_input/" + c.name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  const bool two_ranks = c.name.size() > 8 && c.name.compare(c.name.size() - 8, 8, "TwoRanks") == 0;
  const std::string launcher = two_ranks ? kMpirun + "2 " : "";
  const Result r = run("timeout 120 " + launcher + kEngram + " " + c.command(dir));
  EXPECT_EQ(r.code, 2) << r.output;
  for (const std::string& needle : c.needles)
    EXPECT_TRUE(contains(r.output, replace_all(needle, "@", dir))) << "missing '" << needle << "' in:\n" << r.output;
  for (const char* crash : {"terminate called", "what():", "Segmentation", "Aborted", "Traceback"})
    EXPECT_FALSE(contains(r.output, crash)) << r.output;
}

INSTANTIATE_TEST_SUITE_P(Kinds, BadInputs, ::testing::ValuesIn(all_cases()),
                         [](const ::testing::TestParamInfo<BadInput>& info) { return info.param.name; });

TEST(BadInputSuite, CoversAtLeastFortyKinds) { EXPECT_GE(all_cases().size(), 40u); }

// A resumable run whose newest checkpoint is damaged resumes from the one before it, and says so.
TEST(Resume, FallsBackToThePreviousCommittedCheckpoint) {
  const auto& w = World::get();
  ASSERT_TRUE(w.ready);
  const std::string dir = ::testing::TempDir() + "bad_input_fallback";
  fs::remove_all(dir);
  const std::string job = kEngram + " pretrain" + w.sets + " --set pretrain.out_dir=" + dir +
                          " --set train.save_every=1 --set train.keep_checkpoints=2";
  Result r = run(job + " --set train.steps=3");
  ASSERT_EQ(r.code, 0) << r.output;
  ASSERT_TRUE(fs::exists(dir + "/checkpoints/step_00000002.done"));
  truncate(dir + "/checkpoints/step_00000003.h5", 0.5);
  r = run(job + " --set train.steps=4");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "step_00000003.h5 cannot be loaded")) << r.output;
  EXPECT_TRUE(contains(r.output, "falling back to the committed checkpoint before it")) << r.output;
  EXPECT_TRUE(contains(r.output, "resumed from " + dir + "/checkpoints/step_00000002.h5 at step 2")) << r.output;
  EXPECT_TRUE(fs::exists(dir + "/checkpoints/step_00000004.done"));
}

}  // namespace
