#include "eval/stream.h"

#include "core/error.h"

namespace engram::eval {

std::vector<StreamQuestion> Stream::questions_about(int64_t first, int64_t count) const {
  std::vector<StreamQuestion> all;
  for (int64_t row = first; row < first + count && row < size(); ++row)
    for (const auto& qa : documents[static_cast<size_t>(row)].qa)
      if (!qa.answers.empty()) all.push_back(StreamQuestion{&qa, row});
  const auto available = static_cast<int64_t>(all.size());
  if (max_questions <= 0 || available <= max_questions) return all;
  std::vector<StreamQuestion> out;
  for (int64_t i = 0; i < max_questions; ++i) out.push_back(all[static_cast<size_t>(i * available / max_questions)]);
  return out;
}

std::vector<data::Document> Stream::question_documents(const std::vector<StreamQuestion>& picked) const {
  std::vector<data::Document> out;
  out.reserve(picked.size());
  for (const auto& q : picked) {
    data::Document d = documents[static_cast<size_t>(q.gold_row)];
    d.qa = {*q.qa};
    out.push_back(std::move(d));
  }
  return out;
}

double Stream::mean_text_bytes() const {
  double bytes = 0;
  for (const auto& d : documents) bytes += static_cast<double>(d.text.size());
  return documents.empty() ? 0.0 : bytes / static_cast<double>(documents.size());
}

Stream make_stream(std::vector<data::Document> documents, const std::string& source, int64_t max_documents,
                   int64_t max_questions) {
  Stream s;
  s.source = source;
  s.documents = std::move(documents);
  if (max_documents > 0 && s.size() > max_documents) s.documents.resize(static_cast<size_t>(max_documents));
  if (s.documents.empty()) core::fail("{}: the test stream has no documents", source);
  s.max_questions = max_questions;
  s.questions = s.questions_about(0, s.size());
  if (s.questions.empty())
    core::fail("{}: no document of the test stream has a question with an answer (\"qa\": [{{\"question\", "
               "\"answers\"}}])",
               source);
  return s;
}

}  // namespace engram::eval
