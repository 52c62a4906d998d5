#pragma once
// Typed configuration. Every option is declared once in a Schema (name, type, default, help,
// allowed choices). A Config starts from the defaults, then merges YAML files in order, then
// `--set a.b=value` overrides: priority default < file(s) < command line.
// Errors name the file and line (or the --set text) and what was expected, and are thrown as
// core::UserError (exit code 2).
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace engram::config {

enum class Type { Int, Float, Bool, String, StringList };
using Value = std::variant<int64_t, double, bool, std::string, std::vector<std::string>>;

std::string type_name(Type type);  // "an integer", "a number", "a boolean", "a string", "a list of strings"

// The allowed values of a number: [min, max] (or [min, max) when max_excluded), either end
// unbounded when absent.
struct Range {
  std::optional<double> min, max;
  bool max_excluded = false;
  static Range at_least(double min) { return {min, std::nullopt}; }
  static Range between(double min, double max) { return {min, max}; }
  static Range below(double min, double max) { return {min, max, true}; }  // [min, max)
  bool contains(double value) const {
    return (!min || value >= *min) && (!max || (max_excluded ? value < *max : value <= *max));
  }
  std::string text() const;  // ">= 0", "in [0, 1]", "in [0, 1)"
};

struct Option {
  std::string name;  // dotted: "dist.timeout_s"
  Type type;
  Value default_value;
  std::string help;
  std::vector<std::string> choices;  // for strings: the allowed values (empty = any)
  Range range;                       // for numbers
};

class Schema {
 public:
  void add_int(const std::string& name, int64_t def, const std::string& help, Range range = {});
  void add_float(const std::string& name, double def, const std::string& help, Range range = {});
  void add_bool(const std::string& name, bool def, const std::string& help);
  void add_string(const std::string& name, const std::string& def, const std::string& help,
                  std::vector<std::string> choices = {});
  void add_list(const std::string& name, std::vector<std::string> def, const std::string& help);

  const Option* find(const std::string& name) const;
  const std::map<std::string, Option>& options() const { return options_; }
  // The declared option name closest to `name` (edit distance), for "did you mean" hints.
  std::string closest(const std::string& name) const;

 private:
  void add(Option option);
  std::map<std::string, Option> options_;
};

class Config {
 public:
  explicit Config(const Schema& schema);

  void merge_file(const std::string& path);
  // `origin` names the text in error messages (a file name, "<embedded>").
  void merge_text(const std::string& yaml, const std::string& origin);
  // "a.b=value"; value is parsed as a YAML scalar or flow list ("[x, y]").
  void apply_override(const std::string& assignment);

  int64_t get_int(const std::string& name) const;
  double get_float(const std::string& name) const;
  bool get_bool(const std::string& name) const;
  const std::string& get_string(const std::string& name) const;
  const std::vector<std::string>& get_list(const std::string& name) const;

  const Value& value_of(const std::string& name) const;  // any type; unknown name -> InternalError
  // Where the value came from: "default", "file.yaml:12" or "--set".
  const std::string& source_of(const std::string& name) const;
  // The effective configuration as nested YAML, every option, with its help as a comment.
  std::string to_yaml(bool with_help = false) const;

  const Schema& schema() const { return *schema_; }

 private:
  const Value& value(const std::string& name, Type expected) const;
  const Schema* schema_;
  std::map<std::string, Value> values_;
  std::map<std::string, std::string> sources_;
};

}  // namespace engram::config
