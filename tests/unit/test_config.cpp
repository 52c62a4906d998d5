// Tests for config::Schema / config::Config: defaults, merge priority, error messages (exact
// text, file and line), and the to_yaml round trip.
#include "config/config.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <string>

#include "core/error.h"

namespace engram::config {
namespace {

using core::InternalError;
using core::UserError;

Schema make_schema() {
  Schema schema;
  schema.add_int("dist.timeout_s", 30, "Seconds to wait for peers");
  schema.add_string("dist.backend", "auto", "Communication backend",
                    {"auto", "mpi", "nccl", "local", "thread"});
  schema.add_list("dist.hosts", {"localhost"}, "Hosts to run on");
  schema.add_float("train.lr", 0.001, "Learning rate");
  schema.add_bool("train.shuffle", true, "Shuffle the data each epoch");
  schema.add_int("train.opt.steps", 100, "Optimizer steps");
  schema.add_string("name", "run", "Run name");
  return schema;
}

// The message of the UserError that `body` throws; fails the test if it throws nothing else.
std::string user_error(const std::function<void()>& body) {
  try {
    body();
  } catch (const UserError& e) {
    EXPECT_EQ(e.exit_code(), 2);
    return e.what();
  }
  ADD_FAILURE() << "expected a UserError";
  return "";
}

class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = ::testing::TempDir() + "engram_config_XXXXXX";
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }

  std::string write(const std::string& name, const std::string& text) {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path) << text;
    return path;
  }

  Schema schema_ = make_schema();
  Config config_{schema_};
  std::string dir_;
};

TEST(TypeName, AllTypes) {
  EXPECT_EQ(type_name(Type::Int), "an integer");
  EXPECT_EQ(type_name(Type::Float), "a number");
  EXPECT_EQ(type_name(Type::Bool), "a boolean");
  EXPECT_EQ(type_name(Type::String), "a string");
  EXPECT_EQ(type_name(Type::StringList), "a list of strings");
}

TEST(Schema, DuplicateIsInternalError) {
  Schema schema;
  schema.add_int("a.b", 1, "");
  EXPECT_THROW(schema.add_float("a.b", 1.0, ""), InternalError);
}

TEST(Schema, OptionAndSectionCannotShareAName) {
  Schema schema;
  schema.add_int("a.b", 1, "");
  EXPECT_THROW(schema.add_int("a.b.c", 1, ""), InternalError);
  EXPECT_THROW(schema.add_int("a", 1, ""), InternalError);
}

TEST(Schema, DefaultOutsideChoicesIsInternalError) {
  Schema schema;
  EXPECT_THROW(schema.add_string("mode", "x", "", {"a", "b"}), InternalError);
}

TEST(Schema, RangesAreCheckedWhereTheValueIsWritten) {
  Schema schema;
  schema.add_int("eval.questions", 400, "", Range::at_least(0));
  schema.add_float("train.dropout", 0.1, "", Range::between(0, 1));
  EXPECT_THROW(schema.add_int("bad", -1, "", Range::at_least(0)), InternalError);  // default outside
  Config config(schema);
  config.apply_override("eval.questions=0");
  config.apply_override("train.dropout=1");
  EXPECT_EQ(config.get_int("eval.questions"), 0);
  EXPECT_DOUBLE_EQ(config.get_float("train.dropout"), 1.0);
  try {
    config.apply_override("eval.questions=-3");
    ADD_FAILURE() << "a value below the range was accepted";
  } catch (const engram::core::UserError& e) {
    EXPECT_EQ(std::string(e.what()), "--set eval.questions=-3: eval.questions: expected a value >= 0, got -3");
  }
  try {
    config.merge_text("train:\n  dropout: 1.5\n", "run.yaml");
    ADD_FAILURE() << "a value above the range was accepted";
  } catch (const engram::core::UserError& e) {
    EXPECT_EQ(std::string(e.what()), "run.yaml:2: train.dropout: expected a value in [0, 1], got 1.5");
  }
}

