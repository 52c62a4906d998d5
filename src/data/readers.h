#pragma once
// Dataset readers: every supported file becomes a stream of Documents (DESIGN.md, "Files users
// keep"; answer rules from specs/mac.md section 5, items 4 and 5).
//
//  Format          file                      one Document per   id
//  Jsonl           native .jsonl             line               "id" field
//  StreamingQaCsv  .csv: text,question,      row                "id" column, else "row-<n>" (n =
//                  answers                                      0-based data row, as pandas counts)
//  ArchivalQaCsv   .csv: question,answer,    row                "<doc_id>-<para_num>"
//                  ans_paragraph|ans_text,
//                  doc_id,para_num
//  SquadJson       SQuAD v1.1 .json          paragraph          "<title>-<i>", i = 0-based index of
//                                                               the paragraph within its article
//
// Answers (QA::answers[0] is the reference that is scored):
//  - StreamingQA: the '\'-separated answers, all kept, the shortest (in characters; the first of
//    equal ones) moved to the front, the others in file order. Empty pieces are dropped.
//  - ArchivalQA: `answer` with its first letter upper-cased.
//  - SQuAD: the distinct answer texts, the shortest first, each with its first letter upper-cased.
//  - Native JSONL: as written.
//  Upper-casing touches ASCII letters only. Every QA has at least one answer; a row without one is
//  a bad row.
// Time: native "time" (integer seconds, optional); CSVs take a `publication_date` or `time` column
// when it holds a number (else no time); SQuAD has none.
// Rows repeating a passage (ArchivalQA, several questions on one paragraph) give repeated
// Documents with the same id: MAC amortizes each row and does not deduplicate the bank.
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "data/document.h"

namespace engram::data {

enum class Format { Jsonl, StreamingQaCsv, ArchivalQaCsv, SquadJson };

std::string_view format_name(Format format);  // "jsonl", "streamingqa-csv", ...

// By extension, then content: .jsonl/.ndjson -> Jsonl; .json -> SquadJson when it is a SQuAD v1.1
// file (a "data" array of articles with "paragraphs"); .csv -> by the header's columns. Anything
// else is a UserError listing what is accepted.
Format detect_format(const std::string& path);

struct ReadOptions {
  // Bad rows (malformed JSON, wrong field count, missing or mistyped fields, no answers) are
  // counted and skipped instead of ending the read with a UserError.
  bool skip_bad_rows = false;
  // ArchivalQA: read the whole article (`ans_text`) instead of the answer paragraph.
  bool archival_full_passage = false;
  // A document's text longer than this is a bad row (data.max_document_mb).
  double max_document_bytes = 8e6;
};

struct ReadStats {
  int64_t rows = 0;       // records seen: JSONL lines, CSV rows, SQuAD paragraphs (bad ones too)
  int64_t documents = 0;  // Documents returned
  int64_t questions = 0;  // QA pairs in them
  int64_t bad_rows = 0;
  std::vector<std::string> first_errors;  // the messages of the first kMaxErrors bad rows
  static constexpr size_t kMaxErrors = 5;
};

// Streams Documents. JSONL and CSV are read in constant memory; a SQuAD file is parsed whole (the
// format is one JSON value; the largest split is ~40 MB).
class DocumentReader {
 public:
  DocumentReader(const std::string& path, const ReadOptions& options = {});  // detect_format
  DocumentReader(const std::string& path, Format format, const ReadOptions& options = {});
  ~DocumentReader();
  DocumentReader(DocumentReader&&) noexcept;
  DocumentReader& operator=(DocumentReader&&) noexcept;

  // The next Document; false at the end. Bad rows throw UserError "FILE:LINE: <what>" (SQuAD:
  // "FILE: data[i].paragraphs[j]...: <what>") unless options.skip_bad_rows.
  bool next(Document& doc);

  Format format() const;
  const ReadStats& stats() const;
  int64_t bytes_read() const;  // bytes of the file consumed so far

  class Source;  // one per format, in readers.cpp

 private:
  std::unique_ptr<Source> source_;
};

// Reads the whole file; `stats`, when given, receives the reader's counts.
// Every document of several files, in order.
std::vector<Document> read_files(const std::vector<std::string>& paths, const ReadOptions& options = {});
std::vector<Document> read_all(const std::string& path, const ReadOptions& options = {},
                               ReadStats* stats = nullptr);

}  // namespace engram::data
