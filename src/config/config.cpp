#include "config/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <type_traits>
#include <utility>

#include <fmt/format.h>

#include "core/error.h"

namespace engram::config {

using core::fail;

namespace {

// The Value variant's alternatives are listed in the same order as Type, so a value's index()
// is its Type. Option defaults and parsed values are checked against that.
static_assert(std::is_same_v<std::variant_alternative_t<static_cast<size_t>(Type::Int), Value>, int64_t>);
static_assert(std::is_same_v<std::variant_alternative_t<static_cast<size_t>(Type::Float), Value>, double>);
static_assert(std::is_same_v<std::variant_alternative_t<static_cast<size_t>(Type::Bool), Value>, bool>);
static_assert(
    std::is_same_v<std::variant_alternative_t<static_cast<size_t>(Type::String), Value>, std::string>);
static_assert(std::is_same_v<std::variant_alternative_t<static_cast<size_t>(Type::StringList), Value>,
                             std::vector<std::string>>);

Type type_of(const Value& value) { return static_cast<Type>(value.index()); }

// True when `name` is a section: some option is named "name.<something>".
bool is_section(const std::map<std::string, Option>& options, const std::string& name) {
  const std::string prefix = name + ".";
  auto it = options.lower_bound(prefix);  // names sharing a prefix are contiguous when sorted
  return it != options.end() && it->first.compare(0, prefix.size(), prefix) == 0;
}

size_t edit_distance(const std::string& a, const std::string& b) {
  // Levenshtein distance, two rows.
  std::vector<size_t> previous(b.size() + 1), current(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) previous[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    current[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t substitute = previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      current[j] = std::min({previous[j] + 1, current[j - 1] + 1, substitute});
    }
    std::swap(previous, current);
  }
  return previous[b.size()];
}

std::string trim(const std::string& text) {
  const size_t first = text.find_first_not_of(" \t");
  if (first == std::string::npos) return std::string();
  return text.substr(first, text.find_last_not_of(" \t") - first + 1);
}

// What the user wrote, for "expected X, got Y" messages.
std::string describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Scalar:
      return fmt::format("'{}'", node.Scalar());
    case YAML::NodeType::Map:
      return "a map";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      break;
  }
  return "an empty value";
}

// std::from_chars takes '-' but not '+': skip one leading '+', and refuse "+-1".
bool skip_plus(const char*& begin, const char* end) {
  if (begin == end || *begin != '+') return true;
  ++begin;
  return begin == end || *begin != '-';
}

// A whole decimal int64 ("12", "-3", "+4"). Hand-rolled instead of yaml-cpp's as<int64_t>, which
// reads "010" as octal 8 and "0x10" as 16.
bool parse_int(const std::string& text, int64_t& out) {
  const char* begin = text.data();
  const char* end = begin + text.size();
  if (!skip_plus(begin, end)) return false;
  auto [ptr, ec] = std::from_chars(begin, end, out);
  return ec == std::errc() && ptr == end;
}

// A number: integers, decimals, exponents ("1e-3"), and YAML's .inf / -.inf / .nan spellings.
bool parse_float(const std::string& text, double& out) {
  static const std::map<std::string, double> kSpecial = {
      {".inf", std::numeric_limits<double>::infinity()},
      {".Inf", std::numeric_limits<double>::infinity()},
      {".INF", std::numeric_limits<double>::infinity()},
      {"+.inf", std::numeric_limits<double>::infinity()},
      {"+.Inf", std::numeric_limits<double>::infinity()},
      {"+.INF", std::numeric_limits<double>::infinity()},
      {"-.inf", -std::numeric_limits<double>::infinity()},
      {"-.Inf", -std::numeric_limits<double>::infinity()},
      {"-.INF", -std::numeric_limits<double>::infinity()},
      {".nan", std::numeric_limits<double>::quiet_NaN()},
      {".NaN", std::numeric_limits<double>::quiet_NaN()},
      {".NAN", std::numeric_limits<double>::quiet_NaN()},
  };
  if (auto it = kSpecial.find(text); it != kSpecial.end()) {
    out = it->second;
    return true;
  }
  const char* begin = text.data();
  const char* end = begin + text.size();
  if (!skip_plus(begin, end)) return false;
  auto [ptr, ec] = std::from_chars(begin, end, out, std::chars_format::general);
  return ec == std::errc() && ptr == end;
}