TEST(Schema, FindAndClosest) {
  const Schema schema = make_schema();
  ASSERT_NE(schema.find("dist.timeout_s"), nullptr);
  EXPECT_EQ(schema.find("dist.timeout_s")->type, Type::Int);
  EXPECT_EQ(schema.find("dist"), nullptr);
  EXPECT_EQ(schema.closest("dist.timout_s"), "dist.timeout_s");
  EXPECT_EQ(schema.closest("train.shufle"), "train.shuffle");
  EXPECT_EQ(schema.closest("nme"), "name");
  EXPECT_EQ(Schema().closest("x"), "");
}

TEST_F(ConfigTest, Defaults) {
  EXPECT_EQ(config_.get_int("dist.timeout_s"), 30);
  EXPECT_EQ(config_.get_string("dist.backend"), "auto");
  EXPECT_EQ(config_.get_list("dist.hosts"), std::vector<std::string>{"localhost"});
  EXPECT_DOUBLE_EQ(config_.get_float("train.lr"), 0.001);
  EXPECT_TRUE(config_.get_bool("train.shuffle"));
  EXPECT_EQ(config_.get_int("train.opt.steps"), 100);
  EXPECT_EQ(config_.source_of("dist.timeout_s"), "default");
  EXPECT_EQ(config_.source_of("name"), "default");
}

TEST_F(ConfigTest, GetterMisuseIsInternalError) {
  EXPECT_THROW(config_.get_int("dist.backend"), InternalError);
  EXPECT_THROW(config_.get_string("dist.timeout_s"), InternalError);
  EXPECT_THROW(config_.get_int("no.such"), InternalError);
  EXPECT_THROW(config_.source_of("no.such"), InternalError);
}

TEST_F(ConfigTest, FileThenSetPriorityAndSources) {
  const std::string path = write("a.yaml",
                                 "# comment\n"
                                 "dist:\n"
                                 "  timeout_s: 5\n"
                                 "  backend: mpi\n"
                                 "train: {lr: 0.5, opt: {steps: 7}}\n");
  config_.merge_file(path);
  EXPECT_EQ(config_.get_int("dist.timeout_s"), 5);
  EXPECT_EQ(config_.source_of("dist.timeout_s"), path + ":3");
  EXPECT_EQ(config_.get_string("dist.backend"), "mpi");
  EXPECT_EQ(config_.source_of("dist.backend"), path + ":4");
  EXPECT_DOUBLE_EQ(config_.get_float("train.lr"), 0.5);
  EXPECT_EQ(config_.source_of("train.lr"), path + ":5");
  EXPECT_EQ(config_.get_int("train.opt.steps"), 7);
  EXPECT_EQ(config_.source_of("train.shuffle"), "default");

  config_.apply_override("dist.timeout_s=9");
  EXPECT_EQ(config_.get_int("dist.timeout_s"), 9);
  EXPECT_EQ(config_.source_of("dist.timeout_s"), "--set");
  EXPECT_EQ(config_.source_of("dist.backend"), path + ":4");

  // --set parses its value as YAML, for every type.
  config_.apply_override("dist.hosts=[a, b]");
  EXPECT_EQ(config_.get_list("dist.hosts"), (std::vector<std::string>{"a", "b"}));
  config_.apply_override("train.shuffle=off");
  EXPECT_FALSE(config_.get_bool("train.shuffle"));
  config_.apply_override("name=");
  EXPECT_EQ(config_.get_string("name"), "");
  config_.apply_override("train.lr=1e-3");
  EXPECT_DOUBLE_EQ(config_.get_float("train.lr"), 1e-3);
}

