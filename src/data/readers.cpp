#include "data/readers.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <limits>
#include <optional>
#include <tuple>
#include <type_traits>
#include <utility>

#include <fmt/format.h>
#include <fmt/ranges.h>  // fmt::join
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/csv.h"
#include "io/jsonl.h"

namespace engram::data {

using nlohmann::json;

namespace {

constexpr std::string_view kAccepted =
    "accepted: .jsonl (native documents), .json (SQuAD v1.1), .csv (StreamingQA: text, question, "
    "answers; ArchivalQA: question, answer, ans_paragraph or ans_text, doc_id, para_num)";

bool ends_with_ignoring_case(std::string_view s, std::string_view suffix) {
  if (s.size() < suffix.size()) return false;
  return std::equal(suffix.begin(), suffix.end(), s.end() - suffix.size(), [](char a, char b) {
    return a == (b >= 'A' && b <= 'Z' ? static_cast<char>(b - 'A' + 'a') : b);
  });
}

bool is_blank(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
  });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_blank(s.substr(0, 1))) s.remove_prefix(1);
  while (!s.empty() && is_blank(s.substr(s.size() - 1))) s.remove_suffix(1);
  return s;
}

// Python's len(): code points, i.e. bytes that do not continue a UTF-8 sequence.
size_t utf8_length(std::string_view s) {
  return static_cast<size_t>(
      std::count_if(s.begin(), s.end(), [](char c) { return (c & 0xC0) != 0x80; }));
}

// MAC's s[0].upper() + s[1:], for ASCII letters (a non-ASCII first letter is left as it is).
std::string upper_first(std::string s) {
  if (!s.empty() && s[0] >= 'a' && s[0] <= 'z') s[0] = static_cast<char>(s[0] - 'a' + 'A');
  return s;
}

// MAC scores against min(answers, key=len): move that one (the first of equal lengths) to the
// front and keep the others, in order, for max-over-references metrics.
void put_shortest_first(std::vector<std::string>& answers) {
  const auto shortest = std::min_element(
      answers.begin(), answers.end(),
      [](const std::string& a, const std::string& b) { return utf8_length(a) < utf8_length(b); });
  if (shortest != answers.end()) std::rotate(answers.begin(), shortest, shortest + 1);
}

// A number of seconds; pandas writes integer columns with gaps as floats ("1577836800.0").
// A time field: seconds since 1970-01-01 UTC (integer or decimal, as StreamingQA writes it), or an
// ISO 8601 date "YYYY-MM-DD", optionally with "THH:MM:SS" (or a space) and a trailing "Z".
// nullopt when it is neither; the caller says which row.
std::optional<int64_t> parse_time(std::string_view s) {
  int64_t value = 0;
  const auto [end, error] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (error == std::errc() && end == s.data() + s.size()) return value;
  const std::string copy(s);  // strtod and strptime need a terminated string
  char* stop = nullptr;
  const double d = std::strtod(copy.c_str(), &stop);
  if (stop == copy.c_str() + copy.size() && std::isfinite(d) && std::fabs(d) <= 9.2e18)
    return static_cast<int64_t>(std::floor(d));
  for (const char* format : {"%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%SZ"}) {
    std::tm tm{};
    const char* rest = strptime(copy.c_str(), format, &tm);
    if (rest && *rest == '\0') return static_cast<int64_t>(timegm(&tm));
  }
  return std::nullopt;
}

// A field's name for messages: a string, or a callable that builds one ("qa[2].answers[0]") only
// when a message needs it, so that good rows cost no formatting.
template <typename Name>
std::string field_name(const Name& name) {
  if constexpr (std::is_invocable_v<const Name&>)
    return name();
  else
    return std::string(name);
}

// Checks on one row of JSON input; every failure is a BadRecord prefixed with the row's place:
// "FILE:LINE" for JSONL, "FILE: data[i].paragraphs[j]" for SQuAD.
class RowCheck {
 public:
  RowCheck(const std::string& file, int64_t line) : file_(file), line_(line) {}
  RowCheck(const std::string& file, std::string location)
      : file_(file), location_(std::move(location)) {}

  template <typename... Args>
  [[noreturn]] void bad(fmt::format_string<Args...> format, Args&&... args) const {
    const std::string where = location_.empty() ? fmt::format("{}:{}", file_, line_)
                                                : fmt::format("{}: {}", file_, location_);
    throw io::BadRecord(where + ": " + fmt::format(format, std::forward<Args>(args)...));
  }

