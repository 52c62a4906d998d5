#include "data/synth.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <random>

#include <nlohmann/json.hpp>

#include "config/config.h"
#include "core/error.h"
#include "core/seed.h"
#include "data/synth_pools.h"
#include "io/jsonl.h"

namespace engram::data {

namespace pools {
std::vector<std::string> years(int first, int last) {
  std::vector<std::string> out;
  for (int y = first; y <= last; ++y) out.push_back(std::to_string(y));
  return out;
}
}  // namespace pools

namespace {

const std::vector<std::string> kPersonYears = pools::years(1900, 2020);
const std::vector<std::string> kCompanyYears = pools::years(1800, 1899);
const std::vector<std::string> kShipYears = pools::years(1700, 1799);

// {E} entity name, {V} value, {a} "a" or "an" for the value. Held-out questions use new
// phrasings, but each shares a content word with a statement or a training question ("earn",
// "holds", "logo"): a reader can match them to the fact without having seen the phrasing.
std::vector<KindSpec> make_kinds() {
  std::vector<KindSpec> kinds;
  kinds.push_back(KindSpec{
      "person",
      {
          {"hometown", &pools::kCities,
           {"{E} was born in {V}.", "{E} grew up in the town of {V}.", "The hometown of {E} is {V}.",
            "{E} comes from {V}.", "{V} is where {E} spent a childhood.", "Records show that {E} was raised in {V}."},
           {"Where was {E} born?", "What is the hometown of {E}?", "Which town did {E} grow up in?",
            "Where does {E} come from?",
            "Which town was {E} born in?", "Tell me the hometown of {E}.", "{E} grew up in which town?", "Where did {E} grow up?"},
           {"In which town was {E} raised?", "{E} is originally from which place?"}},
          {"occupation", &pools::kJobs,
           {"{E} works as {a} {V}.", "By profession, {E} is {a} {V}.", "{E} earns a living as {a} {V}.",
            "The job of {E} is {V}.", "For many years {E} has worked as {a} {V}."},
           {"What does {E} do for a living?", "What is the job of {E}?", "What is the profession of {E}?",
            "What does {E} work as?",
            "Which job does {E} have?", "{E} works as what?", "What is {E} by profession?", "Tell me the job of {E}."},
           {"What work does {E} do?", "How does {E} earn money?"}},
          {"favourite colour", &pools::kColours,
           {"The favourite colour of {E} is {V}.", "{E} likes the colour {V} best.", "{E} loves anything {V}.",
            "Above all other colours, {E} prefers {V}.", "{E} always chooses {V} when picking a colour."},
           {"What is the favourite colour of {E}?", "Which colour does {E} like best?",
            "What colour does {E} prefer?", "Which colour is the favourite of {E}?",
            "Which colour does {E} love?", "{E} likes which colour best?", "Tell me the favourite colour of {E}.", "What colour does {E} always choose?"},
           {"If {E} could pick one colour, which would it be?", "{E} is most fond of which colour?"}},
          {"pet", &pools::kPets,
           {"{E} owns a pet {V}.", "{E} keeps {a} {V} at home.", "The pet of {E} is {a} {V}.",
            "{E} takes care of {a} {V}.", "At home, {E} looks after {a} {V}."},
           {"What pet does {E} own?", "What animal does {E} keep at home?", "What is the pet of {E}?",
            "Which pet does {E} have?",
            "{E} owns which pet?", "Which animal does {E} own?", "Tell me the pet of {E}.", "What does {E} keep as a pet?"},
           {"What kind of animal lives with {E}?", "{E} takes care of which animal?"}},
          {"birth year", &kPersonYears,
           {"{E} was born in the year {V}.", "The birth year of {E} is {V}.", "{E} came into the world in {V}.",
            "In {V}, {E} was born.", "{E} celebrates a birthday every year since {V}."},
           {"In which year was {E} born?", "What is the birth year of {E}?", "When was {E} born?",
            "What year was {E} born in?",
            "Tell me the birth year of {E}.", "{E} has which birth year?", "Which year saw the birth of {E}?", "What was the year of birth of {E}?"},
           {"In what year did {E} come into the world?", "{E} was born in which year?"}},
      }});
  kinds.push_back(KindSpec{
      "company",
      {
          {"headquarters", &pools::kCities,
           {"{E} has its headquarters in {V}.", "The head office of {E} is in {V}.", "{E} is based in {V}.",
            "{E} runs its business from {V}.", "The headquarters of {E} stand in {V}."},
           {"Where is {E} headquartered?", "Where is the head office of {E}?", "In which city is {E} based?",
            "Where are the headquarters of {E}?",
            "Which city is home to the headquarters of {E}?", "{E} is based in which city?", "Tell me where {E} is headquartered.", "Where is {E} based?"},
           {"From which city does {E} run its business?", "{E} has its main office in which city?"}},
          {"product", &pools::kProducts,
           {"{E} makes {V}.", "The main product of {E} is {V}.", "{E} is known for its {V}.",
            "{E} manufactures {V}.", "Most of the money of {E} comes from selling {V}."},
           {"What does {E} make?", "What is the main product of {E}?", "What does {E} manufacture?",
            "What is {E} known for making?",
            "What does {E} produce?", "{E} manufactures what?", "Tell me the main product of {E}.", "What product does {E} make?"},
           {"Which product is {E} known for?", "{E} earns its money by selling what?"}},
          {"founding year", &kCompanyYears,
           {"{E} was founded in {V}.", "The founding year of {E} is {V}.", "{E} opened its doors in {V}.",
            "In {V}, {E} was established.", "{E} has been in business since {V}."},
           {"When was {E} founded?", "What is the founding year of {E}?", "In which year was {E} founded?",
            "What year was {E} established?",
            "Tell me the founding year of {E}.", "{E} was founded in which year?", "When was {E} established?", "What year did {E} start?"},
           {"Since which year has {E} been in business?", "{E} opened its doors in which year?"}},
          {"mascot", &pools::kMascots,
           {"The mascot of {E} is {a} {V}.", "{E} uses {a} {V} as its mascot.", "{E} chose {a} {V} as mascot.",
            "A {V} is the emblem animal of {E}.", "The logo of {E} shows {a} {V}."},
           {"What is the mascot of {E}?", "Which animal is the mascot of {E}?", "What animal does {E} use as a mascot?",
            "What mascot does {E} have?",
            "Tell me the mascot of {E}.", "{E} has which mascot?", "What animal is the mascot of {E}?", "Which mascot does {E} use?"},
           {"Which animal appears on the logo of {E}?", "{E} chose which animal as its emblem?"}},
      }});
  kinds.push_back(KindSpec{
      "ship",
      {
          {"home port", &pools::kPorts,
           {"The ship {E} sails from {V}.", "The home port of the ship {E} is {V}.",
            "The ship {E} is registered in {V}.", "The ship {E} always returns to {V}.",
            "{V} is the home port of the ship {E}."},
           {"What is the home port of the ship {E}?", "Where does the ship {E} sail from?",
            "Where is the ship {E} registered?", "To which port does the ship {E} return?",
            "Tell me the home port of the ship {E}.", "The ship {E} is registered in which port?", "Which port does the ship {E} sail from?", "Where is the ship {E} from?"},
           {"Which harbour is home to the ship {E}?", "The ship {E} belongs to which port?"}},
          {"cargo", &pools::kCargoes,
           {"The ship {E} carries {V}.", "The usual cargo of the ship {E} is {V}.",
            "The ship {E} transports {V}.", "The holds of the ship {E} are full of {V}.",
            "Traders load the ship {E} with {V}."},
           {"What does the ship {E} carry?", "What is the cargo of the ship {E}?",
            "What does the ship {E} transport?", "What is loaded on the ship {E}?",
            "Tell me the cargo of the ship {E}.", "The ship {E} carries what?", "What cargo does the ship {E} carry?", "What do traders load on the ship {E}?"},
           {"Which goods fill the holds of the ship {E}?", "What is carried by the ship {E}?"}},
          {"launch year", &kShipYears,
           {"The ship {E} was launched in {V}.", "The launch year of the ship {E} is {V}.",
            "The ship {E} first sailed in {V}.", "In {V}, the ship {E} was launched.",
            "The ship {E} has sailed since {V}."},
           {"When was the ship {E} launched?", "What is the launch year of the ship {E}?",
            "In which year was the ship {E} launched?", "What year did the ship {E} first sail?",
            "Tell me the launch year of the ship {E}.", "When did the ship {E} first sail?", "What year was the ship {E} launched?", "In what year was the ship {E} launched?"},
           {"Since which year has the ship {E} sailed?", "The ship {E} was launched in which year?"}},
          {"flag colour", &pools::kFlagColours,
           {"The ship {E} flies a {V} flag.", "The flag of the ship {E} is {V}.",
            "The ship {E} sails under a {V} flag.", "A {V} flag hangs from the mast of the ship {E}.",
            "Sailors know the ship {E} by its {V} flag."},
           {"What colour is the flag of the ship {E}?", "What flag does the ship {E} fly?",
            "Which colour is the flag of the ship {E}?", "Under what colour of flag does the ship {E} sail?",
            "Tell me the flag colour of the ship {E}.", "The ship {E} flies which flag?", "What is the colour of the flag of the ship {E}?", "Which flag does the ship {E} sail under?"},
           {"What colour hangs from the mast of the ship {E}?", "The ship {E} is known by a flag of which colour?"}},
      }});
  return kinds;
}

std::string fill(const std::string& pattern, const std::string& entity, const std::string& value) {
  static const std::string vowels = "aeiouAEIOU";
  std::string article = !value.empty() && vowels.find(value[0]) != std::string::npos ? "an" : "a";
  std::string out;
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (pattern.compare(i, 3, "{E}") == 0) { out += entity; i += 2; }
    else if (pattern.compare(i, 3, "{V}") == 0) { out += value; i += 2; }
    else if (pattern.compare(i, 3, "{a}") == 0) { out += article; i += 2; }
    else out += pattern[i];
  }
  if (!out.empty() && out[0] >= 'a' && out[0] <= 'z') out[0] = static_cast<char>(out[0] - 'a' + 'A');
  return out;
}

// A statement turned into the question it answers: the value becomes "what" ("{E} works as {a}
// {V}." -> "{E} works as what?"). Asked about a document that states the fact this way, it
// teaches the reader to find the sentence whose words the question shares, the skill held-out
// paraphrases need (each shares a content word with a statement).
std::string statement_question(const std::string& statement) {
  std::string pattern = statement;
  for (const char* slot : {"{a} {V}", "{V}"})
    for (size_t at = pattern.find(slot); at != std::string::npos; at = pattern.find(slot))
      pattern.replace(at, std::string(slot).size(), "what");
  while (!pattern.empty() && (pattern.back() == '.' || pattern.back() == ' ')) pattern.pop_back();
  return pattern + "?";
}

template <typename T>
const T& pick(const std::vector<T>& pool, std::mt19937_64& rng) {
  return pool[std::uniform_int_distribution<size_t>(0, pool.size() - 1)(rng)];
}

std::string capitalised(std::string word) {
  if (!word.empty() && word[0] >= 'a' && word[0] <= 'z') word[0] = static_cast<char>(word[0] - 'a' + 'A');
  return word;
}

// Entity names: index -> a position in the space of (2-syllable first word, 3-syllable second
// word) names by a bijection (multiplication by a unit mod the size of the space), so names are
// unique for any count of entities and do not follow the index visibly.
std::string entity_name(int64_t index, uint64_t seed) {
  const uint64_t s = pools::kSyllables.size();
  const uint64_t space = s * s * s * s * s;                   // 48^5 ~ 2.5e8 names
  const uint64_t multiplier = 1000003;                        // prime, coprime with 48^5 = 2^20 3^5
  const uint64_t shift = core::splitmix64(seed) % space;
  uint64_t code = (static_cast<uint64_t>(index) % space * multiplier + shift) % space;
  std::string first, second;
  for (int k = 0; k < 2; ++k) { first += pools::kSyllables[code % s]; code /= s; }
  for (int k = 0; k < 3; ++k) { second += pools::kSyllables[code % s]; code /= s; }
  return capitalised(first) + " " + capitalised(second);
}

nlohmann::json to_json(const Document& doc) {
  nlohmann::json j;
  j["id"] = doc.id;
  j["text"] = doc.text;
  if (doc.time) j["time"] = *doc.time;
  nlohmann::json qa = nlohmann::json::array();
  for (const QA& q : doc.qa) {
    nlohmann::json item{{"question", q.question}, {"answers", q.answers}};
    if (q.heldout) item["heldout"] = true;
    qa.push_back(item);
  }
  j["qa"] = qa;
  return j;
}

}  // namespace

