#include "methods/longmem/options.h"

#include "config/config.h"
#include "core/error.h"

namespace engram::longmem {

using config::Range;

void declare_longmem_options(config::Schema& s) {
  s.add_string("longmem.out_dir", "runs/longmem", "sidenet.h5, checkpoints/, metrics.jsonl, eval.json");
  s.add_list("longmem.train_data", {"runs/quickstart/data/long_train.jsonl"},
             "the training stream: documents (with questions: laid out as pretraining reads them) or plain text, "
             "one token stream cut into contiguous rows (Transformer-XL style)");
  s.add_int("longmem.seq_len", 256, "T: tokens per segment, the backbone's and the SideNet's window",
            Range::at_least(8));
  s.add_int("longmem.reduction", 2, "backbone layers per SideNet layer (side layer i starts as block r i + r - 1)",
            Range::at_least(1));
  s.add_int("longmem.memory_layer", -1,
            "backbone layer whose keys and values fill the memory; side layer memory_layer / reduction reads it "
            "(-1: the last layer r j + r - 1 at or below 0.7 L: 17 of 24 as the reference)", Range::at_least(-1));
  s.add_int("longmem.retrieve_tokens", 32, "K: memory tokens each query reads per head (K / chunk chunks)",
            Range::at_least(1));
  s.add_int("longmem.chunk", 4, "tokens per memory chunk (a chunk is found by its mean key)", Range::at_least(1));
  s.add_int("longmem.memory_tokens", 8192, "M: memory capacity per rank in tokens (FIFO beyond)", Range::at_least(1));
  s.add_int("longmem.ivf_lists", 0,
            "approximate search: faiss IVF lists per head, trained once the memory holds 39 chunks per list "
            "(0: exact search)",
            Range::at_least(0));
  s.add_int("longmem.ivf_probe", 8, "IVF lists visited per query (more: closer to exact, slower)", Range::at_least(1));
  s.add_float("longmem.dropout", 0.1, "SideNet residual and attention dropout in training", Range::between(0, 0.9));
  s.add_float("longmem.gate_scale", 1.0,
              "the memory gate is learnt as g / gate_scale, so it moves gate_scale times faster than the weights "
              "(1: as the reference, which trains 100k steps)",
              Range::at_least(1e-3));
  s.add_bool("longmem.memory", true,
             "false: train the SideNet without its memory path (the capacity-matched control of longmem-ppl)");
  s.add_string("longmem.recall_data", "runs/quickstart/data/long_test.jsonl",
               "long documents (facts early, filler, questions at the end) for the beyond-window recall");
  s.add_int("longmem.recall_documents", 100, "of them, evaluated after longmem-train (0 = all)", Range::at_least(0));
  s.add_int("longmem.max_new_tokens", 8, "answer tokens generated per question", Range::at_least(1));
  train::TrainOptions defaults;
  defaults.steps = 400;
  defaults.micro_batch = 8;
  defaults.lr = 2e-4;
  defaults.schedule = train::Schedule::Kind::Linear;
  defaults.warmup_steps = 0;
  defaults.min_lr_ratio = 0.0;
  defaults.beta1 = 0.9, defaults.beta2 = 0.98, defaults.eps = 1e-6;
  defaults.clip_norm = 1.0;
  train::declare_train_options(s, "longmem.train", defaults);
}

LongMemOptions longmem_options_from(const config::Config& c) {
  LongMemOptions o;
  o.base_model = c.get_string("base.model");
  o.out_dir = c.get_string("longmem.out_dir");
  o.train_data = c.get_list("longmem.train_data");
  o.seq_len = c.get_int("longmem.seq_len");
  o.sidenet.reduction = c.get_int("longmem.reduction");
  o.sidenet.memory_layer = c.get_int("longmem.memory_layer");
  o.sidenet.retrieve_tokens = c.get_int("longmem.retrieve_tokens");
  o.sidenet.dropout = c.get_float("longmem.dropout");
  o.sidenet.memory = c.get_bool("longmem.memory");
  o.sidenet.gate_scale = c.get_float("longmem.gate_scale");
  o.chunk = c.get_int("longmem.chunk");
  o.memory_tokens = c.get_int("longmem.memory_tokens");
  o.search.ivf_lists = c.get_int("longmem.ivf_lists");
  o.search.ivf_probe = c.get_int("longmem.ivf_probe");
  if (o.memory_tokens % o.chunk != 0)
    core::fail("longmem.memory_tokens {} must be a multiple of longmem.chunk {}", o.memory_tokens, o.chunk);
  if (o.sidenet.retrieve_tokens % o.chunk != 0)
    core::fail("longmem.retrieve_tokens {} must be a multiple of longmem.chunk {}", o.sidenet.retrieve_tokens, o.chunk);
  o.recall_data = c.get_string("longmem.recall_data");
  o.recall_documents = c.get_int("longmem.recall_documents");
  o.max_new_tokens = c.get_int("longmem.max_new_tokens");
  o.train = train::train_options_from(c, "longmem.train");
  o.train.out_dir = o.out_dir;
  o.read = data::read_options_from(c);
  o.seed = static_cast<uint64_t>(c.get_int("run.seed"));
  o.train.seed = o.seed;
  o.config_yaml = c.to_yaml();
  return o;
}

}  // namespace engram::longmem
