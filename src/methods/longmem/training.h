#pragma once
// engram longmem-train (specs/longmem.md 2): the SideNet (and its gates) learn next-token
// prediction over the frozen backbone, reading a memory of the stream's earlier segments.
//   - The training documents become one token stream (documents with questions laid out as
//     pretraining reads them: the questions then come long after their facts), cut into
//     world x micro_batch contiguous passages; rank r owns rows r B .. r B + B - 1, and step t
//     reads block t of each (Transformer-XL style: a row's consecutive steps are consecutive text).
//   - Each rank has its own memory, shared by its rows and cleared at every epoch's start; each
//     step reads it, then writes the step's keys and values (retrieve before write).
//   - The Trainer does the rest: data-parallel gradient averaging, AdamW (the reference's Adam
//     betas 0.9 / 0.98, eps 1e-6, linear decay), checkpoints with each rank's memory, resume.
// At the end rank 0 writes <out_dir>/sidenet.h5 and every rank evaluates the beyond-window recall.
#include <cstdint>
#include <string>
#include <vector>

#include "data/document.h"
#include "dist/mpi_handle.h"
#include "methods/longmem/evaluation.h"
#include "methods/longmem/options.h"
#include "train/trainer.h"

namespace engram::dist {
class Communicator;
}
namespace engram::text {
class Tokenizer;
}

namespace engram::longmem {

// The documents of `paths`: a .txt file is one document (its whole text), other files go through
// the dataset readers.
std::vector<data::Document> read_documents(const std::vector<std::string>& paths, const data::ReadOptions& read);
// One token stream: each document's reading layout (or its text), a newline after each.
std::vector<int32_t> stream_tokens(const std::vector<data::Document>& documents, const text::Tokenizer& tokenizer);

struct TrainReport {
  train::TrainResult training;
  bool stopped = false;
  int64_t stream_tokens = 0;
  int64_t steps_per_epoch = 0;
  std::string sidenet_path;  // <out_dir>/sidenet.h5
  std::vector<double> memory_share;  // sigma(g) per head of the memory layer: the memory's weight
  RecallReport recall;
};

TrainReport train_longmem(const LongMemOptions& options, dist::Communicator& comm, dist::MpiHandle mpi_comm);

}  // namespace engram::longmem