const std::vector<KindSpec>& world_kinds() {
  static const std::vector<KindSpec> kinds = make_kinds();
  return kinds;
}

const char* split_name(Split split) {
  switch (split) {
    case Split::Pretrain: return "pretrain";
    case Split::Train: return "train";
    case Split::Valid: return "valid";
    case Split::Test: return "test";
  }
  return "?";
}

void declare_synth_options(config::Schema& schema) {
  schema.add_int("synth.entities", 2000, "entities in the world (100 to 1,000,000), split by entity", config::Range::between(100, 1000000));
  schema.add_string("synth.out_dir", "runs/quickstart/data", "where the JSONL splits, corpus.txt and world.json go");
  schema.add_float("synth.frac_pretrain", 0.5, "fraction of entities in the pretrain split", config::Range::between(0, 1));
  schema.add_float("synth.frac_train", 0.2, "fraction of entities in the (method) train split", config::Range::between(0, 1));
  schema.add_float("synth.frac_valid", 0.05, "fraction of entities in the valid split; test gets the rest", config::Range::between(0, 1));
  schema.add_int("synth.min_facts", 3, "fewest attributes a document states", config::Range::at_least(1));
  schema.add_int("synth.max_facts", 5, "most attributes a document states (capped by the entity kind)", config::Range::at_least(1));
  schema.add_int("synth.distractors", 2, "distractor sentences per document", config::Range::at_least(0));
  schema.add_int("synth.train_questions_per_fact", 1,
                 "pretrain/train documents: distinct training phrasings asked per stated fact (1 to 8)", config::Range::between(1, 8));
  schema.add_bool("synth.statement_questions", false,
                  "pretrain/train documents: also ask each fact as its statement turned into a question "
                  "(\"X works as what?\"), which teaches matching a question's words to the context");
  schema.add_bool("synth.sparse", false,
                  "pretrain/train documents ask each attribute with one fixed phrasing, as a user's stream "
                  "does (needs train_questions_per_fact 1 and statement_questions false)");
  schema.add_bool("synth.heldout_domains", false,
                  "valid/test entities are of other kinds, with attributes, values, sentence templates and "
                  "question phrasings that appear nowhere in the pretrain and train splits");
  schema.add_bool("synth.long_documents", false,
                  "also write long_test.jsonl: facts early, then filler, questions at the end (beyond-window recall)");
  schema.add_int("synth.long_filler_words", 600, "filler words between the facts and the end of a long document", config::Range::at_least(0));
  schema.add_int("synth.long_count", 200, "number of long documents (made from test entities)", config::Range::at_least(0));
  schema.add_int("synth.long_train_count", 0,
                 "with synth.long_documents: also write long_train.jsonl, this many long documents of train "
                 "entities (LongMem's training stream: questions far beyond the window after their facts)", config::Range::at_least(0));
  schema.add_int("synth.long_train_filler_words", -1,
                 "filler words of the long training documents (-1: synth.long_filler_words); less filler puts more "
                 "questions that need the memory into the same number of training tokens", config::Range::at_least(-1));
}

