#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "data/synth.h"

using namespace engram;
using data::Split;

namespace {
data::SynthOptions small(int64_t entities = 400, uint64_t seed = 7) {
  data::SynthOptions o;
  o.entities = entities;
  o.seed = seed;
  return o;
}
int64_t count_lines(const std::string& path) {
  std::ifstream in(path);
  int64_t n = 0;
  std::string line;
  while (std::getline(in, line)) ++n;
  return n;
}
}  // namespace

TEST(SynthWorld, DeterministicFromTheSeed) {
  data::SynthWorld a(small()), b(small()), c(small(400, 8));
  for (int64_t i : {0, 17, 399}) {
    auto da = a.document(i, Split::Test, i), db = b.document(i, Split::Test, i), dc = c.document(i, Split::Test, i);
    EXPECT_EQ(da.text, db.text);
    EXPECT_EQ(da.qa.size(), db.qa.size());
    EXPECT_NE(da.text, dc.text);
  }
}

TEST(SynthWorld, EntityNamesAreUnique) {
  data::SynthWorld world(small(100000));
  std::set<std::string> names;
  for (int64_t i = 0; i < 100000; ++i) names.insert(world.entity(i).name);
  EXPECT_EQ(names.size(), 100000u);
}

TEST(SynthWorld, SplitsAreDisjointAndCoverEveryEntity) {
  data::SynthWorld world(small(1000));
  int64_t next = 0;
  for (Split s : {Split::Pretrain, Split::Train, Split::Valid, Split::Test}) {
    auto [begin, end] = world.split_range(s);
    EXPECT_EQ(begin, next);
    EXPECT_GT(end, begin);
    next = end;
  }
  EXPECT_EQ(next, 1000);
  EXPECT_EQ(world.split_range(Split::Pretrain).second, 500);  // frac_pretrain 0.5
}

TEST(SynthWorld, KindsHaveEnoughTemplatesAndDisjointPools) {
  std::set<std::string> seen_values;
  size_t pools = 0, total_values = 0;
  std::set<const std::vector<std::string>*> distinct_pools;
  for (const auto& kind : data::world_kinds()) {
    for (const auto& a : kind.attributes) {
      EXPECT_GE(a.statements.size(), 5u) << kind.name << "/" << a.name;
      EXPECT_GE(a.train_questions.size(), 3u);
      EXPECT_GE(a.heldout_questions.size(), 2u);
      for (const auto& q : a.heldout_questions)  // held-out phrasings are never training phrasings
        EXPECT_EQ(std::count(a.train_questions.begin(), a.train_questions.end(), q), 0);
      if (distinct_pools.insert(a.values).second) {
        ++pools;
        total_values += a.values->size();
        seen_values.insert(a.values->begin(), a.values->end());
        for (const auto& v : *a.values) EXPECT_EQ(v.find(' '), std::string::npos) << "single-word values: " << v;
      }
    }
  }
  EXPECT_GE(data::world_kinds().size(), 3u);
  EXPECT_EQ(seen_values.size(), total_values) << "a value appears in two pools";
  EXPECT_GE(pools, 10u);
}

TEST(SynthWorld, DocumentsStateTheAnswersOfTheirQuestions) {
  data::SynthWorld world(small());
  for (int64_t i = 0; i < 400; i += 13) {
    data::Document pre = world.document(i, Split::Pretrain, i);
    data::Document test = world.document(i, Split::Test, i);
    data::Entity e = world.entity(i);
    EXPECT_NE(pre.text.find(e.name), std::string::npos);
    int facts = 0;
    for (const auto& qa : pre.qa) {
      EXPECT_FALSE(qa.heldout);
      ASSERT_EQ(qa.answers.size(), 1u);
      EXPECT_NE(pre.text.find(qa.answers[0]), std::string::npos) << pre.text << " / " << qa.answers[0];
      EXPECT_NE(qa.question.find(e.name), std::string::npos);
      ++facts;
    }
    EXPECT_GE(facts, 3);
    EXPECT_LE(facts, 5);
    // Evaluation splits: each fact asked once with a training phrasing and once held out.
    int heldout = 0;
    for (const auto& qa : test.qa) heldout += qa.heldout ? 1 : 0;
    EXPECT_EQ(heldout * 2, static_cast<int>(test.qa.size()));
  }
  EXPECT_EQ(world.document(5, Split::Test, 42).id, "test-0000042");
  EXPECT_EQ(*world.document(5, Split::Test, 2).time, 1700000000 + 2 * 3600);
}

