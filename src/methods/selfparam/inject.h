#pragma once
// One SELF-PARAM injection (specs/selfparam.md 3): documents go into a model's own weights by
// distillation from a frozen teacher that reads them. Per epoch, each document's next K target
// sentences, shuffled across documents; each (document, sentence) item takes three optimizer
// steps, one per term: (A) the sentence with the document, (B) the document continued after a
// random split, (C) unrelated text. Items are split across ranks and gradients averaged
// (GradReducer), so every rank ends with the same model.
#include <cstdint>
#include <string>
#include <vector>

#include "methods/selfparam/options.h"
#include "methods/selfparam/targets.h"
#include "model/decoder.h"

namespace engram::dist {
class Communicator;
}
namespace engram::text {
class Tokenizer;
}

namespace engram::selfparam {

class UnrelatedText;
class InjectionCheckpoints;

// SELF-PARAM's KL distillation, or FT(S): next-token cross-entropy on the same sentences with
// the same number of optimizer steps (each item's sentence taken once per SELF-PARAM term).
enum class Objective { Distill, CrossEntropy };

// Where an injection stands in engram inject's checkpointed job (no checkpoints: none): part
// `part` of the job, after `job_steps_before` rounds of earlier parts. It resumes from a checkpoint
// inside it and saves when one is due.
struct InjectionPlace {
  InjectionCheckpoints* checkpoints = nullptr;
  int64_t part = 0;
  int64_t job_steps_before = 0;
};

struct InjectionInputs {
  const text::Tokenizer* tokenizer = nullptr;
  const std::vector<std::string>* documents = nullptr;  // texts, without "Context: "
  const TargetSet* targets = nullptr;                    // per_document matches documents
  UnrelatedText* unrelated = nullptr;                    // term (C); null: off
  // The teacher; null: a frozen copy of the model taken at the start (single and batch injection,
  // sequential with adapter merge). Sequential with adapter reset passes the current model while
  // the student restarts from the base weights.
  model::Decoder* teacher = nullptr;
  uint64_t seed = 0;
  InjectionPlace place;
};

struct InjectionReport {
  int64_t items = 0;   // (document, sentence) pairs over all epochs
  int64_t rounds = 0;  // item batches in all (a round takes one optimizer step per term), resumed ones too
  int64_t steps = 0;   // optimizer steps every rank took in this run
  double seconds = 0;
  double last_epoch_loss = 0;  // mean loss of the last epoch's steps (this rank)
  bool stopped = false;        // a stop signal ended it early, saved: the model still holds its adapters
  double teacher_cache_seconds = 0;  // selfparam.teacher_cache: computing it (inside `seconds`)
  int64_t teacher_cache_bytes = 0;   // and what it holds on this rank
};

// The LoRA targets of `options`, or by architecture (GPT-2: q, k, v, o, up, down as its c_attn,
// c_proj, c_fc; LLaMA: q, k, v, gate, up, down).
std::vector<std::string> lora_targets(const SelfParamOptions& options, const model::DecoderConfig& config);

// Trains `model` in place (collective) and leaves it in eval mode with every change in its
// ordinary weights (LoRA merged and removed; zero extra parameters) and its requires_grad flags as
// they were. With checkpoints, `stopped` in the report: saved and left as it was, to be resumed.
InjectionReport inject(model::Decoder& model, const InjectionInputs& inputs, const SelfParamOptions& options,
                       Objective objective, dist::Communicator& comm);

}  // namespace engram::selfparam