SynthOptions synth_options_from(const config::Config& config) {
  SynthOptions o;
  o.entities = config.get_int("synth.entities");
  o.seed = static_cast<uint64_t>(config.get_int("run.seed"));
  o.frac_pretrain = config.get_float("synth.frac_pretrain");
  o.frac_train = config.get_float("synth.frac_train");
  o.frac_valid = config.get_float("synth.frac_valid");
  o.min_facts = static_cast<int>(config.get_int("synth.min_facts"));
  o.max_facts = static_cast<int>(config.get_int("synth.max_facts"));
  o.distractors = static_cast<int>(config.get_int("synth.distractors"));
  o.train_questions_per_fact = static_cast<int>(config.get_int("synth.train_questions_per_fact"));
  o.statement_questions = config.get_bool("synth.statement_questions");
  o.sparse = config.get_bool("synth.sparse");
  o.heldout_domains = config.get_bool("synth.heldout_domains");
  o.long_documents = config.get_bool("synth.long_documents");
  o.long_filler_words = static_cast<int>(config.get_int("synth.long_filler_words"));
  o.long_documents_count = config.get_int("synth.long_count");
  o.long_train_count = config.get_int("synth.long_train_count");
  o.long_train_filler_words = static_cast<int>(config.get_int("synth.long_train_filler_words"));
  return o;
}

