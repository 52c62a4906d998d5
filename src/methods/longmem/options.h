#pragma once
// longmem.* options and the typed LongMemOptions they describe (specs/longmem.md).
#include <cstdint>
#include <string>
#include <vector>

#include "data/options.h"
#include "methods/longmem/memory.h"
#include "methods/longmem/sidenet.h"
#include "train/trainer.h"

namespace engram::config {
class Config;
class Schema;
}

namespace engram::longmem {

struct LongMemOptions {
  std::string base_model;              // base.model: the frozen backbone
  std::string out_dir;                 // sidenet.h5, checkpoints, metrics, eval.json
  std::vector<std::string> train_data; // the training stream's documents, in order
  int64_t seq_len = 256;               // T: the window of the backbone and the SideNet, one segment
  SideNetConfig sidenet;
  int64_t chunk = 4;                   // tokens per memory chunk (csz)
  int64_t memory_tokens = 8192;        // M per rank
  MemorySearch search;                 // exact, or IVF (longmem.ivf_lists, longmem.ivf_probe)
  std::string recall_data;             // long documents: facts early, questions at the end
  int64_t recall_documents = 100;      // of them, evaluated after training (0: all)
  int64_t max_new_tokens = 8;
  train::TrainOptions train;           // longmem.train.*; micro_batch = rows per rank
  data::ReadOptions read;
  uint64_t seed = 1234;
  std::string config_yaml;

  MemoryShape memory_shape(int64_t heads, int64_t head_dim) const {
    return MemoryShape{heads, head_dim, chunk, memory_tokens};
  }
};

void declare_longmem_options(config::Schema& schema);
LongMemOptions longmem_options_from(const config::Config& config);

}  // namespace engram::longmem
