#pragma once
// Reading aids that work on any stream (aids.*): questions made from a training document's own
// text, without knowing how the text was written. A word of one of its sentences is asked back
// with the rest of the sentence as the question, which teaches a reader to find the sentence a
// question shares words with and copy what the question lacks. Applied to training documents
// only (base-LM pretraining, each method's training), never to evaluation streams.
#include <cstdint>
#include <string>
#include <vector>

#include "data/document.h"

namespace engram::config {
class Config;
class Schema;
}  // namespace engram::config

namespace engram::data {

struct ReadingAids {
  int span_questions = 0;  // questions made per document (0: none)
  // How a question is made from "a b SPAN c d.": "a b what c d?" (cloze), or "What a b c d?"
  // (front: the question word first, as questions are usually asked), or either at random (both).
  enum class Form { Cloze, Front, Both } form = Form::Both;
  uint64_t seed = 1234;
  bool enabled() const { return span_questions > 0; }
};

void declare_reading_aid_options(config::Schema& schema);
ReadingAids reading_aids_from(const config::Config& config);

// The questions the aids make from `text` (deterministic in `seed`); each answer is a word of
// the text. Fewer than asked when the text has fewer usable words.
std::vector<QA> span_questions(const std::string& text, int count, ReadingAids::Form form, uint64_t seed);

// Adds span questions to every document, shuffled in among its own questions.
void add_reading_aids(std::vector<Document>& documents, const ReadingAids& aids);

}  // namespace engram::data
