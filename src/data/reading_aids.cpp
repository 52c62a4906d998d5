#include "data/reading_aids.h"

#include <algorithm>
#include <cctype>
#include <random>
#include <set>

#include "config/config.h"
#include "core/seed.h"

namespace engram::data {
namespace {

// Function words are never asked: "the" or "was" as an answer teaches nothing about reading.
bool is_function_word(const std::string& lower) {
  static const std::set<std::string> words = {
      "the", "and", "for", "but", "not", "are", "was", "were", "has", "had", "have", "its", "his", "her",
      "their", "our", "your", "from", "with", "into", "onto", "upon", "over", "under", "that", "this", "these",
      "those", "which", "who", "whom", "whose", "what", "when", "where", "why", "how", "all", "any", "each",
      "every", "some", "one", "than", "then", "there", "here", "also", "very", "been", "being", "does", "did",
      "can", "could", "would", "should", "will", "shall", "may", "might", "must", "they", "them", "she", "him",
      "you", "after", "before", "about", "since", "until", "while", "because", "many", "much", "more", "most"};
  return words.count(lower) > 0;
}

std::string lowered(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

// The word without the punctuation around it ("(Foo)," -> "Foo").
std::string core_of(const std::string& word) {
  auto is_mark = [](unsigned char c) { return std::ispunct(c) && c != '-' && c != '\''; };
  size_t begin = 0, end = word.size();
  while (begin < end && is_mark(static_cast<unsigned char>(word[begin]))) ++begin;
  while (end > begin && is_mark(static_cast<unsigned char>(word[end - 1]))) --end;
  return word.substr(begin, end - begin);
}

std::vector<std::vector<std::string>> sentences_of(const std::string& text) {
  std::vector<std::vector<std::string>> sentences(1);
  size_t at = 0;
  while (at < text.size()) {
    while (at < text.size() && std::isspace(static_cast<unsigned char>(text[at]))) ++at;
    size_t end = at;
    while (end < text.size() && !std::isspace(static_cast<unsigned char>(text[end]))) ++end;
    if (end == at) break;
    std::string word = text.substr(at, end - at);
    sentences.back().push_back(word);
    const char last = word.back();
    if (last == '.' || last == '?' || last == '!') sentences.emplace_back();
    at = end;
  }
  if (sentences.back().empty()) sentences.pop_back();
  return sentences;
}

// Words of a sentence as a question's words: punctuation dropped, "what" in place of the answer.
std::string question_from(const std::vector<std::string>& words, size_t answer_at, bool front) {
  std::string question = front ? "What" : "";
  for (size_t w = 0; w < words.size(); ++w) {
    std::string word = w == answer_at ? (front ? "" : "what") : core_of(words[w]);
    if (word.empty()) continue;
    question += (question.empty() ? "" : " ") + word;
  }
  question[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(question[0])));
  return question + "?";
}

}  // namespace

void declare_reading_aid_options(config::Schema& schema) {
  schema.add_int("aids.span_questions", 0,
                 "training documents (pretraining and each method's training, never evaluation): questions made "
                 "from the document's own sentences, a word asked back with the rest of its sentence (0: none)",
                 config::Range::between(0, 64));
  schema.add_string("aids.form", "both",
                    "how a span question is worded: cloze ('a b what c?'), front ('What a b c?') or both at random",
                    {"cloze", "front", "both"});
}

ReadingAids reading_aids_from(const config::Config& config) {
  ReadingAids aids;
  aids.span_questions = static_cast<int>(config.get_int("aids.span_questions"));
  const std::string& form = config.get_string("aids.form");
  aids.form = form == "cloze" ? ReadingAids::Form::Cloze : form == "front" ? ReadingAids::Form::Front
                                                                            : ReadingAids::Form::Both;
  aids.seed = static_cast<uint64_t>(config.get_int("run.seed"));
  return aids;
}

std::vector<QA> span_questions(const std::string& text, int count, ReadingAids::Form form, uint64_t seed) {
  std::mt19937_64 rng(seed);
  // Every (sentence, word) that can be asked: a word of 3 or more characters, not a function word,
  // in a sentence of at least 4 words (fewer leave too little to find the sentence by).
  const auto sentences = sentences_of(text);
  std::vector<std::pair<size_t, size_t>> candidates;
  for (size_t s = 0; s < sentences.size(); ++s) {
    if (sentences[s].size() < 4) continue;
    for (size_t w = 0; w < sentences[s].size(); ++w) {
      const std::string word = core_of(sentences[s][w]);
      if (word.size() >= 3 && !is_function_word(lowered(word))) candidates.emplace_back(s, w);
    }
  }
  std::shuffle(candidates.begin(), candidates.end(), rng);
  // First one word per sentence, so the questions spread over the text; then any word left.
  std::vector<QA> questions;
  std::set<size_t> asked_sentences;
  std::vector<bool> used(candidates.size(), false);
  for (int pass = 0; pass < 2; ++pass)
    for (size_t c = 0; c < candidates.size() && static_cast<int>(questions.size()) < count; ++c) {
      const auto [s, w] = candidates[c];
      if (used[c] || (pass == 0 && !asked_sentences.insert(s).second)) continue;
      used[c] = true;
      const bool front = form == ReadingAids::Form::Front || (form == ReadingAids::Form::Both && rng() % 2 == 0);
      questions.push_back(QA{question_from(sentences[s], w, front), {core_of(sentences[s][w])}, false});
    }
  return questions;
}

void add_reading_aids(std::vector<Document>& documents, const ReadingAids& aids) {
  if (!aids.enabled()) return;
  for (size_t d = 0; d < documents.size(); ++d) {
    Document& doc = documents[d];
    const uint64_t seed = core::derive_seed(aids.seed, {0xA1D5, d});
    for (QA& qa : span_questions(doc.text, aids.span_questions, aids.form, seed)) doc.qa.push_back(std::move(qa));
    std::mt19937_64 rng(core::splitmix64(seed));
    std::shuffle(doc.qa.begin(), doc.qa.end(), rng);
  }
}

}  // namespace engram::data