  // obj[key], or nullptr when absent or null (null is how Python writes a missing value).
  json* optional(json& obj, const char* key) const {
    const auto it = obj.find(key);
    return it == obj.end() || it->is_null() ? nullptr : &*it;
  }
  template <typename Name>
  json& required(json& obj, const char* key, const Name& name) const {
    json* value = optional(obj, key);
    if (!value) bad("missing field '{}'", field_name(name));
    return *value;
  }
  template <typename Name>
  void expect(const json& value, json::value_t type, const Name& name) const {
    if (value.type() != type)
      bad("field '{}' must be {}, found {}", field_name(name), article(type), value.type_name());
  }
  template <typename Name>
  std::string& string(json& value, const Name& name) const {
    expect(value, json::value_t::string, name);
    return value.get_ref<std::string&>();
  }
  // A document's text: not blank, and within ReadOptions::max_document_bytes (one huge row must
  // not pass for a document: it is a file read into the wrong field, or a book to split).
  void document_text(const std::string& text, const char* field, const ReadOptions& options) const {
    if (is_blank(trim(text))) bad("the document text ('{}') is empty", field);
    if (static_cast<double>(text.size()) > options.max_document_bytes)
      bad("the document text ('{}') is {:.1f} MB, over data.max_document_mb = {} (split it, or raise the limit)",
          field, text.size() / 1e6, options.max_document_bytes / 1e6);
  }
  template <typename Name>
  void non_empty_array(const json& value, const Name& name) const {
    expect(value, json::value_t::array, name);
    if (value.empty())
      bad("field '{}' must be a non-empty array, found an empty one", field_name(name));
  }

 private:
  static std::string_view article(json::value_t type) {
    switch (type) {
      case json::value_t::string: return "a string";
      case json::value_t::array: return "an array";
      case json::value_t::object: return "an object";
      case json::value_t::boolean: return "a boolean";
      default: return "of another type";
    }
  }
  const std::string& file_;
  int64_t line_ = 0;
  std::string location_;
};

// The shape detect_format and the SQuAD reader accept: {"data": [{"paragraphs": [...]}, ...]}.
bool looks_like_squad(const json& root) {
  if (!root.is_object()) return false;
  const auto data = root.find("data");
  if (data == root.end() || !data->is_array()) return false;
  if (data->empty()) return true;
  const json& first = data->front();
  return first.is_object() && first.contains("paragraphs") && first["paragraphs"].is_array();
}

std::optional<Format> csv_format_from_header(const io::CsvReader& csv) {
  const auto has = [&](std::string_view name) { return csv.find_column(name).has_value(); };
  if (has("text") && has("question") && has("answers")) return Format::StreamingQaCsv;
  if (has("question") && has("answer") && (has("ans_paragraph") || has("ans_text")) &&
      has("doc_id"))
    return Format::ArchivalQaCsv;
  return std::nullopt;
}

// detect_format; `inspect_json` = false trusts a .json extension because the SQuAD reader checks
// the content itself (and parsing a big file twice would be wasteful).
Format detect(const std::string& path, bool inspect_json) {
  if (ends_with_ignoring_case(path, ".jsonl") || ends_with_ignoring_case(path, ".ndjson"))
    return Format::Jsonl;
  if (ends_with_ignoring_case(path, ".json")) {
    if (inspect_json) {
      json root;
      io::read_json_file(path, root);
      if (!looks_like_squad(root))
        core::fail(
            "{}: not a SQuAD v1.1 file (expected a \"data\" array of articles with "
            "\"paragraphs\"); {}",
            path, kAccepted);
    }
    return Format::SquadJson;
  }
  if (ends_with_ignoring_case(path, ".csv")) {
    const io::CsvReader csv(path);
    if (const auto format = csv_format_from_header(csv)) return *format;
    core::fail("{}: unrecognised CSV columns ({}); {}", path, fmt::join(csv.header(), ", "),
               kAccepted);
  }
  core::fail("{}: unknown data file type; {}", path, kAccepted);
}

}  // namespace

std::string_view format_name(Format format) {
  switch (format) {
    case Format::Jsonl: return "jsonl";
    case Format::StreamingQaCsv: return "streamingqa-csv";
    case Format::ArchivalQaCsv: return "archivalqa-csv";
    case Format::SquadJson: return "squad-json";
  }
  return "unknown";
}

Format detect_format(const std::string& path) { return detect(path, true); }

// ---------------------------------------------------------------------------------------------
// Sources: one per format. read() converts one record and throws io::BadRecord for a bad one,
// having moved past it; next() applies the skip policy and keeps the counts.

class DocumentReader::Source {
 public:
  Source(Format format, const ReadOptions& options) : format_(format), options_(options) {}
  virtual ~Source() = default;

