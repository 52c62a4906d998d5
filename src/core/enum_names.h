#pragma once
// Strings that select a behaviour (a schedule, a kind of positions, a decoding strategy) become
// enums once, where they are parsed (config, model files); the code that acts on them switches
// on the enum. Each enum lists its names once, in a specialisation of EnumNames:
//
//   template <> struct core::EnumNames<Schedule::Kind> {
//     static constexpr std::pair<Schedule::Kind, const char*> names[] = {{Kind::Constant, "constant"}, ...};
//   };
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"

namespace engram::core {

template <typename E>
struct EnumNames;

template <typename E>
const char* name_of(E value) {
  for (const auto& [v, name] : EnumNames<E>::names)
    if (v == value) return name;
  throw InternalError("an enum value without a name");
}

template <typename E>
std::vector<std::string> enum_choices() {
  std::vector<std::string> out;
  for (const auto& entry : EnumNames<E>::names) out.emplace_back(entry.second);
  return out;
}

// `key` names the option or field in the error: "train.schedule: expected one of constant, linear,
// cosine, got 'triangle'".
template <typename E>
E parse_enum(const std::string& text, const std::string& key) {
  for (const auto& [v, name] : EnumNames<E>::names)
    if (text == name) return v;
  std::string choices;
  for (const auto& c : enum_choices<E>()) choices += (choices.empty() ? "" : ", ") + c;
  fail("{}: expected one of {}, got '{}'", key, choices, text);
}

}  // namespace engram::core