SynthWorld::SynthWorld(SynthOptions options) : options_(std::move(options)) {
  const auto& o = options_;
  if (o.entities < 100 || o.entities > 1000000)
    core::fail("synth.entities: expected 100 to 1,000,000, got {}", o.entities);
  for (double f : {o.frac_pretrain, o.frac_train, o.frac_valid})
    if (f < 0 || f > 1) core::fail("synth.frac_*: expected fractions between 0 and 1, got {}", f);
  if (o.frac_pretrain + o.frac_train + o.frac_valid >= 1.0)
    core::fail("synth.frac_pretrain + frac_train + frac_valid = {}: expected < 1, the test split gets the rest",
               o.frac_pretrain + o.frac_train + o.frac_valid);
  if (o.min_facts < 1 || o.max_facts < o.min_facts)
    core::fail("synth.min_facts/max_facts: expected 1 <= min_facts <= max_facts, got {} and {}", o.min_facts,
               o.max_facts);
  if (o.distractors < 0) core::fail("synth.distractors: expected >= 0, got {}", o.distractors);
  if (o.train_questions_per_fact < 1 || o.train_questions_per_fact > 8)
    core::fail("synth.train_questions_per_fact: expected 1 to 8, got {}", o.train_questions_per_fact);
  if (o.long_filler_words < 0) core::fail("synth.long_filler_words: expected >= 0");
  if (o.sparse && (o.train_questions_per_fact != 1 || o.statement_questions))
    core::fail("synth.sparse asks each attribute with one phrasing and no statement questions: expected "
               "synth.train_questions_per_fact 1 and synth.statement_questions false, got {} and {}",
               o.train_questions_per_fact, o.statement_questions);
}