void check_range(const Option& option, double value, const std::string& text, const std::string& where) {
  if (!option.range.contains(value)) fail("{}: {}: expected a value {}, got {}", where, option.name, option.range.text(), text);
}

// A config string must be UTF-8 text without NUL bytes: YAML is UTF-8, and anything else would not
// survive --dump-config (found by fuzz/fuzz_config.cpp). UserError naming the option otherwise.
void require_text(const std::string& text, const Option& option, const std::string& where) {
  auto refuse = [&](const char* got) { fail("{}: {}: expected UTF-8 text, got {}", where, option.name, got); };
  for (size_t i = 0; i < text.size();) {
    const auto byte = static_cast<unsigned char>(text[i]);
    if (byte == 0) refuse("a NUL byte");
    const size_t length = byte < 0x80 ? 1 : (byte >> 5) == 0x6 ? 2 : (byte >> 4) == 0xE ? 3 : (byte >> 3) == 0x1E ? 4 : 0;
    if (length == 0 || i + length > text.size()) refuse("bytes that are not UTF-8");
    for (size_t k = 1; k < length; ++k)
      if ((static_cast<unsigned char>(text[i + k]) >> 6) != 0x2) refuse("bytes that are not UTF-8");
    i += length;
  }
}

// Parses `node` as the option's type. `where` prefixes error messages ("file.yaml:3",
// "--set a.b=x"). Shared by files and --set so that both accept and reject exactly the same text.
Value parse_value(const YAML::Node& node, const Option& option, const std::string& where) {
  auto mismatch = [&](const std::string& got) {
    fail("{}: {}: expected {}, got {}", where, option.name, type_name(option.type), got);
  };
  switch (option.type) {
    case Type::Int: {
      int64_t value = 0;
      if (!node.IsScalar() || !parse_int(node.Scalar(), value)) mismatch(describe(node));
      check_range(option, static_cast<double>(value), node.Scalar(), where);
      return value;
    }
    case Type::Float: {
      double value = 0;
      if (!node.IsScalar() || !parse_float(node.Scalar(), value)) mismatch(describe(node));
      // No option means anything by NaN or infinity (0 is "off" where an option can be off); a
      // NaN learning rate would train a NaN model and write it to disk.
      if (!std::isfinite(value)) fail("{}: {}: expected a finite number, got {}", where, option.name, node.Scalar());
      check_range(option, value, node.Scalar(), where);
      return value;
    }
    case Type::Bool: {
      bool value = false;
      if (!node.IsScalar() || !YAML::convert<bool>::decode(node, value)) mismatch(describe(node));
      return value;
    }
    case Type::String: {
      // An empty value ("name:" in a file, "--set name=") is the empty string, which must still be
      // one of the choices where there are some (found by fuzz/fuzz_config.cpp).
      if (!node.IsNull() && !node.IsScalar()) mismatch(describe(node));
      const std::string value = node.IsNull() ? std::string() : node.Scalar();
      require_text(value, option, where);
      if (!option.choices.empty() &&
          std::find(option.choices.begin(), option.choices.end(), value) == option.choices.end()) {
        fail("{}: {}: expected one of {}, got '{}'", where, option.name,
             fmt::join(option.choices, ", "), value);
      }
      return value;
    }
    case Type::StringList: {
      std::vector<std::string> value;
      if (node.IsNull()) return value;  // "hosts:" with nothing after it: the empty list
      if (!node.IsSequence()) mismatch(describe(node));
      for (const YAML::Node& item : node) {
        if (!item.IsScalar()) mismatch("a list containing " + describe(item));
        require_text(item.Scalar(), option, where);
        value.push_back(item.Scalar());
      }
      return value;
    }
  }
  throw core::InternalError(fmt::format("config option '{}' has an invalid type", option.name));
}

// Where the text being merged came from.
struct Origin {
  std::string name;  // a file name, "<embedded>", or for --set the whole assignment
  bool command_line = false;

  // Error message prefix: "file.yaml:12" or "--set a.b=3".
  std::string where(const YAML::Mark& mark) const {
    if (command_line) return "--set " + name;
    if (mark.is_null()) return name;
    return fmt::format("{}:{}", name, mark.line + 1);  // YAML::Mark lines are 0-based
  }
  // What source_of() reports: "file.yaml:12" or "--set".
  std::string source(const YAML::Mark& mark) const { return command_line ? "--set" : where(mark); }
};

