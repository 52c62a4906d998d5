#include <gtest/gtest.h>

#include <set>

#include "data/reading_aids.h"

using namespace engram;
using Form = data::ReadingAids::Form;

namespace {
const std::string kText =
    "The river Kalo Logallun rises among the peaks of Owlscar. A passing storm flew south. "
    "Anglers on the river Kalo Logallun mostly catch roach.";
}

TEST(ReadingAids, ClozeQuestionsAreTheSentenceWithTheAnswerAsWhat) {
  const auto questions = data::span_questions(kText, 3, Form::Cloze, 11);
  ASSERT_EQ(questions.size(), 3u);
  std::set<std::string> sentences_asked;
  for (const auto& qa : questions) {
    ASSERT_EQ(qa.answers.size(), 1u);
    const std::string& answer = qa.answers[0];
    EXPECT_GE(answer.size(), 3u);
    EXPECT_NE(kText.find(answer), std::string::npos) << answer;
    EXPECT_EQ(qa.question.back(), '?');
    // Put the answer back in place of "what" and the question is the sentence, punctuation dropped.
    std::string sentence = qa.question.substr(0, qa.question.size() - 1);
    const size_t what = sentence.find("what") != std::string::npos ? sentence.find("what") : sentence.find("What");
    ASSERT_NE(what, std::string::npos) << qa.question;
    sentence.replace(what, 4, answer);
    EXPECT_NE(kText.find(sentence), std::string::npos) << qa.question << " -> " << sentence;
    sentences_asked.insert(sentence.substr(0, 10));
  }
  EXPECT_EQ(sentences_asked.size(), 3u) << "one question per sentence while sentences remain";
}

TEST(ReadingAids, FrontQuestionsStartWithWhatAndKeepTheOtherWordsInOrder) {
  for (const auto& qa : data::span_questions(kText, 5, Form::Front, 3)) {
    ASSERT_EQ(qa.question.rfind("What ", 0), 0u) << qa.question;
    EXPECT_EQ(qa.question.find(qa.answers[0] + " "), std::string::npos) << "the answer is not in its question";
  }
  const auto front = data::span_questions("Every copy of the book Vel Mora is bound in vellum.", 8, Form::Front, 5);
  std::set<std::string> answers;
  for (const auto& qa : front) answers.insert(qa.answers[0]);
  EXPECT_EQ(front.size(), 6u) << "each usable word once, then no more";
  EXPECT_EQ(answers, (std::set<std::string>{"copy", "book", "Vel", "Mora", "bound", "vellum"}));
}

TEST(ReadingAids, FunctionWordsAndShortSentencesAreNeverAsked) {
  EXPECT_TRUE(data::span_questions("It was the one. Yes it was.", 4, Form::Both, 1).empty());
  for (const auto& qa : data::span_questions("The harbour of the town was where they were.", 8, Form::Both, 2))
    EXPECT_TRUE(qa.answers[0] == "harbour" || qa.answers[0] == "town") << qa.answers[0];
}

TEST(ReadingAids, AddedToEveryDocumentDeterministically) {
  std::vector<data::Document> docs(2);
  docs[0].text = kText;
  docs[0].qa.push_back(data::QA{"Where does the river Kalo Logallun rise?", {"Owlscar"}, false});
  docs[1].text = "Cooks prepare the dish Tor Ven in a heavy skillet.";
  auto again = docs;
  data::ReadingAids aids;
  aids.span_questions = 2;
  data::add_reading_aids(docs, aids);
  data::add_reading_aids(again, aids);
  EXPECT_EQ(docs[0].qa.size(), 3u);
  EXPECT_EQ(docs[1].qa.size(), 2u);
  for (size_t d = 0; d < docs.size(); ++d)
    for (size_t q = 0; q < docs[d].qa.size(); ++q) EXPECT_EQ(docs[d].qa[q].question, again[d].qa[q].question);
  aids.span_questions = 0;
  auto untouched = again;
  data::add_reading_aids(untouched, aids);
  EXPECT_EQ(untouched[0].qa.size(), again[0].qa.size());
}