std::pair<int64_t, int64_t> SynthWorld::split_range(Split split) const {
  const auto n = static_cast<double>(options_.entities);
  int64_t pretrain = static_cast<int64_t>(n * options_.frac_pretrain);
  int64_t train = pretrain + static_cast<int64_t>(n * options_.frac_train);
  int64_t valid = train + static_cast<int64_t>(n * options_.frac_valid);
  switch (split) {
    case Split::Pretrain: return {0, pretrain};
    case Split::Train: return {pretrain, train};
    case Split::Valid: return {train, valid};
    case Split::Test: return {valid, options_.entities};
  }
  return {0, 0};
}

Entity SynthWorld::entity(int64_t index) const {
  std::mt19937_64 rng(core::derive_seed(options_.seed, {0xE7, static_cast<uint64_t>(index)}));
  Entity e;
  e.index = index;
  e.heldout_domain = options_.heldout_domains && index >= split_range(Split::Valid).first;
  const auto& kinds = e.heldout_domain ? heldout_kinds() : world_kinds();
  e.kind = static_cast<int>(std::uniform_int_distribution<int>(0, static_cast<int>(kinds.size()) - 1)(rng));
  const KindSpec& kind = kinds[static_cast<size_t>(e.kind)];
  e.name = entity_name(index, options_.seed);
  if (kind.name == "company") e.name += " " + pick(pools::kCompanySuffixes, rng);
  for (const auto& attribute : kind.attributes) e.values.push_back(pick(*attribute.values, rng));
  return e;
}

const KindSpec& SynthWorld::kind_of(const Entity& entity) const {
  return (entity.heldout_domain ? heldout_kinds() : world_kinds())[static_cast<size_t>(entity.kind)];
}

