#pragma once
// The evaluation seam (DESIGN.md, "Evaluation: one stream, one table"): every way of keeping a
// model current is a Contender. The seam gives each the same test stream and the same questions,
// times its absorption of the stream, measures its peak memory, and puts its rows into one
// table. A contender does two things: absorb the stream's documents in order, then answer
// questions; one with curves also answers as it was after the stream's first n documents.
//
// Adding one: a class deriving from Contender in its method's folder, a function returning its
// ContenderSpec, and one line in app/contenders.cpp (docs/architecture.md).
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "dist/mpi_handle.h"
#include "eval/options.h"
#include "eval/qa_eval.h"
#include "eval/stream.h"
#include "model/language_model.h"

namespace engram::config {
class Config;
}
namespace engram::dist {
class Communicator;
}

namespace engram::eval {

// One row of the table. A contender's first row is the contender itself; more rows are its
// ablations (MAC: flat against hierarchical, the gold document only or removed).
struct Row {
  std::string name;
  QaEvalResult scores;
  std::vector<std::pair<std::string, double>> extras;  // method-specific figures for results.json
};

// What every contender may use; built once per `engram eval`.
class EvalContext {
 public:
  EvalContext(const config::Config& config, EvalOptions options, dist::Communicator& comm, dist::MpiHandle mpi_comm);
  const config::Config& config;  // each contender builds its own typed options from it
  const EvalOptions options;
  dist::Communicator& comm;
  dist::MpiHandle mpi_comm;  // the job's MPI communicator for parallel HDF5 (none for one process)
  // The frozen base LM of base.model with its tokenizer, loaded on first use and shared.
  model::LanguageModel& base();
  // Stream lengths at which the curves ask answer_after (sorted, within the stream).
  std::vector<int64_t> curve_points;

 private:
  model::LanguageModel base_;
};

class Contender {
 public:
  virtual ~Contender() = default;
  // Reads the stream's documents in stream order (the adaptation the table times). Collective.
  // Returns the extra storage this contender keeps per document, in bytes.
  virtual double absorb(const Stream& stream, EvalContext& ctx) = 0;
  // Rows for `questions` after the whole stream was absorbed. Collective.
  virtual std::vector<Row> answer(const Stream& stream, const std::vector<StreamQuestion>& questions,
                                  EvalContext& ctx) = 0;
  // Whether answer_after is meaningful (the curves: F1 against documents absorbed, retention).
  virtual bool has_curves() const { return false; }
  // Scores for `questions` as the contender was after the stream's first `documents` documents
  // (one of ctx.curve_points). Collective.
  virtual QaEvalResult answer_after(int64_t documents, const Stream& stream,
                                    const std::vector<StreamQuestion>& questions, EvalContext& ctx);
};

struct ContenderSpec {
  std::string key;      // what --methods names, e.g. "mac"
  std::string summary;  // one line for `engram eval --help`
  std::function<std::unique_ptr<Contender>(EvalContext&)> make;
};

class ContenderRegistry {
 public:
  void add(ContenderSpec spec);  // a key given twice -> core::InternalError
  // An unknown key -> core::UserError listing the known ones.
  const ContenderSpec& find(const std::string& key) const;
  const std::vector<ContenderSpec>& all() const { return specs_; }
  std::vector<std::string> keys() const;

 private:
  std::vector<ContenderSpec> specs_;
};

// Answers `questions` with a plain decoder from a prompt: "Question: q Answer:" (closed book) or
// with the question's document before it. Used by the baselines and SELF-PARAM's rows.
QaEvalResult answer_with_prompts(model::Decoder& lm, const text::Tokenizer& tokenizer, const Stream& stream,
                                 const std::vector<StreamQuestion>& questions, data::PromptFormat format,
                                 int64_t max_new_tokens, dist::Communicator& comm);

}  // namespace engram::eval
