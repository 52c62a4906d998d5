#pragma once
// SELF-PARAM's three protocols (specs/selfparam.md 3) on the documents of a test stream, each
// answered closed book ("Question: q Answer:") on the documents' own questions:
//   single      each document injected into a fresh copy of the base LM (documents split across
//               ranks), beside FT(S) and FT(C) with the same targets and steps, and the base LM
//               closed book and with the document in its prompt, on the same questions;
//   batch       the documents injected together in one injection (targets split across ranks),
//               beside FT(S), with locality: other documents read in context, perplexity of their
//               text and the KL to the base LM on it, before and after;
//   sequential  documents injected one after another; F1[i][j] on document j after i injections,
//               with and without term (C).
// Each returns its part of selfparam-eval's results.json.
#include <cstdint>

#include <nlohmann/json.hpp>

#include "eval/stream.h"
#include "methods/selfparam/injector.h"
#include "model/language_model.h"

namespace engram::dist {
class Communicator;
}

namespace engram::selfparam {

struct ExperimentContext {
  model::LanguageModel& base;
  const eval::Stream& stream;  // injected documents first; locality reads those after them
  Injector& injector;
  dist::Communicator& comm;
  int64_t max_new_tokens = 16;
};

nlohmann::json run_single(ExperimentContext& ctx, int64_t documents);
nlohmann::json run_batch(ExperimentContext& ctx, int64_t documents, int64_t locality_documents);
nlohmann::json run_sequential(ExperimentContext& ctx, int64_t documents);

// What an injection did to what it should not touch, on stream documents [first, first + count):
// in-context F1 on their questions, perplexity of their text, and KL(base || model) per token on it.
struct Locality {
  double in_context_f1 = 0, in_context_f1_heldout = 0, perplexity = 0, kl_to_base = 0;
  nlohmann::json to_json() const;
};
Locality measure_locality(model::Decoder& model, model::LanguageModel& base, const eval::Stream& stream,
                          int64_t first, int64_t count, int64_t max_new_tokens, dist::Communicator& comm);

// The texts of stream documents [first, first + count) (what injections read).
std::vector<data::Document> documents_of(const eval::Stream& stream, int64_t first, int64_t count);

}  // namespace engram::selfparam
