#pragma once
// Validation during meta-training (mac.eval_every, as the reference evaluates every epoch and
// keeps the best): the last mac.val_bank documents of the training stream are held out of
// training; every N steps the current modules memorize them into mac.out_dir/val_bank.h5 and
// answer up to mac.val_questions of their questions as MAC itself answers (mac.aggregation,
// mac.select; no retriever). The F1 goes to the log and to validation.jsonl; the best so
// far is kept as mac.out_dir/best.h5, its step and F1 in best.json, and the commands that read a
// trained MAC use it (trained_model_path). A fresh run (no checkpoint) removes an earlier run's.
#include <cstdint>
#include <string>
#include <vector>

#include "data/document.h"
#include "dist/mpi_handle.h"
#include "eval/stream.h"
#include "methods/mac/system.h"

namespace engram::config {
class Config;
}
namespace engram::dist {
class Communicator;
}

namespace engram::mac {

struct ValidationOptions {
  int64_t every = 0;       // steps between validations (0: none)
  int64_t documents = 0;   // held out from the end of the training stream
  int64_t questions = 0;   // asked of them at most
};
ValidationOptions validation_options_from(const config::Config& config);

class Validator {
 public:
  // `documents`: the held-out documents (taken by the caller from the training stream).
  Validator(const config::Config& config, std::vector<data::Document> documents);
  // Collective, at `step` (a multiple of every): the F1 over the held-out bank; saves best.h5
  // when it is the best so far. Leaves the modules in eval mode: the caller switches back.
  double validate(MacSystem& system, int64_t step, dist::Communicator& comm, dist::MpiHandle mpi_comm);
  double best_f1() const { return best_f1_; }

 private:
  const config::Config& config_;
  std::vector<data::Document> documents_;
  std::vector<eval::StreamQuestion> questions_;
  std::string out_dir_;
  double best_f1_ = -1;
  int64_t best_step_ = -1;
};

// mac.out_dir/best.h5 when validation kept one, else mac.out_dir/mac.h5.
std::string trained_model_path(const config::Config& config);

}  // namespace engram::mac
