#include "app/command.h"
#include "data/options.h"
#include "data/reading_aids.h"
#include "data/synth.h"
#include "dist/options.h"
#include "eval/options.h"
#include "methods/longmem/options.h"
#include "methods/selfparam/options.h"
#include "pretrain/pretrain.h"
#include "methods/mac/options.h"
#include "model/decoder.h"
#include "train/trainer.h"

namespace engram::app {

config::Schema full_schema() {
  config::Schema schema;
  schema.add_string("log.level", "info", "log level", {"trace", "debug", "info", "warn", "error"});
  schema.add_bool("log.all_ranks", false, "print info messages from every rank, not only rank 0");
  schema.add_int("run.seed", 1234, "base random seed; every stream (rank, epoch, ...) is derived from it");
  dist::declare_options(schema);
  data::declare_synth_options(schema);
  declare_tokenizer_options(schema);
  data::declare_data_options(schema);
  data::declare_reading_aid_options(schema);
  model::declare_model_options(schema);
  train::TrainOptions pretraining;
  pretraining.steps = 600;
  train::declare_train_options(schema, "train", pretraining);
  // MAC meta-training (specs/mac.md 2): Adam, constant schedule after a 1% warm-up, clipping at
  // 100, no weight decay; lr 1e-4 rather than the reference's 1e-5, which is too small for
  // modules trained from scratch (section 7).
  train::TrainOptions meta;
  meta.steps = 600;
  meta.lr = 1e-4;
  meta.schedule = train::Schedule::Kind::Constant;
  meta.warmup_steps = 6;
  meta.weight_decay = 0.0;
  meta.beta2 = 0.999;
  meta.clip_norm = 100.0;
  train::declare_train_options(schema, "mac.train", meta);
  eval::declare_shared_options(schema);
  pretrain::declare_pretrain_options(schema);
  mac::declare_mac_options(schema);
  selfparam::declare_selfparam_options(schema);
  longmem::declare_longmem_options(schema);
  return schema;
}

const std::vector<Command>& commands() {
  static const std::vector<Command> all = {doctor_command(), synth_command(), tokenizer_command(),
                                            data_command(), pretrain_command(),
                                            generate_command(), convert_command(),
                                            eval_command(), mac_train_command(),
                                            mac_memorize_command(), mac_answer_command(),
                                            mac_eval_command(), inject_command(),
                                            selfparam_eval_command(), longmem_train_command(),
                                            longmem_ppl_command()};
  return all;
}

}  // namespace engram::app