// Walks a YAML document, turning nested maps into dotted option names and storing parsed values.
struct Merger {
  const Schema& schema;
  const Origin& origin;
  std::map<std::string, Value>& values;
  std::map<std::string, std::string>& sources;

  // `key` is the full dotted name; `mark` locates it for messages.
  void assign(const std::string& key, const YAML::Mark& mark, const YAML::Node& node) {
    const std::string where = origin.where(mark);
    if (const Option* option = schema.find(key)) {
      values[key] = parse_value(node, *option, where);
      sources[key] = origin.source(mark);
    } else if (is_section(schema.options(), key)) {
      // A section left empty ("dist:" with its options commented out) merges nothing.
      if (node.IsNull()) return;
      if (!node.IsMap()) fail("{}: '{}' is a section, expected a map of options", where, key);
      merge_map(node, key + ".");
    } else {
      const std::string suggestion = suggest(key, node);
      fail("{}: unknown key '{}'{}", where, key,
           suggestion.empty() ? std::string() : fmt::format(" (did you mean '{}'?)", suggestion));
    }
  }

  // The "did you mean" for an unknown key. A misspelled section ("trian: {lr: 1}") is matched
  // through its first option ("trian.lr" ~ "train.lr") and answered with the section ("train");
  // comparing "trian" alone against full option names would favour short unrelated names.
  std::string suggest(const std::string& key, const YAML::Node& node) const {
    const std::string best = schema.closest(first_leaf(key, node));
    // Keep as many dotted components of `best` as `key` has.
    size_t cut = std::string::npos;
    size_t from = 0;
    for (auto dots = std::count(key.begin(), key.end(), '.'); dots >= 0; --dots) {
      cut = best.find('.', from);
      if (cut == std::string::npos) break;
      from = cut + 1;
    }
    return best.substr(0, cut);
  }

  // `key` extended by the first key of each nested map: "trian" + {lr: 1} -> "trian.lr".
  static std::string first_leaf(const std::string& key, const YAML::Node& node) {
    if (!node.IsMap() || node.size() == 0 || !node.begin()->first.IsScalar()) return key;
    return first_leaf(key + "." + node.begin()->first.Scalar(), node.begin()->second);
  }

  void merge_map(const YAML::Node& map, const std::string& prefix) {
    // yaml-cpp keeps both entries of a key written twice in one map, and the second would win
    // silently: a repeated key is an error, naming both lines.
    std::map<std::string, YAML::Mark> seen;
    for (const auto& entry : map) {
      const YAML::Node& key = entry.first;
      if (!key.IsScalar())
        fail("{}: expected an option name, got {}", origin.where(key.Mark()), describe(key));
      auto [first, fresh] = seen.emplace(key.Scalar(), key.Mark());
      if (!fresh)
        fail("{}: '{}' is set twice in the same map (first at {})", origin.where(key.Mark()), prefix + key.Scalar(),
             origin.where(first->second));
      assign(prefix + key.Scalar(), key.Mark(), entry.second);
    }
  }
};

// Shortest text that reads back as the same double, and still reads as a number with a
// fractional part ("3.0", not "3") so the file shows the option is a float.
std::string format_float(double value) {
  if (std::isnan(value)) return ".nan";
  if (std::isinf(value)) return value > 0 ? ".inf" : "-.inf";
  std::string text = fmt::format("{}", value);
  if (text.find_first_of(".eE") == std::string::npos) text += ".0";
  return text;
}

// A value as one line of YAML. The emitter quotes strings that would otherwise read back as
// something else ("", "null", "#x", "a: b").
std::string format_value(const Value& value) {
  YAML::Emitter out;
  switch (type_of(value)) {
    case Type::Int:
      return fmt::format("{}", std::get<int64_t>(value));
    case Type::Float:
      return format_float(std::get<double>(value));
    case Type::Bool:
      return std::get<bool>(value) ? "true" : "false";
    case Type::String:
      out << std::get<std::string>(value);
      break;
    case Type::StringList:
      out << YAML::Flow << YAML::BeginSeq;
      for (const std::string& item : std::get<std::vector<std::string>>(value)) out << item;
      out << YAML::EndSeq;
      break;
  }
  return out.c_str();
}

std::string format_key(const std::string& key) {
  YAML::Emitter out;
  out << key;
  return out.c_str();
}