TEST_F(ConfigTest, TwoFilesMergeInOrder) {
  const std::string first = write("first.yaml", "dist:\n  timeout_s: 1\n  backend: nccl\n");
  const std::string second = write("second.yaml", "\ndist: {timeout_s: 2}\n");
  config_.merge_file(first);
  config_.merge_file(second);
  EXPECT_EQ(config_.get_int("dist.timeout_s"), 2);
  EXPECT_EQ(config_.source_of("dist.timeout_s"), second + ":2");
  EXPECT_EQ(config_.get_string("dist.backend"), "nccl");
  EXPECT_EQ(config_.source_of("dist.backend"), first + ":3");
}

TEST_F(ConfigTest, DottedKeysAndEmptyDocuments) {
  config_.merge_text("dist.timeout_s: 4\n", "<embedded>");
  EXPECT_EQ(config_.get_int("dist.timeout_s"), 4);
  EXPECT_EQ(config_.source_of("dist.timeout_s"), "<embedded>:1");
  config_.merge_text("", "empty");
  config_.merge_text("# only a comment\n", "comment");
  config_.merge_text("dist:\n", "empty section");
  EXPECT_EQ(config_.get_int("dist.timeout_s"), 4);
  config_.merge_file(write("empty.yaml", ""));
  EXPECT_EQ(config_.get_int("dist.timeout_s"), 4);
}

TEST_F(ConfigTest, AcceptedValueSpellings) {
  config_.merge_text("dist: {timeout_s: -12}\ntrain: {lr: 3, shuffle: no}\n", "f");
  EXPECT_EQ(config_.get_int("dist.timeout_s"), -12);
  EXPECT_DOUBLE_EQ(config_.get_float("train.lr"), 3.0);
  EXPECT_FALSE(config_.get_bool("train.shuffle"));
  config_.merge_text("dist: {timeout_s: 010}\ntrain: {lr: 2.5e-4, shuffle: Yes}\nname: 42\n", "f");
  EXPECT_EQ(config_.get_int("dist.timeout_s"), 10);  // decimal, not octal
  EXPECT_DOUBLE_EQ(config_.get_float("train.lr"), 2.5e-4);
  // A key written twice in one map: refused, naming both lines (yaml-cpp would keep the second).
  try {
    config_.merge_text("train:\n  lr: 1.0e-3\n  shuffle: no\n  lr: 2.0e-3\n", "run.yaml");
    ADD_FAILURE() << "a repeated key was accepted";
  } catch (const engram::core::UserError& e) {
    EXPECT_EQ(std::string(e.what()), "run.yaml:4: 'train.lr' is set twice in the same map (first at run.yaml:2)");
  }
  // YAML's infinities and NaN are read, and refused: no option means anything by them.
  for (const char* bad : {".inf", "-.Inf", ".nan", ".NaN"}) {
    try {
      config_.merge_text(std::string("train:\n  lr: ") + bad + "\n", "run.yaml");
      ADD_FAILURE() << bad << " was accepted";
    } catch (const engram::core::UserError& e) {
      EXPECT_EQ(std::string(e.what()), std::string("run.yaml:2: train.lr: expected a finite number, got ") + bad);
    }
  }
  EXPECT_TRUE(config_.get_bool("train.shuffle"));
  EXPECT_EQ(config_.get_string("name"), "42");
  config_.merge_text("dist:\n  hosts:\n    - x\n    - y\n", "f");
  EXPECT_EQ(config_.get_list("dist.hosts"), (std::vector<std::string>{"x", "y"}));
  config_.merge_text("dist: {hosts: []}\n", "f");
  EXPECT_TRUE(config_.get_list("dist.hosts").empty());
}

