#pragma once
// The synthetic knowledge world (`engram synth`): fictional entities of several kinds (people,
// companies, ships), each with attributes drawn from per-attribute value pools that never share a
// value, described by documents built from several sentence templates per attribute, with
// distractor sentences, and asked about with question templates split into a training set and a
// held-out paraphrase set.
//
// Everything about entity i comes from a random stream seeded by (seed, i), so the world is
// deterministic, any entity can be made on its own, and any number of entities is written as a
// stream in constant memory. Splits are by entity: pretrain / train / valid / test never share one.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "data/document.h"

namespace engram::config {
class Config;
class Schema;
}

namespace engram::data {

struct SynthOptions {
  int64_t entities = 2000;
  uint64_t seed = 1234;
  // Fractions of the entities in each split; test gets the rest.
  double frac_pretrain = 0.5, frac_train = 0.2, frac_valid = 0.05;
  int min_facts = 3, max_facts = 5;  // attributes stated per document (capped by the kind's count)
  int distractors = 2;               // distractor sentences per document
  int train_questions_per_fact = 1;  // pretrain/train splits: training phrasings asked per fact
  bool statement_questions = false;  // pretrain/train splits: each fact's statement as a question too
  // Sparse: every attribute is asked with one fixed training phrasing (its first), the way a
  // user's stream asks it, and no statement questions.
  bool sparse = false;
  // Held-out domains: valid and test entities are of the kinds of heldout_kinds(), whose
  // attributes, templates and phrasings appear nowhere in the pretrain and train splits.
  bool heldout_domains = false;
  bool long_documents = false;       // also write long_test.jsonl (facts early, filler, question last)
  int long_filler_words = 600;       // filler between the facts and the end of a long document
  int64_t long_documents_count = 200;
  int64_t long_train_count = 0;      // long_train.jsonl: long documents of train entities (LongMem's training)
  int long_train_filler_words = -1;  // their filler (-1: long_filler_words)
  int64_t time_origin = 1700000000;  // time of the first document of a split; one hour apart
};

void declare_synth_options(config::Schema& schema);
SynthOptions synth_options_from(const config::Config& config);

enum class Split { Pretrain, Train, Valid, Test };
const char* split_name(Split split);

// Attributes and phrasing of the world (exposed for tests and for tools that explain a document).
struct AttributeSpec {
  std::string name;                          // "hometown"
  const std::vector<std::string>* values;    // its pool
  std::vector<std::string> statements;       // "{E} was born in {V}."
  std::vector<std::string> train_questions;  // "Where was {E} born?"
  std::vector<std::string> heldout_questions;
};
struct KindSpec {
  std::string name;  // "person"
  std::vector<AttributeSpec> attributes;
};
const std::vector<KindSpec>& world_kinds();
// The kinds of the held-out domains (synth.heldout_domains): other attributes, value pools,
// templates and phrasings, disjoint from world_kinds()'.
const std::vector<KindSpec>& heldout_kinds();

// One entity, fully determined by (seed, index).
struct Entity {
  int64_t index = 0;
  std::string name;
  int kind = 0;                    // into world_kinds(), or heldout_kinds() when heldout_domain
  bool heldout_domain = false;
  std::vector<std::string> values; // one per attribute of the kind
};

class SynthWorld {
 public:
  explicit SynthWorld(SynthOptions options);
  const SynthOptions& options() const { return options_; }

  // Entity index range [begin, end) of a split.
  std::pair<int64_t, int64_t> split_range(Split split) const;
  Entity entity(int64_t index) const;
  const KindSpec& kind_of(const Entity& entity) const;
  // The document about entity `index`, the `position`-th of its split (id and time).
  // Valid and test documents carry held-out paraphrase questions besides the training ones.
  Document document(int64_t index, Split split, int64_t position) const;
  // A long document: the facts, then >= long_filler_words of filler, questions asked at the end.
  // Test entities give long_test.jsonl; train entities long_train.jsonl.
  Document long_document(int64_t index, int64_t position, Split split = Split::Test) const;
  // A distractor / filler sentence from the random stream `rng_seed`.
  std::string filler_sentence(uint64_t rng_seed) const;

 private:
  SynthOptions options_;
};

struct SynthSummary {
  int64_t documents[4] = {0, 0, 0, 0};
  int64_t questions = 0;
  int64_t long_documents = 0;
  int64_t long_train_documents = 0;
  int64_t corpus_bytes = 0;
};

// Writes <dir>/{pretrain,train,valid,test}.jsonl, corpus.txt (document texts and
// "Question/Answer" lines of the pretrain and train splits, for tokenizer training),
// long_test.jsonl when asked, and world.json (what was made, from which options).
// `progress(done, total)` is called as entities are written.
SynthSummary write_world(const SynthWorld& world, const std::string& dir,
                         const std::function<void(int64_t, int64_t)>& progress = {});

}  // namespace engram::data
