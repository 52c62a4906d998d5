#include "io/csv.h"

#include <utility>

#include <fmt/format.h>
#include <fmt/ranges.h>  // fmt::join

namespace engram::io {

CsvReader::CsvReader(std::string path) : lines_(std::move(path)) {
  if (!read_record(header_)) core::fail("{}: empty file (expected a header row)", this->path());
}

bool CsvReader::read_record(std::vector<std::string>& fields) {
  std::string_view text;
  do {  // empty lines between records carry no record
    if (!lines_.next(text)) return false;
  } while (text.empty());
  record_line_ = lines_.line();
  fields.clear();

  enum class State { FieldStart, Unquoted, Quoted, QuoteInQuoted };
  State state = State::FieldStart;
  std::string field;
  int64_t quote_line = 0;  // where the open quote started, for the unterminated-quote message
  for (;;) {
    for (const char c : text) {
      switch (state) {
        case State::FieldStart:
          if (c == '"') {
            state = State::Quoted;
            quote_line = lines_.line();
          } else if (c == ',') {
            fields.push_back(std::move(field));
            field.clear();
          } else {
            field.push_back(c);
            state = State::Unquoted;
          }
          break;
        case State::Unquoted:
          if (c == ',') {
            fields.push_back(std::move(field));
            field.clear();
            state = State::FieldStart;
          } else {
            field.push_back(c);
          }
          break;
        case State::Quoted:
          if (c == '"')
            state = State::QuoteInQuoted;
          else
            field.push_back(c);
          break;
        case State::QuoteInQuoted:  // the previous quote either escaped this one or closed the
                                    // field
          if (c == '"') {
            field.push_back('"');
            state = State::Quoted;
          } else if (c == ',') {
            fields.push_back(std::move(field));
            field.clear();
            state = State::FieldStart;
          } else {
            field.push_back(c);
            state = State::Unquoted;
          }
          break;
      }
    }
    if (state != State::Quoted) break;
    // The line break is inside quotes: it belongs to the field and the record goes on.
    if (!lines_.next(text))
      core::fail("{}:{}: unterminated quoted field (the quote opened on this line never closes)",
                 path(), quote_line);
    field.push_back('\n');
  }
  fields.push_back(std::move(field));
  return true;
}

bool CsvReader::next(std::vector<std::string>& fields) {
  if (!read_record(fields)) return false;
  if (fields.size() != header_.size())
    throw BadRecord(fmt::format("{}:{}: expected {} fields, found {}", path(), record_line_,
                                header_.size(), fields.size()));
  return true;
}

std::optional<size_t> CsvReader::find_column(std::string_view name) const {
  for (size_t i = 0; i < header_.size(); ++i)
    if (header_[i] == name) return i;
  return std::nullopt;
}

size_t CsvReader::column(std::string_view name) const {
  if (const auto index = find_column(name)) return *index;
  core::fail("{}: missing column '{}' (columns: {})", path(), name, fmt::join(header_, ", "));
}

}  // namespace engram::io