TEST_F(ConfigTest, UnknownKeyNamesLineAndSuggestion) {
  const std::string path = write("bad.yaml", "dist:\n  backend: mpi\n  timout_s: 3\n");
  EXPECT_EQ(user_error([&] { config_.merge_file(path); }),
            path + ":3: unknown key 'dist.timout_s' (did you mean 'dist.timeout_s'?)");
  // Nothing of the failed file was applied.
  EXPECT_EQ(config_.get_string("dist.backend"), "auto");
  EXPECT_EQ(user_error([&] { config_.merge_text("trian:\n  lr: 1\n", "f.yaml"); }),
            "f.yaml:1: unknown key 'trian' (did you mean 'train'?)");
  EXPECT_EQ(user_error([&] { config_.merge_text("train:\n  opt: {stpes: 1}\n", "f.yaml"); }),
            "f.yaml:2: unknown key 'train.opt.stpes' (did you mean 'train.opt.steps'?)");
  EXPECT_EQ(user_error([&] { config_.merge_text("train:\n  otp:\n    steps: 1\n", "f.yaml"); }),
            "f.yaml:2: unknown key 'train.otp' (did you mean 'train.opt'?)");
}

TEST_F(ConfigTest, UnknownSectionIsReported) {
  EXPECT_EQ(user_error([&] { config_.merge_text("x: 1\nnam: 2\n", "f.yaml"); }),
            "f.yaml:1: unknown key 'x' (did you mean 'name'?)");
}

TEST_F(ConfigTest, WrongTypes) {
  EXPECT_EQ(user_error([&] { config_.merge_text("dist:\n  timeout_s: abc\n", "f.yaml"); }),
            "f.yaml:2: dist.timeout_s: expected an integer, got 'abc'");
  EXPECT_EQ(user_error([&] { config_.merge_text("dist: {timeout_s: 1.5}\n", "f.yaml"); }),
            "f.yaml:1: dist.timeout_s: expected an integer, got '1.5'");
  EXPECT_EQ(user_error([&] { config_.merge_text("dist: {timeout_s: 12abc}\n", "f.yaml"); }),
            "f.yaml:1: dist.timeout_s: expected an integer, got '12abc'");
  EXPECT_EQ(user_error([&] { config_.merge_text("dist: {timeout_s: }\n", "f.yaml"); }),
            "f.yaml:1: dist.timeout_s: expected an integer, got an empty value");
  EXPECT_EQ(user_error([&] { config_.merge_text("\ntrain:\n  shuffle: maybe\n", "f.yaml"); }),
            "f.yaml:3: train.shuffle: expected a boolean, got 'maybe'");
  EXPECT_EQ(user_error([&] { config_.merge_text("train: {lr: fast}\n", "f.yaml"); }),
            "f.yaml:1: train.lr: expected a number, got 'fast'");
  EXPECT_EQ(user_error([&] { config_.merge_text("dist:\n  hosts: node1\n", "f.yaml"); }),
            "f.yaml:2: dist.hosts: expected a list of strings, got 'node1'");
  EXPECT_EQ(user_error([&] { config_.merge_text("dist: {hosts: [a, [b]]}\n", "f.yaml"); }),
            "f.yaml:1: dist.hosts: expected a list of strings, got a list containing a list");
  EXPECT_EQ(user_error([&] { config_.merge_text("name: [a]\n", "f.yaml"); }),
            "f.yaml:1: name: expected a string, got a list");
}

TEST_F(ConfigTest, ChoicesViolation) {
  EXPECT_EQ(user_error([&] { config_.merge_text("dist:\n  backend: foo\n", "f.yaml"); }),
            "f.yaml:2: dist.backend: expected one of auto, mpi, nccl, local, thread, got 'foo'");
  EXPECT_EQ(user_error([&] { config_.apply_override("dist.backend=foo"); }),
            "--set dist.backend=foo: dist.backend: expected one of auto, mpi, nccl, local, "
            "thread, got 'foo'");
  // An empty value is the empty string, which is not a choice either (a fuzzer's finding: it was
  // accepted, and the YAML it dumped then failed to load).
  EXPECT_EQ(user_error([&] { config_.merge_text("dist:\n  backend:\n", "f.yaml"); }),
            "f.yaml:2: dist.backend: expected one of auto, mpi, nccl, local, thread, got ''");
  EXPECT_EQ(user_error([&] { config_.apply_override("dist.backend="); }),
            "--set dist.backend=: dist.backend: expected one of auto, mpi, nccl, local, thread, got ''");
}