  bool next(Document& doc) {
    for (;;) {
      try {
        if (!read(doc)) return false;
      } catch (const io::BadRecord& e) {
        if (!options_.skip_bad_rows) throw;
        ++stats_.rows;
        ++stats_.bad_rows;
        if (stats_.first_errors.size() < ReadStats::kMaxErrors)
          stats_.first_errors.push_back(e.what());
        continue;
      }
      ++stats_.rows;
      ++stats_.documents;
      stats_.questions += static_cast<int64_t>(doc.qa.size());
      return true;
    }
  }

  Format format() const { return format_; }
  const ReadStats& stats() const { return stats_; }
  virtual int64_t bytes_read() const = 0;

 protected:
  virtual bool read(Document& doc) = 0;
  const ReadOptions& options() const { return options_; }

 private:
  Format format_;
  ReadOptions options_;
  ReadStats stats_;
};

namespace {

// {"id": str, "text": str, "time": int?, "qa": [{"question": str, "answers": [str, ...], "heldout": bool?}]?}
class JsonlSource final : public DocumentReader::Source {
 public:
  JsonlSource(const std::string& path, const ReadOptions& options)
      : Source(Format::Jsonl, options), reader_(path) {}
  int64_t bytes_read() const override { return reader_.bytes_read(); }

 protected:
  bool read(Document& doc) override {
    if (!reader_.next(row_)) return false;
    const RowCheck at(reader_.path(), reader_.line());
    if (!row_.is_object()) at.bad("expected a JSON object, found {}", row_.type_name());
    // Strings are moved out of the parsed row: it is rebuilt for the next line anyway.
    doc.id = std::move(at.string(at.required(row_, "id", "id"), "id"));
    doc.text = std::move(at.string(at.required(row_, "text", "text"), "text"));
    at.document_text(doc.text, "text", options());
    doc.time.reset();
    if (const json* time = at.optional(row_, "time")) {
      if (!time->is_number_integer() ||
          (time->is_number_unsigned() &&
           time->get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())))
        at.bad("field 'time' must be an integer (seconds since the epoch), found {}",
               time->type_name());
      doc.time = time->get<int64_t>();
    }
    doc.qa.clear();
    if (json* qas = at.optional(row_, "qa")) {
      at.expect(*qas, json::value_t::array, "qa");
      doc.qa.reserve(qas->size());
      for (size_t i = 0; i < qas->size(); ++i) {
        json& item = (*qas)[i];
        const auto name = [i](const char* member) {
          return [i, member] { return fmt::format("qa[{}]{}", i, member); };
        };
        at.expect(item, json::value_t::object, name(""));
        QA qa;
        qa.question = std::move(
            at.string(at.required(item, "question", name(".question")), name(".question")));
        json& answers = at.required(item, "answers", name(".answers"));
        at.non_empty_array(answers, name(".answers"));
        for (size_t k = 0; k < answers.size(); ++k)
          qa.answers.push_back(std::move(
              at.string(answers[k], [i, k] { return fmt::format("qa[{}].answers[{}]", i, k); })));
        // Synthetic-world marker of a held-out paraphrase question (data/synth.h).
        if (const json* heldout = at.optional(item, "heldout")) {
          at.expect(*heldout, json::value_t::boolean, name(".heldout"));
          qa.heldout = heldout->get<bool>();
        }
        doc.qa.push_back(std::move(qa));
      }
    }
    return true;
  }

 private:
  io::JsonlReader reader_;
  json row_;
};

// What the two CSV formats share: the reader, the optional time column, the row count.
class CsvSource : public DocumentReader::Source {
 public:
  CsvSource(const std::string& path, Format format, const ReadOptions& options)
      : Source(format, options), csv_(path) {
    time_ = csv_.find_column("publication_date");
    if (!time_) time_ = csv_.find_column("time");
  }
  int64_t bytes_read() const override { return csv_.bytes_read(); }

 protected:
  // The next row into fields_; data_row_ becomes its 0-based index (bad rows included).
  bool next_row() {
    data_row_ = next_data_row_++;
    return csv_.next(fields_);
  }
  RowCheck check() const { return RowCheck(csv_.path(), csv_.line()); }
  // The row's time; an empty field has none, a field that is not a time is a bad row.
  std::optional<int64_t> time() const {
    if (!time_) return std::nullopt;
    const std::string_view field = trim(fields_[*time_]);
    if (field.empty()) return std::nullopt;
    const std::optional<int64_t> seconds = parse_time(field);
    if (!seconds)
      check().bad("column '{}': '{}' is not a time (expected seconds since 1970-01-01, or a date YYYY-MM-DD, "
                  "optionally THH:MM:SS)", csv_.header()[*time_], field);
    return seconds;
  }

