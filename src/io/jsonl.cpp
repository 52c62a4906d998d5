#include "io/jsonl.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <utility>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace engram::io {
namespace {

constexpr size_t kReadChunk = size_t{1} << 20;

std::string errno_text() { return std::strerror(errno); }

bool is_blank(std::string_view s) {
  for (char c : s)
    if (c != ' ' && c != '\t' && c != '\r' && c != '\f' && c != '\v') return false;
  return true;
}

// nlohmann's what() starts with "[json.exception.parse_error.101] " (or out_of_range.406 for a
// number that overflows); users need only the rest.
// For a single JSONL line its "at line 1, " is noise next to the file's own line number.
std::string parser_message(const nlohmann::json::exception& e, bool single_line) {
  std::string_view m = e.what();
  if (!m.empty() && m.front() == '[') {
    const size_t close = m.find("] ");
    if (close != std::string_view::npos) m.remove_prefix(close + 2);
  }
  constexpr std::string_view kLineOne = "parse error at line 1, ";
  if (single_line && m.substr(0, kLineOne.size()) == kLineOne) m.remove_prefix(kLineOne.size());
  return std::string(m);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// LineReader

LineReader::LineReader(std::string path) : path_(std::move(path)) {
  std::error_code ec;  // fopen opens a folder, and only the first read fails
  if (std::filesystem::is_directory(path_, ec)) core::fail("{}: a directory, expected a file", path_);
  file_ = std::fopen(path_.c_str(), "rb");
  if (!file_) core::fail("{}: cannot open: {}", path_, errno_text());
  buffer_.resize(kReadChunk);
}

LineReader::~LineReader() {
  if (file_) std::fclose(file_);
}

bool LineReader::fill() {
  if (eof_) return false;
  if (begin_ > 0) {  // keep the unread tail (a partial line) at the front
    std::memmove(buffer_.data(), buffer_.data() + begin_, end_ - begin_);
    end_ -= begin_;
    begin_ = 0;
  }
  if (end_ > kMaxLineBytes)
    core::fail("{}:{}: line longer than {} MiB", path_, line_ + 1, kMaxLineBytes >> 20);
  if (buffer_.size() - end_ < kReadChunk / 2) buffer_.resize(buffer_.size() * 2);
  const size_t want = buffer_.size() - end_;
  const size_t got = std::fread(buffer_.data() + end_, 1, want, file_);
  if (got < want) {
    if (std::ferror(file_)) core::fail("{}: read error: {}", path_, errno_text());
    eof_ = true;
  }
  end_ += got;
  bytes_read_ += static_cast<int64_t>(got);
  return got > 0;
}

bool LineReader::next(std::string_view& line) {
  if (bytes_read_ == 0 && !eof_) {
    fill();
    if (end_ >= 3 && std::memcmp(buffer_.data(), "\xEF\xBB\xBF", 3) == 0) begin_ = 3;
  }
  size_t scanned = 0;  // bytes after begin_ already known to hold no '\n'
  for (;;) {
    const char* base = buffer_.data();
    const void* newline = std::memchr(base + begin_ + scanned, '\n', end_ - begin_ - scanned);
    size_t stop;  // end of the line's content (exclusive)
    size_t resume;
    if (newline) {
      stop = static_cast<size_t>(static_cast<const char*>(newline) - base);
      resume = stop + 1;
    } else if (eof_) {
      if (begin_ == end_) return false;
      stop = resume = end_;  // last line without a final newline
    } else {
      scanned = end_ - begin_;
      fill();  // moves begin_ to 0; `scanned` stays valid relative to it
      continue;
    }
    if (stop > begin_ && base[stop - 1] == '\r') --stop;
    line = std::string_view(base + begin_, stop - begin_);
    begin_ = resume;
    ++line_;
    return true;
  }
}

// ---------------------------------------------------------------------------------------------
// JsonlReader

JsonlReader::JsonlReader(std::string path) : lines_(std::move(path)) {}

bool JsonlReader::next(nlohmann::json& out) {
  std::string_view text;
  while (lines_.next(text)) {
    if (is_blank(text)) continue;
    try {
      out = nlohmann::json::parse(text.data(), text.data() + text.size());
    } catch (const nlohmann::json::exception& e) {  // parse errors, and numbers that overflow (1e400)
      throw BadRecord(
          fmt::format("{}:{}: invalid JSON: {}", path(), line(), parser_message(e, true)));
    }
    return true;
  }
  return false;
}

void read_json_file(const std::string& path, nlohmann::json& out) {
  LineReader probe(path);  // same open error as every other reader
  std::string content;
  std::string_view line;
  while (probe.next(line)) {  // the BOM is dropped by LineReader; line breaks are kept for messages
    content.append(line);
    content.push_back('\n');
  }
  try {
    out = nlohmann::json::parse(content);
  } catch (const nlohmann::json::exception& e) {  // parse errors, and numbers that overflow (1e400)
    core::fail("{}: invalid JSON: {}", path, parser_message(e, false));
  }
}

// ---------------------------------------------------------------------------------------------
// JsonlWriter

JsonlWriter::JsonlWriter(std::string path) : path_(std::move(path)), tmp_path_(path_ + ".tmp") {
  file_ = std::fopen(tmp_path_.c_str(), "wb");
  if (!file_) core::fail("{}: cannot open for writing: {}", tmp_path_, errno_text());
}

JsonlWriter::~JsonlWriter() {
  if (file_) {  // never closed: an exception interrupted the writer, so the content is partial
    std::fclose(file_);
    std::remove(tmp_path_.c_str());
  }
}

void JsonlWriter::write(const nlohmann::json& value) {
  if (!file_) core::fail("{}: write after close", path_);
  line_ = value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  line_.push_back('\n');
  if (std::fwrite(line_.data(), 1, line_.size(), file_) != line_.size())
    core::fail("{}: write error: {}", tmp_path_, errno_text());
}

void JsonlWriter::close() {
  if (!file_) return;
  std::FILE* file = std::exchange(file_, nullptr);
  // fsync before rename: otherwise a power loss may leave the new name pointing at empty blocks.
  const bool ok = std::fflush(file) == 0 && ::fsync(fileno(file)) == 0;
  const std::string reason = ok ? "" : errno_text();
  if (std::fclose(file) != 0 || !ok) {
    std::remove(tmp_path_.c_str());
    core::fail("{}: write error: {}", tmp_path_, ok ? errno_text() : reason);
  }
  if (std::rename(tmp_path_.c_str(), path_.c_str()) != 0)
    core::fail("{}: cannot rename {} to it: {}", path_, tmp_path_, errno_text());
}

}  // namespace engram::io
