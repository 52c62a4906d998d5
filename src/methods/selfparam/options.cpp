#include "methods/selfparam/options.h"

#include "config/config.h"
#include "core/error.h"

namespace engram::selfparam {

using config::Range;
using O = SelfParamOptions;

void declare_selfparam_options(config::Schema& s) {
  s.add_string("selfparam.targets", "self",
               "target sentences: self (the teacher reads the document and samples \"Question: .. Answer: ..\") or "
               "generator (selfparam.generator does; rows are labelled with it) or world (each document's own "
               "training-phrased questions, not the held-out ones: an ablation, labelled, never the method's row)",
               core::enum_choices<O::Targets>());
  s.add_string("selfparam.generator", "", "targets: generator: an engram model (file or folder) or HF folder");
  s.add_int("selfparam.epochs", 20, "E: passes over the documents, a fresh slice of targets each", Range::at_least(1));
  s.add_int("selfparam.per_epoch", 10, "K: target sentences per document per epoch", Range::at_least(1));
  s.add_float("selfparam.sample_temperature", 1.0, "temperature of the sampled targets", Range::at_least(1e-3));
  s.add_int("selfparam.sample_tokens", 48, "tokens per sampled draw (each draw yields several questions)",
            Range::at_least(4));
  s.add_float("selfparam.temperature", 1.0, "distillation temperature T (the loss is scaled by T^2)",
              Range::at_least(1e-3));
  s.add_string("selfparam.reduction", "mean",
               "KL reduction: mean (over tokens and vocabulary, as F.kl_div's default: the reference) or token "
               "(the per-token KL averaged over tokens)",
               core::enum_choices<O::Reduction>());
  s.add_bool("selfparam.continuation", true, "term (B): continue the document after a random split");
  s.add_bool("selfparam.unrelated", true, "term (C): stay close to the teacher on unrelated text");
  s.add_string("selfparam.unrelated_teacher", "base",
               "term (C)'s teacher: base (the document prepended, the reference's default) or none",
               core::enum_choices<O::UnrelatedTeacher>());
  s.add_string("selfparam.unrelated_file", "",
               "term (C)'s text: a jsonl of documents or a plain-text file, read in order (\"\" = base.model's "
               "pretraining data is not known here: required when selfparam.unrelated is on)");
  s.add_int("selfparam.unrelated_tokens", 256, "term (C)'s text truncated to this many tokens", Range::at_least(8));
  s.add_string("selfparam.update", "lora", "what is trained: lora (merged into the weights afterwards) or mlp "
               "(every MLP weight, full rank)", core::enum_choices<O::Update>());
  s.add_int("selfparam.lora.rank", 8, "LoRA rank r", Range::at_least(1));
  s.add_float("selfparam.lora.alpha", 32, "LoRA alpha (scale alpha / r)", Range::at_least(0));
  s.add_float("selfparam.lora.dropout", 0.1, "dropout on the LoRA input (training only)", Range::between(0, 0.9));
  s.add_list("selfparam.lora.targets", {},
             "adapted linears ([] = by architecture: q,k,v,o,up,down for GPT-2's c_attn/c_proj/c_fc, "
             "q,k,v,gate,up,down for LLaMA)");
  s.add_float("selfparam.lr", 1e-3, "AdamW learning rate (the reference's 2e-5 is for 7B models)",
              Range::at_least(0));
  s.add_float("selfparam.weight_decay", 0.01, "AdamW weight decay", Range::at_least(0));
  s.add_int("selfparam.zero", 0, "ZeRO stage of the injection's AdamW, as train.zero", Range::between(0, 2));
  s.add_int("selfparam.batch", 1, "target sentences per optimizer step per rank (the reference: 1)",
            Range::at_least(1));
  s.add_string("selfparam.adapter", "merge",
               "sequential injection: merge (merge, a fresh adapter, the current model as the next teacher) or "
               "reset (the released code's behaviour: the student restarts from the base weights each time)",
               core::enum_choices<O::Adapter>());
  s.add_int("selfparam.seed", 1234, "seed of the targets' sampling, the shuffles and the splits");
  s.add_string("selfparam.out_dir", "runs/selfparam", "where engram inject and selfparam-eval write");
  s.add_int("selfparam.single_documents", 50, "selfparam-eval: documents injected one at a time",
            Range::at_least(1));
  s.add_int("selfparam.batch_documents", 100, "selfparam-eval: documents injected together", Range::at_least(1));
  s.add_int("selfparam.sequential_documents", 20, "selfparam-eval: documents injected in turn",
            Range::at_least(2));
  s.add_int("selfparam.locality_documents", 200, "other test entities read in context, before and after",
            Range::at_least(0));
  s.add_int("selfparam.save_every", 0,
            "engram inject: checkpoint the injection every this many optimizer steps (0: only when SIGTERM or "
            "SIGUSR1 arrives); a rerun with the same --out resumes", Range::at_least(0));
  s.add_bool("selfparam.teacher_cache", false,
             "compute term (A)'s teacher logits once per target sentence before training (in batches) instead "
             "of at every step");
  s.add_int("selfparam.teacher_top_k", 64,
            "teacher_cache: logits kept per position, the top k renormalised (0: all of them)", Range::at_least(0));
}

SelfParamOptions selfparam_options_from(const config::Config& c) {
  O o;
  o.targets = core::parse_enum<O::Targets>(c.get_string("selfparam.targets"), "selfparam.targets");
  o.generator = c.get_string("selfparam.generator");
  if (o.targets == O::Targets::Generator && o.generator.empty())
    core::fail("selfparam.targets is generator but selfparam.generator is empty: give a model file or HF folder");
  o.epochs = c.get_int("selfparam.epochs");
  o.per_epoch = c.get_int("selfparam.per_epoch");
  o.sample_temperature = c.get_float("selfparam.sample_temperature");
  o.sample_tokens = c.get_int("selfparam.sample_tokens");
  o.temperature = c.get_float("selfparam.temperature");
  o.reduction = core::parse_enum<O::Reduction>(c.get_string("selfparam.reduction"), "selfparam.reduction");
  o.continuation = c.get_bool("selfparam.continuation");
  o.unrelated = c.get_bool("selfparam.unrelated");
  o.unrelated_teacher =
      core::parse_enum<O::UnrelatedTeacher>(c.get_string("selfparam.unrelated_teacher"), "selfparam.unrelated_teacher");
  o.unrelated_file = c.get_string("selfparam.unrelated_file");
  if (o.unrelated && o.unrelated_file.empty())
    core::fail("selfparam.unrelated is on but selfparam.unrelated_file is empty: give unrelated text (a jsonl of "
               "documents or plain text), or set selfparam.unrelated=false");
  o.unrelated_tokens = c.get_int("selfparam.unrelated_tokens");
  o.update = core::parse_enum<O::Update>(c.get_string("selfparam.update"), "selfparam.update");
  o.lora_rank = c.get_int("selfparam.lora.rank");
  o.lora_alpha = c.get_float("selfparam.lora.alpha");
  o.lora_dropout = c.get_float("selfparam.lora.dropout");
  o.lora_targets = c.get_list("selfparam.lora.targets");
  o.lr = c.get_float("selfparam.lr");
  o.weight_decay = c.get_float("selfparam.weight_decay");
  o.zero = static_cast<int>(c.get_int("selfparam.zero"));
  o.batch = c.get_int("selfparam.batch");
  o.adapter = core::parse_enum<O::Adapter>(c.get_string("selfparam.adapter"), "selfparam.adapter");
  o.seed = static_cast<uint64_t>(c.get_int("selfparam.seed"));
  o.out_dir = c.get_string("selfparam.out_dir");
  o.single_documents = c.get_int("selfparam.single_documents");
  o.batch_documents = c.get_int("selfparam.batch_documents");
  o.sequential_documents = c.get_int("selfparam.sequential_documents");
  o.locality_documents = c.get_int("selfparam.locality_documents");
  o.save_every = c.get_int("selfparam.save_every");
  o.teacher_cache = c.get_bool("selfparam.teacher_cache");
  o.teacher_top_k = c.get_int("selfparam.teacher_top_k");
  return o;
}

}  // namespace engram::selfparam
