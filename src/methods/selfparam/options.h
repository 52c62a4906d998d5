#pragma once
// selfparam.* options and the typed SelfParamOptions they describe (specs/selfparam.md).
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/enum_names.h"

namespace engram::config {
class Config;
class Schema;
}

namespace engram::selfparam {

struct SelfParamOptions {
  // Where the target sentences come from (spec 2): sampled by the teacher reading the document
  // (the paper's own-model ablation), by another generator model reading it, or the documents' own
  // training-phrased questions (the synthetic world's; an ablation, never the method's row).
  enum class Targets { Self, Generator, World };
  enum class Reduction { Mean, Token };  // KL / (n V) as F.kl_div 'mean' | KL / n (per token)
  enum class UnrelatedTeacher { Base, None };  // term (C)'s teacher: document prepended | plain text
  enum class Update { Lora, Mlp };             // LoRA adapters merged afterwards | full-rank MLP weights
  enum class Adapter { Merge, Reset };         // sequential: merge + fresh LoRA | the reference's reset

  Targets targets = Targets::Self;
  std::string generator;          // Targets::Generator: engram model file/folder or HF folder
  int64_t epochs = 20;            // E: passes over the documents, a fresh slice of targets each
  int64_t per_epoch = 10;         // K: target sentences per document per epoch
  double sample_temperature = 1.0;
  int64_t sample_tokens = 48;     // tokens sampled per draw (a draw yields several questions)

  double temperature = 1.0;       // distillation temperature T (loss scaled by T^2)
  Reduction reduction = Reduction::Mean;
  bool continuation = true;       // term (B): continue the document from a random split
  bool unrelated = true;          // term (C): stay close on unrelated text
  UnrelatedTeacher unrelated_teacher = UnrelatedTeacher::Base;
  std::string unrelated_file;     // jsonl documents or plain text, read in order
  int64_t unrelated_tokens = 256; // term (C) text truncated to this many tokens

  Update update = Update::Lora;
  int64_t lora_rank = 8;
  double lora_alpha = 32;
  double lora_dropout = 0.1;
  std::vector<std::string> lora_targets;  // empty: q,k,v,o,up,down (GPT-2) or q,k,v,gate,up,down (LLaMA)
  double lr = 1e-3;
  double weight_decay = 0.01;
  int zero = 0;  // ZeRO stage (train/distributed_adamw.h)
  int64_t batch = 1;              // target sentences per optimizer step per rank (reference: 1)

  Adapter adapter = Adapter::Merge;
  uint64_t seed = 1234;
  std::string out_dir;
  // Experiments (engram selfparam-eval): documents of the single, batch and sequential runs.
  int64_t single_documents = 50;
  int64_t batch_documents = 100;
  int64_t sequential_documents = 20;
  int64_t locality_documents = 200;  // other test entities read in context, before and after
  // Injection checkpoints (engram inject): every this many optimizer steps (0: only on SIGTERM /
  // SIGUSR1), resumed from --out on the next run.
  int64_t save_every = 0;
  // Teacher logits of term (A) computed once per (document, target) before training, kept as the
  // top teacher_top_k per position (0: every logit): trades memory for the teacher's forward passes.
  bool teacher_cache = false;
  int64_t teacher_top_k = 64;
};

void declare_selfparam_options(config::Schema& schema);
// Bad values -> core::UserError naming the option.
SelfParamOptions selfparam_options_from(const config::Config& config);

}  // namespace engram::selfparam

template <>
struct engram::core::EnumNames<engram::selfparam::SelfParamOptions::Targets> {
  using E = engram::selfparam::SelfParamOptions::Targets;
  static constexpr std::pair<E, const char*> names[] = {{E::Self, "self"}, {E::Generator, "generator"}, {E::World, "world"}};
};
template <>
struct engram::core::EnumNames<engram::selfparam::SelfParamOptions::Reduction> {
  using E = engram::selfparam::SelfParamOptions::Reduction;
  static constexpr std::pair<E, const char*> names[] = {{E::Mean, "mean"}, {E::Token, "token"}};
};
template <>
struct engram::core::EnumNames<engram::selfparam::SelfParamOptions::UnrelatedTeacher> {
  using E = engram::selfparam::SelfParamOptions::UnrelatedTeacher;
  static constexpr std::pair<E, const char*> names[] = {{E::Base, "base"}, {E::None, "none"}};
};
template <>
struct engram::core::EnumNames<engram::selfparam::SelfParamOptions::Update> {
  using E = engram::selfparam::SelfParamOptions::Update;
  static constexpr std::pair<E, const char*> names[] = {{E::Lora, "lora"}, {E::Mlp, "mlp"}};
};
template <>
struct engram::core::EnumNames<engram::selfparam::SelfParamOptions::Adapter> {
  using E = engram::selfparam::SelfParamOptions::Adapter;
  static constexpr std::pair<E, const char*> names[] = {{E::Merge, "merge"}, {E::Reset, "reset"}};
};
