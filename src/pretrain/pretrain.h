#pragma once
// Pretraining the base LM from scratch (engram pretrain), data parallel and resumable. On the
// synthetic world each pretraining document becomes one reading sequence ("Context: <doc>
// Question: <q> Answer: <a>" ...), so the model learns to read a context and answer while the
// evaluation entities stay unknown to it; then it measures exactly that on pretrain.eval_data.
#include <cstdint>
#include <string>
#include <vector>

#include "dist/mpi_handle.h"
#include "data/readers.h"
#include "data/reading_aids.h"
#include "eval/qa_eval.h"
#include "model/decoder.h"
#include "train/trainer.h"

namespace engram::config {
class Config;
class Schema;
}  // namespace engram::config
namespace engram::dist {
class Communicator;
}

namespace engram::pretrain {

void declare_pretrain_options(config::Schema& schema);

struct PretrainOptions {
  std::vector<std::string> data;  // pretrain.data
  std::string out_dir;            // pretrain.out_dir
  std::string tokenizer;          // tokenizer.model
  int64_t seq_len = 256;
  bool context_loss = false;
  std::string eval_data;          // pretrain.eval_data
  int64_t eval_questions = 400;
  int64_t seed = 1234;            // run.seed: the same initial weights on every rank
  model::DecoderConfig architecture;  // model.*
  bool activation_checkpointing = false;
  train::TrainOptions train;      // train.*
  data::ReadOptions read;         // data.*
  data::ReadingAids aids;         // aids.*: questions made from the pretraining documents
  std::string config_yaml;        // stored in checkpoints and the model file
};
PretrainOptions pretrain_options_from(const config::Config& config);

struct PretrainReport {
  bool stopped = false;  // by SIGTERM/SIGUSR1: saved, run again to continue
  train::TrainResult training;
  int64_t parameters = 0;
  eval::QaEvalResult in_context, closed_book;  // on pretrain.eval_data
  std::string model_path, report_path;         // model.h5, eval.json
};

// Collective. `mpi_comm`: the job's MPI communicator for parallel HDF5 (null for one process).
PretrainReport pretrain_base_lm(const PretrainOptions& options, dist::Communicator& comm, dist::MpiHandle mpi_comm);

}  // namespace engram::pretrain