TEST_F(ConfigTest, StringsMustBeUtf8TextThatSurvivesTheDump) {
  // A malformed UTF-8 sequence did not come back from to_yaml() (a fuzzer's finding).
  EXPECT_EQ(user_error([&] { config_.merge_text("name: a\xff\n", "f.yaml"); }),
            "f.yaml:1: name: expected UTF-8 text, got bytes that are not UTF-8");
  EXPECT_EQ(user_error([&] { config_.merge_text("dist:\n  hosts: [a, \"b\x8d\"]\n", "f.yaml"); }),
            "f.yaml:2: dist.hosts: expected UTF-8 text, got bytes that are not UTF-8");
  config_.merge_text("name: Zürich\n", "f.yaml");
  EXPECT_EQ(config_.get_string("name"), "Zürich");
}

TEST_F(ConfigTest, SectionScalarMismatch) {
  EXPECT_EQ(user_error([&] { config_.merge_text("name: x\ndist: 3\n", "f.yaml"); }),
            "f.yaml:2: 'dist' is a section, expected a map of options");
  EXPECT_EQ(user_error([&] { config_.merge_text("dist:\n  timeout_s: {a: 1}\n", "f.yaml"); }),
            "f.yaml:2: dist.timeout_s: expected an integer, got a map");
  EXPECT_EQ(user_error([&] { config_.merge_text("- a\n- b\n", "f.yaml"); }),
            "f.yaml:1: expected a map of options at the top level, got a list");
}

TEST_F(ConfigTest, YamlSyntaxErrorNamesFileAndLine) {
  const std::string path = write("syntax.yaml", "dist:\n  timeout_s: 3\n  backend: [mpi\n");
  const std::string message = user_error([&] { config_.merge_file(path); });
  EXPECT_EQ(message.rfind(path + ":", 0), 0u) << message;
  EXPECT_NE(message.find(": YAML syntax error: "), std::string::npos) << message;
  EXPECT_EQ(user_error([&] { config_.merge_text("a: b\n  c: d\n", "f.yaml"); }),
            "f.yaml:2: YAML syntax error: illegal map value");
}

TEST_F(ConfigTest, MissingFile) {
  const std::string path = dir_ + "/missing.yaml";
  EXPECT_EQ(user_error([&] { config_.merge_file(path); }),
            "config file '" + path + "': cannot open (No such file or directory)");
  EXPECT_EQ(user_error([&] { config_.merge_file(dir_); }),
            "config file '" + dir_ + "': cannot open (Is a directory)");
}

TEST_F(ConfigTest, SetErrors) {
  EXPECT_EQ(user_error([&] { config_.apply_override("xyz"); }), "--set 'xyz': expected key=value");
  EXPECT_EQ(user_error([&] { config_.apply_override("=3"); }), "--set '=3': expected key=value");
  EXPECT_EQ(user_error([&] { config_.apply_override("dist.timout_s=3"); }),
            "--set dist.timout_s=3: unknown key 'dist.timout_s' (did you mean 'dist.timeout_s'?)");
  EXPECT_EQ(user_error([&] { config_.apply_override("dist.timeout_s=abc"); }),
            "--set dist.timeout_s=abc: dist.timeout_s: expected an integer, got 'abc'");
  EXPECT_EQ(user_error([&] { config_.apply_override("dist.hosts=a"); }),
            "--set dist.hosts=a: dist.hosts: expected a list of strings, got 'a'");
  EXPECT_EQ(user_error([&] { config_.apply_override("dist=3"); }),
            "--set dist=3: 'dist' is a section, expected a map of options");
  EXPECT_EQ(user_error([&] { config_.apply_override("dist.timeout_s="); }),
            "--set dist.timeout_s=: dist.timeout_s: expected an integer, got an empty value");
  const std::string syntax = user_error([&] { config_.apply_override("dist.hosts=[a"); });
  EXPECT_EQ(syntax.rfind("--set dist.hosts=[a: YAML syntax error: ", 0), 0u) << syntax;
  EXPECT_EQ(config_.get_int("dist.timeout_s"), 30);
  EXPECT_EQ(config_.source_of("dist.timeout_s"), "default");
}