std::string SynthWorld::filler_sentence(uint64_t rng_seed) const {
  std::mt19937_64 rng(rng_seed);
  return pick(pools::kFillerSubjects, rng) + " " + pick(pools::kFillerVerbs, rng) + " " +
         pick(pools::kFillerPlaces, rng) + ".";
}

Document SynthWorld::document(int64_t index, Split split, int64_t position) const {
  const Entity e = entity(index);
  const KindSpec& kind = kind_of(e);
  std::mt19937_64 rng(core::derive_seed(options_.seed, {0xD0C, static_cast<uint64_t>(index)}));

  // Which attributes this document states, in random order.
  std::vector<size_t> order(kind.attributes.size());
  for (size_t k = 0; k < order.size(); ++k) order[k] = k;
  std::shuffle(order.begin(), order.end(), rng);
  int most = std::min<int>(options_.max_facts, static_cast<int>(order.size()));
  int least = std::min(options_.min_facts, most);
  order.resize(static_cast<size_t>(std::uniform_int_distribution<int>(least, most)(rng)));

  std::vector<std::string> sentences, statement_patterns;
  for (size_t k : order) {
    statement_patterns.push_back(pick(kind.attributes[k].statements, rng));
    sentences.push_back(fill(statement_patterns.back(), e.name, e.values[k]));
  }
  for (int d = 0; d < options_.distractors; ++d) {
    auto at = std::uniform_int_distribution<size_t>(0, sentences.size())(rng);
    sentences.insert(sentences.begin() + static_cast<std::ptrdiff_t>(at), filler_sentence(rng()));
  }

  Document doc;
  doc.id = fmt::format("{}-{:07d}", split_name(split), position);
  doc.time = options_.time_origin + 3600 * position;
  for (size_t s = 0; s < sentences.size(); ++s) doc.text += (s ? " " : "") + sentences[s];
  const bool evaluation = split == Split::Valid || split == Split::Test;
  // Training splits: `train_questions_per_fact` distinct training phrasings per fact (more answer
  // signal per context) and, with `statement_questions`, the statement of the fact as a question;
  // evaluation splits: one training and one held-out phrasing per fact.
  // Questions come in random order, never in the order of the statements.
  for (size_t f = 0; f < order.size(); ++f) {
    const size_t k = order[f];
    const AttributeSpec& attribute = kind.attributes[k];
    std::vector<std::string> phrasings = attribute.train_questions;
    if (!options_.sparse) std::shuffle(phrasings.begin(), phrasings.end(), rng);
    const size_t asked = evaluation ? 1 : std::min<size_t>(phrasings.size(), options_.train_questions_per_fact);
    for (size_t q = 0; q < asked; ++q) doc.qa.push_back(QA{fill(phrasings[q], e.name, e.values[k]), {e.values[k]}, false});
    if (evaluation)
      doc.qa.push_back(QA{fill(pick(attribute.heldout_questions, rng), e.name, e.values[k]), {e.values[k]}, true});
    else if (options_.statement_questions)
      doc.qa.push_back(QA{fill(statement_question(statement_patterns[f]), e.name, e.values[k]), {e.values[k]}, false});
  }
  std::shuffle(doc.qa.begin(), doc.qa.end(), rng);
  return doc;
}

Document SynthWorld::long_document(int64_t index, int64_t position, Split split) const {
  Document doc = document(index, split, position);
  doc.id = split == Split::Test ? fmt::format("long-{:07d}", position)
                                : fmt::format("long-{}-{:07d}", split_name(split), position);
  // Facts first (distractors included), then filler until the document is long enough; the
  // questions (kept in qa) are asked at the end, beyond a short model's window.
  std::mt19937_64 rng(core::derive_seed(options_.seed, {0x10F6, static_cast<uint64_t>(index)}));
  int64_t words = 0;
  const int filler =
      split == Split::Train && options_.long_train_filler_words >= 0 ? options_.long_train_filler_words : options_.long_filler_words;
  while (words < filler) {
    std::string sentence = filler_sentence(rng());
    words += std::count(sentence.begin(), sentence.end(), ' ') + 1;
    doc.text += " " + sentence;
  }
  return doc;
}