// Options grouped by dotted prefix: "dist.timeout_s" is child "timeout_s" of child "dist".
struct Tree {
  const Option* option = nullptr;
  const Value* value = nullptr;
  std::map<std::string, Tree> children;
};

// The YAML layout is written by hand: yaml-cpp's emitter puts a comment on the line of the
// preceding value rather than above the next key, which would misplace the help text.
void write_tree(const Tree& tree, int indent, bool with_help, std::string& out) {
  const std::string pad(indent, ' ');
  for (const auto& [name, child] : tree.children) {
    if (child.option == nullptr) {
      out += pad + format_key(name) + ":\n";
      write_tree(child, indent + 2, with_help, out);
      continue;
    }
    if (with_help && !child.option->help.empty()) {
      size_t start = 0;
      while (start <= child.option->help.size()) {
        size_t end = child.option->help.find('\n', start);
        if (end == std::string::npos) end = child.option->help.size();
        const std::string line = child.option->help.substr(start, end - start);
        out += pad + (line.empty() ? "#" : "# " + line) + "\n";
        start = end + 1;
      }
    }
    out += pad + format_key(name) + ": " + format_value(*child.value) + "\n";
  }
}

}  // namespace

std::string type_name(Type type) {
  switch (type) {
    case Type::Int:
      return "an integer";
    case Type::Float:
      return "a number";
    case Type::Bool:
      return "a boolean";
    case Type::String:
      return "a string";
    case Type::StringList:
      return "a list of strings";
  }
  throw core::InternalError(fmt::format("invalid config type {}", static_cast<int>(type)));
}

// ----- Schema -----

std::string Range::text() const {
  if (min && max) return fmt::format("in [{}, {}{}", *min, *max, max_excluded ? ")" : "]");
  if (min) return fmt::format(">= {}", *min);
  if (max) return fmt::format("{} {}", max_excluded ? "<" : "<=", *max);
  return "of any size";
}

void Schema::add_int(const std::string& name, int64_t def, const std::string& help, Range range) {
  ENGRAM_CHECK(range.contains(static_cast<double>(def)), "config option '{}': default {} is not {}", name, def,
               range.text());
  add({name, Type::Int, def, help, {}, range});
}

void Schema::add_float(const std::string& name, double def, const std::string& help, Range range) {
  ENGRAM_CHECK(range.contains(def), "config option '{}': default {} is not {}", name, def, range.text());
  add({name, Type::Float, def, help, {}, range});
}

void Schema::add_bool(const std::string& name, bool def, const std::string& help) {
  add({name, Type::Bool, def, help, {}, {}});
}

void Schema::add_string(const std::string& name, const std::string& def, const std::string& help,
                        std::vector<std::string> choices) {
  add({name, Type::String, def, help, std::move(choices), {}});
}

void Schema::add_list(const std::string& name, std::vector<std::string> def,
                      const std::string& help) {
  add({name, Type::StringList, std::move(def), help, {}, {}});
}

void Schema::add(Option option) {
  const std::string& name = option.name;
  ENGRAM_CHECK(!name.empty() && name.front() != '.' && name.back() != '.' &&
                   name.find("..") == std::string::npos,
               "bad config option name '{}'", name);
  ENGRAM_CHECK(options_.count(name) == 0, "config option '{}' declared twice", name);
  ENGRAM_CHECK(type_of(option.default_value) == option.type, "config option '{}': default is not {}",
               name, type_name(option.type));
  // A name cannot be both an option and a section: "a.b" as an option rules out "a.b.c".
  ENGRAM_CHECK(!is_section(options_, name), "config option '{}' is already a section", name);
  for (size_t dot = name.find('.'); dot != std::string::npos; dot = name.find('.', dot + 1)) {
    ENGRAM_CHECK(options_.count(name.substr(0, dot)) == 0,
                 "config option '{}' is inside option '{}'", name, name.substr(0, dot));
  }
  if (!option.choices.empty()) {
    const auto& def = std::get<std::string>(option.default_value);
    ENGRAM_CHECK(std::find(option.choices.begin(), option.choices.end(), def) !=
                     option.choices.end(),
                 "config option '{}': default '{}' is not one of its choices", name, def);
  }
  options_.emplace(name, std::move(option));
}

const Option* Schema::find(const std::string& name) const {
  auto it = options_.find(name);
  return it == options_.end() ? nullptr : &it->second;
}