TEST_F(ConfigTest, SetAcceptsASectionMap) {
  config_.apply_override("dist={timeout_s: 8, backend: local}");
  EXPECT_EQ(config_.get_int("dist.timeout_s"), 8);
  EXPECT_EQ(config_.get_string("dist.backend"), "local");
  EXPECT_EQ(config_.source_of("dist.backend"), "--set");
}

TEST_F(ConfigTest, ToYamlRoundTrip) {
  Schema schema;
  schema.add_float("f.tenth", 0.1, "");
  schema.add_float("f.tiny", 1e-5, "");
  schema.add_float("f.three", 3.0, "");
  schema.add_float("f.third", 1.0 / 3.0, "");
  schema.add_float("f.big", 1e300, "");
  schema.add_float("f.neg", -2.5e-8, "");
  schema.add_int("i.min", INT64_MIN, "");
  schema.add_bool("b", false, "");
  schema.add_string("s.empty", "", "");
  schema.add_string("s.null", "null", "");
  schema.add_string("s.tricky", "a: b # c", "");
  schema.add_string("s.number", "3", "");
  schema.add_list("l.items", {"x", "y z", "", "true"}, "");
  schema.add_list("l.none", {}, "");
  Config original(schema);
  original.apply_override("f.tenth=0.2");
  original.apply_override("i.min=-7");

  const std::string text = original.to_yaml();
  EXPECT_NE(text.find("three: 3.0\n"), std::string::npos) << text;
  EXPECT_NE(text.find("tiny: 1e-05\n"), std::string::npos) << text;
  EXPECT_NE(text.find("f:\n  big:"), std::string::npos) << text;

  Config copy(schema);
  copy.merge_text(text, "dump.yaml");
  for (const auto& [name, option] : schema.options()) {
    switch (option.type) {
      case Type::Int:
        EXPECT_EQ(copy.get_int(name), original.get_int(name)) << name;
        break;
      case Type::Float:
        EXPECT_EQ(copy.get_float(name), original.get_float(name)) << name;  // bit-exact
        break;
      case Type::Bool:
        EXPECT_EQ(copy.get_bool(name), original.get_bool(name)) << name;
        break;
      case Type::String:
        EXPECT_EQ(copy.get_string(name), original.get_string(name)) << name;
        break;
      case Type::StringList:
        EXPECT_EQ(copy.get_list(name), original.get_list(name)) << name;
        break;
    }
    EXPECT_EQ(copy.source_of(name).rfind("dump.yaml:", 0), 0u) << name;
  }
  EXPECT_EQ(copy.to_yaml(), text);
}

TEST_F(ConfigTest, ToYamlLayoutAndHelp) {
  const std::string plain = config_.to_yaml();
  EXPECT_EQ(plain,
            "dist:\n"
            "  backend: auto\n"
            "  hosts: [localhost]\n"
            "  timeout_s: 30\n"
            "name: run\n"
            "train:\n"
            "  lr: 0.001\n"
            "  opt:\n"
            "    steps: 100\n"
            "  shuffle: true\n");
  EXPECT_EQ(plain.find('#'), std::string::npos);

  const std::string with_help = config_.to_yaml(true);
  EXPECT_NE(with_help.find("  # Seconds to wait for peers\n  timeout_s: 30\n"), std::string::npos)
      << with_help;
  EXPECT_NE(with_help.find("    # Optimizer steps\n    steps: 100\n"), std::string::npos)
      << with_help;
  EXPECT_NE(with_help.find("# Run name\nname: run\n"), std::string::npos) << with_help;
  Config copy(schema_);
  copy.merge_text(with_help, "help.yaml");
  EXPECT_EQ(copy.to_yaml(), plain);
}

}  // namespace
}  // namespace engram::config