  io::CsvReader csv_;
  std::vector<std::string> fields_;  // always header().size() long after next_row()
  int64_t data_row_ = 0;

 private:
  std::optional<size_t> time_;
  int64_t next_data_row_ = 0;
};

// StreamingQA (CaMeLS CSVs): text, question, answers ('\'-separated).
class StreamingQaSource final : public CsvSource {
 public:
  StreamingQaSource(const std::string& path, const ReadOptions& options)
      : CsvSource(path, Format::StreamingQaCsv, options),
        text_(csv_.column("text")),
        question_(csv_.column("question")),
        answers_(csv_.column("answers")),
        id_(csv_.find_column("id")) {}

 protected:
  bool read(Document& doc) override {
    if (!next_row()) return false;
    QA qa;
    qa.question = std::move(fields_[question_]);
    const std::string_view answers = fields_[answers_];
    for (size_t start = 0; start <= answers.size();) {
      const size_t stop = std::min(answers.find('\\', start), answers.size());
      const std::string_view piece = answers.substr(start, stop - start);
      if (!is_blank(piece)) qa.answers.emplace_back(piece);
      start = stop + 1;
    }
    if (qa.answers.empty()) check().bad("column 'answers' holds no answer");
    put_shortest_first(qa.answers);
    doc.id = id_ ? std::move(fields_[*id_]) : fmt::format("row-{}", data_row_);
    doc.text = std::move(fields_[text_]);
    check().document_text(doc.text, "text", options());
    doc.time = time();
    doc.qa.clear();
    doc.qa.push_back(std::move(qa));
    return true;
  }

 private:
  size_t text_, question_, answers_;
  std::optional<size_t> id_;
};

// ArchivalQA (CaMeLS' rebuild): question, answer, ans_paragraph or ans_text, doc_id, para_num.
class ArchivalQaSource final : public CsvSource {
 public:
  ArchivalQaSource(const std::string& path, const ReadOptions& options)
      : CsvSource(path, Format::ArchivalQaCsv, options),
        question_(csv_.column("question")),
        answer_(csv_.column("answer")),
        passage_(csv_.column(options.archival_full_passage ? "ans_text" : "ans_paragraph")),
        doc_id_(csv_.column("doc_id")),
        para_num_(csv_.column("para_num")) {}

 protected:
  bool read(Document& doc) override {
    if (!next_row()) return false;
    if (is_blank(fields_[answer_])) check().bad("column 'answer' is empty");
    QA qa;
    qa.question = std::move(fields_[question_]);
    qa.answers.push_back(upper_first(std::move(fields_[answer_])));
    doc.id = fmt::format("{}-{}", fields_[doc_id_], fields_[para_num_]);
    doc.text = std::move(fields_[passage_]);
    check().document_text(doc.text, "passage", options());
    doc.time = time();
    doc.qa.clear();
    doc.qa.push_back(std::move(qa));
    return true;
  }

 private:
  size_t question_, answer_, passage_, doc_id_, para_num_;
};

// SQuAD v1.1: {"data": [{"title", "paragraphs": [{"context", "qas": [{"question", "answers":
// [{"text"}]}]}]}]}. One Document per paragraph; the file is parsed whole.
class SquadSource final : public DocumentReader::Source {
 public:
  SquadSource(const std::string& path, const ReadOptions& options)
      : Source(Format::SquadJson, options), path_(path) {
    io::read_json_file(path, root_);
    if (!looks_like_squad(root_))
      core::fail(
          "{}: not a SQuAD v1.1 file (expected a \"data\" array of articles with "
          "\"paragraphs\")",
          path);
    std::error_code error;  // the file was just read whole, so its size is what was consumed
    bytes_ = static_cast<int64_t>(std::filesystem::file_size(path, error));
    if (error) bytes_ = 0;
  }
  int64_t bytes_read() const override { return bytes_; }

 protected:
  bool read(Document& doc) override {
    json& articles = root_["data"];
    while (article_ < articles.size()) {
      json* paragraphs = nullptr;
      std::string title;
      try {
        std::tie(paragraphs, title) = open_article(articles[article_]);
      } catch (const io::BadRecord&) {
        next_article();  // the whole article is unusable; go on after it
        throw;
      }
      if (paragraph_ >= paragraphs->size()) {
        next_article();
        continue;
      }
      const size_t p = paragraph_++;
      read_paragraph((*paragraphs)[p], fmt::format("data[{}].paragraphs[{}]", article_, p), doc);
      doc.id = fmt::format("{}-{}", title, p);
      return true;
    }
    return false;
  }

