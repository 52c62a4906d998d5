#pragma once
// Line-oriented text input and JSON-lines files.
//
// LineReader and BadRecord are shared with io/csv (a CSV record is built from physical lines); they
// live here because JSON lines are the simplest client of both.
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "core/error.h"

namespace engram::io {

// One malformed record (a JSONL line, a CSV record, a row a dataset reader rejects). The reader
// that throws it has already moved past the record, so a caller may catch it, count it and read on.
// Other UserErrors (cannot open, unterminated quote, read error) end the file.
class BadRecord : public core::UserError {
 public:
  using core::UserError::UserError;
};

// Reads a file one physical line at a time through a large buffer (fread of 1 MiB chunks, no
// per-character stream calls), so readers on top of it run at close to disk speed.
class LineReader {
 public:
  // Lines longer than this are a UserError rather than an attempt to buffer gigabytes.
  static constexpr size_t kMaxLineBytes = size_t{256} << 20;

  explicit LineReader(std::string path);  // UserError "FILE: cannot open: <reason>"
  ~LineReader();
  LineReader(const LineReader&) = delete;
  LineReader& operator=(const LineReader&) = delete;

  // The next line without its "\n" or "\r\n". The view stays valid until the next call.
  // A UTF-8 byte order mark at the start of the file is not part of line 1.
  bool next(std::string_view& line);
  int64_t line() const { return line_; }  // 1-based number of the line last returned
  int64_t bytes_read() const { return bytes_read_; }
  const std::string& path() const { return path_; }

 private:
  bool fill();  // moves the unread tail to the front and reads more; false at end of file

  std::string path_;
  std::FILE* file_ = nullptr;
  std::vector<char> buffer_;
  size_t begin_ = 0;  // first unread byte
  size_t end_ = 0;    // one past the last valid byte
  bool eof_ = false;
  int64_t line_ = 0;
  int64_t bytes_read_ = 0;
};

// Streams JSON values, one per non-blank line.
class JsonlReader {
 public:
  explicit JsonlReader(std::string path);

  // Parses the next non-blank line into `out`; false at end of file. A malformed line throws
  // BadRecord "FILE:LINE: invalid JSON: <parser message>" (the reader then stands after that line).
  bool next(nlohmann::json& out);
  int64_t line() const { return lines_.line(); }  // 1-based line of the value last returned
  int64_t bytes_read() const { return lines_.bytes_read(); }
  const std::string& path() const { return lines_.path(); }

 private:
  LineReader lines_;
};

// Parses a whole JSON file (e.g. SQuAD). A syntax error throws UserError
// "FILE: invalid JSON: parse error at line L, column C: <what>".
void read_json_file(const std::string& path, nlohmann::json& out);

// Writes one JSON value per line to PATH.tmp; close() flushes, syncs and renames it to PATH, so
// PATH only ever holds a complete file. Destroying an unclosed writer deletes PATH.tmp: a
// half-written file is never left behind under either name by an exception.
class JsonlWriter {
 public:
  explicit JsonlWriter(std::string path);  // UserError "FILE.tmp: cannot open for writing: ..."
  ~JsonlWriter();
  JsonlWriter(const JsonlWriter&) = delete;
  JsonlWriter& operator=(const JsonlWriter&) = delete;

  // Compact one-line dump. Strings that are not valid UTF-8 are written with U+FFFD in place of the
  // bad bytes (CSV input is not validated, and one odd byte must not lose the whole file).
  void write(const nlohmann::json& value);
  void close();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::string tmp_path_;
  std::FILE* file_ = nullptr;
  std::string line_;  // reused serialisation buffer
};

}  // namespace engram::io