SynthSummary write_world(const SynthWorld& world, const std::string& dir,
                         const std::function<void(int64_t, int64_t)>& progress) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) core::fail("synth.out_dir: cannot create '{}': {}", dir, ec.message());
  SynthSummary summary;
  const std::string corpus_path = dir + "/corpus.txt";
  std::ofstream corpus(corpus_path + ".tmp", std::ios::binary);
  if (!corpus) core::fail("cannot write '{}'", corpus_path + ".tmp");

  const int64_t total = world.options().entities;
  int64_t done = 0;
  for (Split split : {Split::Pretrain, Split::Train, Split::Valid, Split::Test}) {
    io::JsonlWriter out(dir + "/" + split_name(split) + ".jsonl");
    auto [begin, end] = world.split_range(split);
    for (int64_t index = begin; index < end; ++index) {
      Document doc = world.document(index, split, index - begin);
      out.write(to_json(doc));
      ++summary.documents[static_cast<int>(split)];
      summary.questions += static_cast<int64_t>(doc.qa.size());
      // The tokenizer corpus: what pretraining will read (never the evaluation splits).
      if (split == Split::Pretrain || split == Split::Train) {
        corpus << doc.text << '\n';
        // Questions without their context: the tokenizer needs their words, not the context again.
        for (const QA& q : doc.qa) corpus << "Question: " << q.question << " Answer: " << q.answers[0] << '\n';
      }
      if (progress && (++done % 1000 == 0 || done == total)) progress(done, total);
    }
    out.close();
  }
  corpus.close();
  std::filesystem::rename(corpus_path + ".tmp", corpus_path, ec);
  if (ec) core::fail("cannot write '{}': {}", corpus_path, ec.message());
  summary.corpus_bytes = static_cast<int64_t>(std::filesystem::file_size(corpus_path));

  if (world.options().long_documents) {
    auto write_long = [&](Split split, const std::string& name, int64_t wanted) {
      io::JsonlWriter out(dir + "/" + name);
      auto [begin, end] = world.split_range(split);
      const int64_t count = std::min(wanted, end - begin);
      for (int64_t k = 0; k < count; ++k) out.write(to_json(world.long_document(begin + k, k, split)));
      out.close();
      return count;
    };
    summary.long_documents = write_long(Split::Test, "long_test.jsonl", world.options().long_documents_count);
    if (world.options().long_train_count > 0)
      summary.long_train_documents = write_long(Split::Train, "long_train.jsonl", world.options().long_train_count);
  }

  const auto& o = world.options();
  nlohmann::json manifest{
      {"format", "engram-synth-world"},
      {"version", 1},
      {"seed", o.seed},
      {"entities", o.entities},
      {"documents", {{"pretrain", summary.documents[0]}, {"train", summary.documents[1]},
                     {"valid", summary.documents[2]}, {"test", summary.documents[3]}}},
      {"questions", summary.questions},
      {"long_documents", summary.long_documents},
      {"long_train_documents", summary.long_train_documents},
      {"facts_per_document", {o.min_facts, o.max_facts}},
      {"distractors", o.distractors},
      {"sparse", o.sparse},
      {"heldout_domains", o.heldout_domains},
  };
  nlohmann::json kinds = nlohmann::json::array();
  std::vector<std::pair<const KindSpec*, const char*>> made;  // each kind and the splits it is in
  for (const auto& kind : world_kinds()) made.emplace_back(&kind, o.heldout_domains ? "pretrain, train" : "all");
  if (o.heldout_domains)
    for (const auto& kind : heldout_kinds()) made.emplace_back(&kind, "valid, test");
  for (const auto& [kind_ptr, splits] : made) {
    const KindSpec& kind = *kind_ptr;
    nlohmann::json attributes = nlohmann::json::array();
    for (const auto& a : kind.attributes)
      attributes.push_back({{"name", a.name}, {"values", a.values->size()}, {"statements", a.statements.size()},
                            {"train_questions", a.train_questions.size()},
                            {"heldout_questions", a.heldout_questions.size()}});
    kinds.push_back({{"kind", kind.name}, {"splits", splits}, {"attributes", attributes}});
  }
  manifest["kinds"] = kinds;
  std::ofstream(dir + "/world.json") << manifest.dump(2) << '\n';
  return summary;
}

}  // namespace engram::data
