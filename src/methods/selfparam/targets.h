#pragma once
// SELF-PARAM's target sentences (specs/selfparam.md 2): a model reads each document and samples
// "Question: q Answer: a" lines at temperature 1, E x K per document (a fresh slice of K each
// epoch). By default the model is the teacher itself (the paper's own-model ablation; engram's
// base LMs were pretrained on this reading format). A sampled question that repeats an evaluated
// question is dropped and counted: the injection never sees the test.
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "data/document.h"
#include "methods/selfparam/options.h"
#include "model/decoder.h"

namespace engram::dist {
class Communicator;
}
namespace engram::text {
class Tokenizer;
}

namespace engram::selfparam {

struct TargetSet {
  std::vector<std::vector<std::string>> per_document;  // [document][E K] "Question: q Answer: a\n"
  int64_t sampled = 0;           // well-formed pairs drawn, over all documents
  int64_t dropped_test = 0;      // of those, pairs asking an evaluated question (dropped)
  int64_t short_documents = 0;   // documents with fewer pairs than E K drawn (their pairs repeat)
  int64_t empty_documents = 0;   // documents with no pair at all (no QA term for them)
};

// A TargetSet as JSON text, and back (ranks exchange their shares so; engram inject keeps each
// part's targets beside its checkpoints). Text that is not such JSON -> core::UserError naming `source`.
std::string targets_to_json(const TargetSet& targets);
TargetSet targets_from_json(const std::string& text, const std::string& source);

// The complete "Question: q Answer: a" pairs of a generated text, each ending with the newline that
// ended its answer; pieces cut off before their answer ended, or with an empty side, are skipped.
std::vector<std::string> parse_qa_pairs(const std::string& text);
// Lower case, single spaces, no surrounding space or final '?': how questions are compared.
std::string normalize_question(const std::string& question);
// The normalised questions of `documents`: what no target may ask.
std::set<std::string> questions_of(const std::vector<data::Document>& documents);
// The question of a "Question: q Answer: a" pair, normalised.
std::string question_of_pair(const std::string& pair);

// The tokens of a target as engram's pretraining lays out a question: "Question: q Answer:" and
// " a\n" encoded apart (the answer's leading space is its own piece, as the model generates it).
// Text without " Answer:" (FT(C)'s documents) is encoded whole.
std::vector<int32_t> encode_target(const text::Tokenizer& tokenizer, const std::string& pair);

// Samples targets for `documents` with `generator` (collective: documents are split across ranks,
// every rank returns the whole set). `excluded`: normalised questions never to use.
TargetSet sample_targets(model::Decoder& generator, const text::Tokenizer& tokenizer,
                         const std::vector<std::string>& documents, const std::set<std::string>& excluded,
                         const SelfParamOptions& options, dist::Communicator& comm);

// The ablation's targets (Targets::World): each document's own questions that are not held out,
// as "Question: q Answer: a" pairs, E x K of them by repetition. A pair whose question is also a
// held-out question of any document is dropped and counted.
TargetSet world_targets(const std::vector<data::Document>& documents, const SelfParamOptions& options);

}  // namespace engram::selfparam