TEST(SynthWorld, StatementQuestionsRestateAFactOfTheDocument) {
  auto options = small();
  options.train_questions_per_fact = 2;
  data::SynthWorld plain(options);
  options.statement_questions = true;
  data::SynthWorld with(options);
  const int64_t index = with.split_range(Split::Pretrain).first + 3;
  data::Document a = plain.document(index, Split::Pretrain, 0), b = with.document(index, Split::Pretrain, 0);
  EXPECT_EQ(a.text, b.text) << "the document itself does not change";
  const size_t facts = a.qa.size() / 2;
  ASSERT_EQ(b.qa.size(), 3 * facts) << "two phrasings plus one statement question per fact";
  // The statement questions are the added ones: each ends in "what?" and, with "what" put back
  // as the answer, is a sentence of the document.
  int statements = 0;
  for (const auto& qa : b.qa) {
    bool known = false;
    for (const auto& q : a.qa) known |= q.question == qa.question;
    if (known) continue;
    ++statements;
    EXPECT_FALSE(qa.heldout);
    std::string sentence = qa.question;
    const size_t what = sentence.rfind("hat") - 1;  // "what", or "What" opening the question
    ASSERT_LT(what, sentence.size()) << sentence;
    sentence.replace(what, 4, qa.answers[0]);
    sentence.back() = '.';
    const bool stated = b.text.find(sentence) != std::string::npos ||
                        b.text.find(sentence.substr(0, what) + "a " + sentence.substr(what)) != std::string::npos ||
                        b.text.find(sentence.substr(0, what) + "an " + sentence.substr(what)) != std::string::npos;
    EXPECT_TRUE(stated || what == 0) << qa.question << " / " << b.text;
  }
  EXPECT_EQ(statements, static_cast<int>(facts));
  // Evaluation splits never get them.
  const int64_t test_index = with.split_range(Split::Test).first;
  EXPECT_EQ(with.document(test_index, Split::Test, 0).qa.size(), plain.document(test_index, Split::Test, 0).qa.size());
}

TEST(SynthWorld, LongDocumentsPutFillerAfterTheFacts) {
  auto options = small();
  options.long_filler_words = 300;
  data::SynthWorld world(options);
  data::Document doc = world.long_document(390, 0);
  data::Document facts = world.document(390, Split::Test, 0);
  EXPECT_EQ(doc.text.rfind(facts.text, 0), 0u) << "facts come first";
  auto words = std::count(doc.text.begin(), doc.text.end(), ' ') - std::count(facts.text.begin(), facts.text.end(), ' ');
  EXPECT_GE(words, 300);
  EXPECT_EQ(doc.qa.size(), facts.qa.size());
  // Train entities make long training documents the same way (without held-out paraphrases).
  data::Document train_doc = world.long_document(150, 3, Split::Train);
  EXPECT_EQ(train_doc.id, "long-train-0000003");
  EXPECT_EQ(train_doc.text.rfind(world.document(150, Split::Train, 3).text, 0), 0u);
}

TEST(SynthWorld, BadOptionsAreUserErrors) {
  EXPECT_THROW(data::SynthWorld(small(50)), core::UserError);
  EXPECT_THROW(data::SynthWorld(small(2000000)), core::UserError);
  auto o = small();
  o.frac_pretrain = 0.9;
  o.frac_train = 0.2;
  EXPECT_THROW(data::SynthWorld{o}, core::UserError);
}

TEST(SynthWorld, WritesSplitsCorpusAndManifest) {
  auto options = small(200);
  options.long_documents = true;
  options.long_documents_count = 5;
  options.long_train_count = 1000;  // capped at the 40 train entities
  data::SynthWorld world(options);
  std::string dir = ::testing::TempDir() + "synth_world";
  std::filesystem::remove_all(dir);
  int64_t last_done = 0;
  auto summary = data::write_world(world, dir, [&](int64_t done, int64_t total) {
    EXPECT_EQ(total, 200);
    last_done = done;
  });
  EXPECT_EQ(last_done, 200);
  EXPECT_EQ(count_lines(dir + "/pretrain.jsonl"), 100);
  EXPECT_EQ(count_lines(dir + "/train.jsonl"), 40);
  EXPECT_EQ(count_lines(dir + "/valid.jsonl"), 10);
  EXPECT_EQ(count_lines(dir + "/test.jsonl"), 50);
  EXPECT_EQ(count_lines(dir + "/long_test.jsonl"), 5);
  EXPECT_EQ(count_lines(dir + "/long_train.jsonl"), 40);
  EXPECT_EQ(summary.long_train_documents, 40);
  EXPECT_EQ(summary.documents[3], 50);
  EXPECT_FALSE(std::filesystem::exists(dir + "/test.jsonl.tmp"));

  std::ifstream first(dir + "/test.jsonl");
  std::string line;
  std::getline(first, line);
  auto doc = nlohmann::json::parse(line);
  EXPECT_EQ(doc["id"], "test-0000000");
  EXPECT_TRUE(doc["qa"][1]["heldout"].get<bool>());

  auto manifest = nlohmann::json::parse(std::ifstream(dir + "/world.json"));
  EXPECT_EQ(manifest["entities"], 200);
  EXPECT_EQ(manifest["documents"]["valid"], 10);

  // The tokenizer corpus never names a valid or test entity.
  std::ifstream corpus_in(dir + "/corpus.txt");
  std::string corpus((std::istreambuf_iterator<char>(corpus_in)), std::istreambuf_iterator<char>());
  EXPECT_GT(corpus.size(), 10000u);
  for (int64_t i = world.split_range(Split::Valid).first; i < 200; ++i)
    EXPECT_EQ(corpus.find(world.entity(i).name), std::string::npos) << world.entity(i).name;
  EXPECT_NE(corpus.find(world.entity(0).name), std::string::npos);
}

