#pragma once
// engram inject's checkpoints: an injection is a long run like any training and resumes like one.
// They live in <out>/checkpoints (train::CheckpointStore: parallel HDF5, commit markers, the newest
// committed one wins). A checkpoint stands at a Position: `part` documents' injections finished
// (sequential mode injects one document per part; batch mode has one part) and `step` optimizer
// steps done inside the next one. Inside a part it holds the model with its LoRA adapters, AdamW's
// state, the CPU generator and each rank's split generator and term (C) cursor; between parts the
// merged model alone. Each part's target sentences are kept beside them (targets_<part>.json), so a
// resumed run distils the same sentences without sampling them again.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "dist/mpi_handle.h"
#include "methods/selfparam/targets.h"
#include "train/checkpoint.h"

namespace engram::dist {
class Communicator;
}

namespace engram::selfparam {

class InjectionCheckpoints {
 public:
  struct Position {
    int64_t part = 0;      // parts finished
    int64_t step = 0;      // optimizer steps done in part `part` (0: between parts)
    int64_t job_step = 0;  // optimizer steps done in the whole job
  };

  // Reads the newest committed checkpoint of `dir`, if any (collective). `save_every`: optimizer
  // steps between checkpoints (0: only when a stop signal arrives).
  InjectionCheckpoints(std::string dir, dist::Communicator& comm, dist::MpiHandle mpi_comm, int64_t save_every,
                       std::string config_yaml);
  ~InjectionCheckpoints();

  const std::string& dir() const { return store_.dir(); }
  // Where the newest checkpoint stands ({0, 0, 0} when there is none).
  Position resumed_at() const { return resumed_at_; }
  // Its contents when it stands inside part `part` (the injection continues from it), else null.
  const train::CheckpointData* inside(int64_t part) const;
  // Its contents when it stands between parts, else null.
  const train::CheckpointData* between_parts() const;
  std::string resumed_file() const;

  // After job step `job_step`: whether to save now (every save_every steps, or a stop signal on any
  // rank; collective). After a true, stop_requested() tells whether the run must end once saved.
  bool save_due(int64_t job_step);
  bool stop_requested() const { return stop_; }
  // Saves `data` (the caller's model, optimizer and per-rank state) at `at` (collective).
  void save(const Position& at, train::CheckpointData data);

  // Part `part`'s targets from an earlier run, if it kept them.
  std::optional<TargetSet> kept_targets(int64_t part) const;
  void keep_targets(int64_t part, const TargetSet& targets);  // rank 0 writes; collective

 private:
  dist::Communicator& comm_;
  train::CheckpointStore store_;
  int64_t save_every_;
  std::string config_yaml_;
  std::optional<train::CheckpointData> resumed_;
  Position resumed_at_;
  int64_t last_saved_ = 0;
  bool stop_ = false;
};

}  // namespace engram::selfparam