 private:
  std::pair<json*, std::string> open_article(json& article) const {
    const RowCheck at(path_, fmt::format("data[{}]", article_));
    if (!article.is_object()) at.bad("expected an object, found {}", article.type_name());
    std::string title = at.string(at.required(article, "title", "title"), "title");
    json& paragraphs = at.required(article, "paragraphs", "paragraphs");
    at.expect(paragraphs, json::value_t::array, "paragraphs");
    return {&paragraphs, std::move(title)};
  }

  void read_paragraph(json& paragraph, const std::string& where, Document& doc) const {
    const RowCheck at(path_, where);
    if (!paragraph.is_object()) at.bad("expected an object, found {}", paragraph.type_name());
    doc.text = at.string(at.required(paragraph, "context", "context"), "context");
    at.document_text(doc.text, "context", options());
    doc.time.reset();
    doc.qa.clear();
    json* qas = at.optional(paragraph, "qas");
    if (!qas) return;
    at.expect(*qas, json::value_t::array, "qas");
    for (size_t i = 0; i < qas->size(); ++i) {
      json& item = (*qas)[i];
      const auto name = [i](const char* member) {
        return [i, member] { return fmt::format("qas[{}]{}", i, member); };
      };
      at.expect(item, json::value_t::object, name(""));
      QA qa;
      qa.question = at.string(at.required(item, "question", name(".question")), name(".question"));
      json& answers = at.required(item, "answers", name(".answers"));
      at.non_empty_array(answers, name(".answers"));
      for (size_t k = 0; k < answers.size(); ++k) {
        const auto answer_name = [i, k](const char* member) {
          return [i, k, member] { return fmt::format("qas[{}].answers[{}]{}", i, k, member); };
        };
        at.expect(answers[k], json::value_t::object, answer_name(""));
        std::string text = upper_first(
            at.string(at.required(answers[k], "text", answer_name(".text")), answer_name(".text")));
        // Annotators often agree: keep each text once.
        if (!is_blank(text) &&
            std::find(qa.answers.begin(), qa.answers.end(), text) == qa.answers.end())
          qa.answers.push_back(std::move(text));
      }
      if (qa.answers.empty()) at.bad("field 'qas[{}].answers' holds only empty texts", i);
      put_shortest_first(qa.answers);
      doc.qa.push_back(std::move(qa));
    }
  }

  void next_article() {
    ++article_;
    paragraph_ = 0;
  }

  std::string path_;
  json root_;
  size_t article_ = 0;
  size_t paragraph_ = 0;
  int64_t bytes_ = 0;
};

std::unique_ptr<DocumentReader::Source> make_source(const std::string& path, Format format,
                                                    const ReadOptions& options) {
  switch (format) {
    case Format::Jsonl: return std::make_unique<JsonlSource>(path, options);
    case Format::StreamingQaCsv: return std::make_unique<StreamingQaSource>(path, options);
    case Format::ArchivalQaCsv: return std::make_unique<ArchivalQaSource>(path, options);
    case Format::SquadJson: return std::make_unique<SquadSource>(path, options);
  }
  core::fail("{}: unknown format", path);
}

}  // namespace

// ---------------------------------------------------------------------------------------------

DocumentReader::DocumentReader(const std::string& path, const ReadOptions& options)
    : DocumentReader(path, detect(path, false), options) {}

DocumentReader::DocumentReader(const std::string& path, Format format, const ReadOptions& options)
    : source_(make_source(path, format, options)) {}

DocumentReader::~DocumentReader() = default;
DocumentReader::DocumentReader(DocumentReader&&) noexcept = default;
DocumentReader& DocumentReader::operator=(DocumentReader&&) noexcept = default;

bool DocumentReader::next(Document& doc) { return source_->next(doc); }
Format DocumentReader::format() const { return source_->format(); }
const ReadStats& DocumentReader::stats() const { return source_->stats(); }
int64_t DocumentReader::bytes_read() const { return source_->bytes_read(); }

std::vector<Document> read_all(const std::string& path, const ReadOptions& options,
                               ReadStats* stats) {
  DocumentReader reader(path, options);
  std::vector<Document> documents;
  Document doc;
  while (reader.next(doc)) documents.push_back(std::move(doc));
  if (stats) *stats = reader.stats();
  return documents;
}

std::vector<Document> read_files(const std::vector<std::string>& paths, const ReadOptions& options) {
  std::vector<Document> documents;
  for (const auto& path : paths) {
    auto part = read_all(path, options);
    documents.insert(documents.end(), std::make_move_iterator(part.begin()), std::make_move_iterator(part.end()));
  }
  return documents;
}

}  // namespace engram::data