// Held-out domains: valid and test entities are of kinds whose attributes, values, templates and
// phrasings appear nowhere in the pretrain and train splits; the training splits are unchanged.
TEST(SynthWorld, HeldOutDomainsShareNothingWithTraining) {
  auto options = small(2000);
  data::SynthWorld plain(options);
  options.heldout_domains = true;
  data::SynthWorld world(options);
  std::set<std::string> training_values, training_words;
  for (const auto& kind : data::world_kinds())
    for (const auto& a : kind.attributes) {
      training_values.insert(a.values->begin(), a.values->end());
      for (const auto* patterns : {&a.statements, &a.train_questions, &a.heldout_questions})
        training_words.insert(patterns->begin(), patterns->end());
    }
  std::set<std::string> kind_names;
  for (const auto& kind : data::world_kinds()) kind_names.insert(kind.name);
  for (const auto& kind : data::heldout_kinds()) {
    EXPECT_EQ(kind_names.count(kind.name), 0u) << kind.name;
    for (const auto& a : kind.attributes) {
      EXPECT_GE(a.statements.size(), 4u) << kind.name << "/" << a.name;
      EXPECT_GE(a.heldout_questions.size(), 2u);
      for (const auto& v : *a.values) {
        EXPECT_EQ(training_values.count(v), 0u) << "value " << v << " is also a training value";
        EXPECT_EQ(v.find(' '), std::string::npos) << "single-word values: " << v;
      }
      for (const auto* patterns : {&a.statements, &a.train_questions, &a.heldout_questions})
        for (const auto& p : *patterns) EXPECT_EQ(training_words.count(p), 0u) << p;
    }
  }
  for (Split split : {Split::Pretrain, Split::Train}) {
    const int64_t i = world.split_range(split).first + 7;
    EXPECT_FALSE(world.entity(i).heldout_domain);
    EXPECT_EQ(world.document(i, split, 0).text, plain.document(i, split, 0).text);
  }
  int64_t heldout_kind_count[3] = {0, 0, 0};
  for (Split split : {Split::Valid, Split::Test}) {
    auto [begin, end] = world.split_range(split);
    for (int64_t i = begin; i < end; ++i) {
      const data::Entity e = world.entity(i);
      ASSERT_TRUE(e.heldout_domain);
      ++heldout_kind_count[e.kind];
      const data::Document doc = world.document(i, split, 0);
      for (const auto& qa : doc.qa) {
        EXPECT_EQ(training_values.count(qa.answers[0]), 0u) << qa.answers[0];
        EXPECT_NE(doc.text.find(qa.answers[0]), std::string::npos) << doc.text << " / " << qa.answers[0];
      }
      EXPECT_EQ(world.kind_of(e).name, data::heldout_kinds()[static_cast<size_t>(e.kind)].name);
    }
  }
  for (int64_t count : heldout_kind_count) EXPECT_GT(count, 100) << "every held-out kind is drawn";
}

// Sparse: one fixed training phrasing per attribute and no statement questions.
TEST(SynthWorld, SparseAsksEachAttributeWithOnePhrasing) {
  auto options = small(2000);
  options.sparse = true;
  data::SynthWorld world(options);
  std::set<std::string> asked;
  auto [begin, end] = world.split_range(Split::Pretrain);
  for (int64_t i = begin; i < end; ++i) {
    const data::Entity e = world.entity(i);
    const data::Document doc = world.document(i, Split::Pretrain, 0);
    EXPECT_GE(doc.qa.size(), 3u);
    for (const auto& qa : doc.qa) {
      std::string pattern = qa.question;
      pattern.replace(pattern.find(e.name), e.name.size(), "{E}");
      asked.insert(pattern);
    }
  }
  size_t attributes = 0;
  for (const auto& kind : data::world_kinds()) {
    attributes += kind.attributes.size();
    for (const auto& a : kind.attributes) EXPECT_EQ(asked.count(a.train_questions[0]), 1u) << a.train_questions[0];
  }
  EXPECT_EQ(asked.size(), attributes) << "one phrasing per attribute, nothing else";
  options.statement_questions = true;
  EXPECT_THROW(data::SynthWorld{options}, core::UserError);
  options.statement_questions = false;
  options.train_questions_per_fact = 2;
  EXPECT_THROW(data::SynthWorld{options}, core::UserError);
}