std::string Schema::closest(const std::string& name) const {
  std::string best;
  size_t best_distance = std::numeric_limits<size_t>::max();
  for (const auto& [candidate, option] : options_) {
    const size_t distance = edit_distance(name, candidate);
    if (distance < best_distance) {
      best_distance = distance;
      best = candidate;
    }
  }
  return best;
}

// ----- Config -----

Config::Config(const Schema& schema) : schema_(&schema) {
  for (const auto& [name, option] : schema.options()) {
    values_[name] = option.default_value;
    sources_[name] = "default";
  }
}

void Config::merge_file(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    fail("config file '{}': cannot open ({})", path, std::strerror(EISDIR));
  errno = 0;
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("config file '{}': cannot open ({})", path, std::strerror(errno ? errno : ENOENT));
  const std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  if (in.bad()) fail("config file '{}': cannot read", path);
  merge_text(text, path);
}

void Config::merge_text(const std::string& yaml, const std::string& origin_name) {
  const Origin origin{origin_name, false};
  YAML::Node document;
  try {
    document = YAML::Load(yaml);
  } catch (const YAML::ParserException& e) {
    fail("{}:{}: YAML syntax error: {}", origin_name, e.mark.line + 1, e.msg);
  }
  if (document.IsNull()) return;  // empty file, or only comments
  if (!document.IsMap())
    fail("{}: expected a map of options at the top level, got {}", origin.where(document.Mark()),
         describe(document));

  // Merge into copies so that an error leaves this Config unchanged.
  auto values = values_;
  auto sources = sources_;
  Merger{*schema_, origin, values, sources}.merge_map(document, "");
  values_ = std::move(values);
  sources_ = std::move(sources);
}

void Config::apply_override(const std::string& assignment) {
  const size_t eq = assignment.find('=');
  const std::string key = eq == std::string::npos ? std::string() : trim(assignment.substr(0, eq));
  if (key.empty()) fail("--set '{}': expected key=value", assignment);

  const Origin origin{assignment, true};
  YAML::Node node;
  try {
    node = YAML::Load(assignment.substr(eq + 1));
  } catch (const YAML::ParserException& e) {
    fail("{}: YAML syntax error: {}", origin.where(e.mark), e.msg);
  }
  auto values = values_;
  auto sources = sources_;
  // A map value ("dist={timeout_s: 3}") is walked like a file section.
  Merger{*schema_, origin, values, sources}.assign(key, YAML::Mark::null_mark(), node);
  values_ = std::move(values);
  sources_ = std::move(sources);
}

const Value& Config::value(const std::string& name, Type expected) const {
  const Option* option = schema_->find(name);
  ENGRAM_CHECK(option != nullptr, "no config option '{}'", name);
  ENGRAM_CHECK(option->type == expected, "config option '{}' is {}, read as {}", name,
               type_name(option->type), type_name(expected));
  return values_.at(name);
}

const Value& Config::value_of(const std::string& name) const {
  ENGRAM_CHECK(schema_->find(name) != nullptr, "no config option '{}'", name);
  return values_.at(name);
}

int64_t Config::get_int(const std::string& name) const {
  return std::get<int64_t>(value(name, Type::Int));
}

double Config::get_float(const std::string& name) const {
  return std::get<double>(value(name, Type::Float));
}

bool Config::get_bool(const std::string& name) const {
  return std::get<bool>(value(name, Type::Bool));
}

const std::string& Config::get_string(const std::string& name) const {
  return std::get<std::string>(value(name, Type::String));
}

const std::vector<std::string>& Config::get_list(const std::string& name) const {
  return std::get<std::vector<std::string>>(value(name, Type::StringList));
}

const std::string& Config::source_of(const std::string& name) const {
  auto it = sources_.find(name);
  ENGRAM_CHECK(it != sources_.end(), "no config option '{}'", name);
  return it->second;
}

std::string Config::to_yaml(bool with_help) const {
  Tree root;
  for (const auto& [name, option] : schema_->options()) {
    Tree* node = &root;
    size_t start = 0;
    for (size_t dot = name.find('.'); dot != std::string::npos; dot = name.find('.', start)) {
      node = &node->children[name.substr(start, dot - start)];
      start = dot + 1;
    }
    Tree& leaf = node->children[name.substr(start)];
    leaf.option = &option;
    leaf.value = &values_.at(name);
  }
  std::string out;
  write_tree(root, 0, with_help, out);
  return out;
}

}  // namespace engram::config
