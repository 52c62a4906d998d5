#pragma once
// The test stream every contender of `engram eval` sees: its documents in stream order and the
// questions scored on it, picked once, so every contender answers exactly the same questions.
#include <cstdint>
#include <string>
#include <vector>

#include "data/document.h"

namespace engram::eval {

struct StreamQuestion {
  const data::QA* qa = nullptr;  // points into the stream's documents
  int64_t gold_row = -1;         // stream position of the document that answers it (-1: unknown)
};

struct Stream {
  std::string source;                    // the file it was read from (for messages and results)
  std::vector<data::Document> documents;  // in stream order
  std::vector<StreamQuestion> questions;  // the questions of the table (questions_about(0, N))
  int64_t max_questions = 0;              // the limit the questions were picked with (0 = all)

  int64_t size() const { return static_cast<int64_t>(documents.size()); }
  // Questions about documents [first, first + count): every question with an answer, or, above
  // max_questions, that many spread evenly over them. Deterministic: every rank and every
  // contender gets the same list.
  std::vector<StreamQuestion> questions_about(int64_t first, int64_t count) const;
  // One document per question (its text, and that question alone), for prompt-based answering.
  std::vector<data::Document> question_documents(const std::vector<StreamQuestion>& questions) const;
  // Mean text bytes of a document (what context-in-prompt stores per document).
  double mean_text_bytes() const;
};

// The first `max_documents` (0 = all) documents of `documents`; questions picked as above. No
// documents, or no question with an answer -> core::UserError naming `source`.
Stream make_stream(std::vector<data::Document> documents, const std::string& source, int64_t max_documents,
                   int64_t max_questions);

}  // namespace engram::eval
