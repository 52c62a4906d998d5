#pragma once
// Training checkpoints: one HDF5 file per step, written by every rank of the job together.
//
//   <dir>/step_00000100.h5     /meta     attributes: format, version, step, world, config (YAML),
//                                        build, and the trainer's counters
//                              /model/<name>         full tensors (rank 0 writes)
//                              /optim/<name>/<state> full tensors flattened to 1-D, each rank
//                                                    writing its ShardSpec row range (hyperslab)
//                              /rng/<rank>, /data/<rank>   per-rank generator and cursor bytes
//                              /state/<name>/<rank>  the caller's per-rank state (1-D), if any
//   <dir>/step_00000100.done   commit marker
//
// Commit protocol: write step_N.h5.tmp, close, barrier; rank 0 renames it to step_N.h5, then
// writes step_N.done (itself via a temporary and a rename). Resume takes the newest step that has
// both files. A crash or kill -9 at any moment leaves every committed step intact; an
// uncommitted one is ignored (and its leftovers removed by the next save).
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "dist/mpi_handle.h"

namespace engram::dist {
class Communicator;
}

namespace engram::train {

struct CheckpointData {
  int64_t step = 0;
  int world = 1;  // world size of the job that saved it
  std::map<std::string, int64_t> counters;            // trainer's integers (examples seen, ...)
  std::map<std::string, double> values;               // trainer's numbers (tokens seen, ...)
  std::string config_yaml;
  std::vector<std::pair<std::string, at::Tensor>> model;  // name -> tensor
  std::vector<std::pair<std::string, at::Tensor>> optim;  // "<param>/<state>" -> tensor
  // Optimizer state saved in pieces (train.zero's sharded state): every rank lists the same names
  // and sizes in the same order, each with its own rows [offset, offset + rows.numel()) of the
  // 1-D global tensor; together the ranks' pieces cover it once. Loaded back whole into `optim`.
  struct Piece {
    std::string name;
    int64_t numel = 0;
    int64_t offset = 0;
    at::Tensor rows;
  };
  std::vector<Piece> optim_pieces;
  at::Tensor rng;   // this rank's generator state (uint8); undefined after a load at another world size
  at::Tensor data;  // this rank's data cursor (int64); same
  // The caller's per-rank tensors (Trainer::keep_rank_state), saved flattened. Every rank saves the
  // same names with the same dtype. Empty after a load at another world size.
  std::map<std::string, at::Tensor> rank_state;
};

class CheckpointStore {
 public:
  // `mpi_comm`: the job's MPI communicator handle for parallel HDF5 (none for one process).
  CheckpointStore(std::string dir, dist::Communicator& comm, dist::MpiHandle mpi_comm, int keep_last = 3);

  // Collective: every rank calls it with its own rng/data and the same model/optim.
  void save(const CheckpointData& data);
  // The newest committed step in the directory, if any (same answer on every rank).
  std::optional<int64_t> latest() const;
  // Collective. Model and optimizer tensors come back whole on every rank; rng/data only when
  // the saving world size equals this one.
  CheckpointData load(int64_t step) const;
  // Collective: the newest committed step that loads on every rank, nullopt when none is
  // committed. A damaged one (a broken disk, a bad copy) is reported and the one before it taken;
  // when every committed step is damaged -> UserError (starting afresh would drop them silently).
  std::optional<CheckpointData> load_latest() const;

  std::string file_of(int64_t step) const;
  const std::string& dir() const { return dir_; }

 private:
  std::vector<int64_t> committed_steps() const;  // newest first, the same on every rank
  std::string dir_;
  dist::Communicator& comm_;
  dist::MpiHandle mpi_comm_;
  int keep_last_;
};

}  // namespace engram::train
