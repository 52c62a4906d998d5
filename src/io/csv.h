#pragma once
// RFC 4180 CSV reading, as written by pandas and Python's csv module.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "io/jsonl.h"  // LineReader, BadRecord

namespace engram::io {

// Reads the header row on construction, then one record per next().
//  - Fields are separated by ',' and may be quoted with '"'; inside quotes "" is one quote, and
//    commas and line breaks are data (a record may span several lines; embedded line breaks are
//    returned as "\n" whatever the file used).
//  - LF and CRLF line ends; a UTF-8 byte order mark at the start is skipped; empty lines between
//    records are skipped (as pandas does).
//  - Lenient like Python's csv module where RFC 4180 is silent: a quote inside an unquoted field is
//    kept as data, and text after a closing quote is appended to the field.
class CsvReader {
 public:
  explicit CsvReader(std::string path);  // UserError if the file cannot be opened or is empty

  // The next record; false at end of file. A record whose field count differs from the header's
  // throws BadRecord "FILE:LINE: expected N fields, found M" (the reader stands after it).
  // A quote that never closes throws UserError naming the line where it opened.
  bool next(std::vector<std::string>& fields);

  const std::vector<std::string>& header() const { return header_; }
  std::optional<size_t> find_column(std::string_view name) const;
  // Index of a header column, or UserError "FILE: missing column 'x' (columns: a, b, c)".
  size_t column(std::string_view name) const;

  int64_t line() const { return record_line_; }  // line on which the last record started
  int64_t bytes_read() const { return lines_.bytes_read(); }
  const std::string& path() const { return lines_.path(); }

 private:
  bool read_record(std::vector<std::string>& fields);  // no field-count check

  LineReader lines_;
  std::vector<std::string> header_;
  int64_t record_line_ = 0;
};

}  // namespace engram::io
