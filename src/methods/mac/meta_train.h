#pragma once
// MAC meta-training (specs/mac.md 2-3): each micro-batch of B (document, question, answer) rows
// is its own memory bank; the loss is the answer-only cross-entropy of the frozen LM under the
// prefix that the aggregator makes from the question and the bank. Data parallel through the
// shared Trainer (GradReducer, accumulation, clipping, bf16, checkpoints, resume).
//
// Backpropagation dropout (ratio r): only the first k = floor(B r) documents of a bank are
// encoded with gradient and only their questions are trained; the other B - k documents are
// encoded under no-grad and serve as distractors, so the amortizer's activation memory scales
// with k, not B.
// mac.global_bank: the banks of all ranks are all-gathered (detached) and each rank's own part
// is put back with its gradient, so every question searches the whole global batch.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "methods/mac/aggregate.h"

namespace engram::config {
class Config;
}
namespace engram::dist {
class Runtime;
}

namespace engram::mac {

struct MetaTrainReport {
  int64_t steps = 0;
  double seconds = 0;
  double last_loss = 0;
  bool stopped = false;   // a stop signal ended it early (checkpoint saved; run again to continue)
  std::string model_path;  // mac.h5, when finished
};

MetaTrainReport meta_train(const config::Config& config, dist::Runtime& runtime);

// The curriculum's memory size at `step`: each question's memory is a group of this many documents
// of its batch (its own among them), from 1 doubling in equal stages up to the largest power of
// two that is at most half of `questions`, halved until it divides `questions` (whole groups);
// 0 once the curriculum is over (the whole bank).
int64_t curriculum_group(int64_t step, int64_t curriculum_steps, int64_t questions);

// The memory size at `step` with mac.memory_group `largest`: the curriculum's, but never more
// than `largest` documents (the largest divisor of `questions` up to it) once it is > 0; 0 (the
// whole bank) only with largest 0. largest 1: each question reads its own document alone, the
// memory that answering with the retriever's best document (mac.retriever.top_k 1) gives.
int64_t memory_group(int64_t step, int64_t curriculum_steps, int64_t questions, int64_t largest);

// Each trained question's memory and the place of its own document in it. bank [N, T, d]: this
// rank's bank, or with mac.global_bank every rank's with this rank's rows from own_offset on; the
// trained questions are those of rows own_offset .. own_offset + questions - 1. group 0: the
// whole bank, shared by the questions; group g (the curriculum): question i sees the g documents
// of its group among its own rank's rows.
struct QuestionMemory {
  Memory memory;
  at::Tensor gold;  // [questions] int64: the entry of the question's own document
};
QuestionMemory question_memory(const at::Tensor& bank, int64_t questions, int64_t group, int64_t own_offset);

// The summaries of the last `capacity` documents trained on (detached), newest first, with their
// document indices (mac.retriever.pool): many more negatives for the retriever than one batch
// holds, and the hard distractors of mac.retriever.hard_negatives. Not checkpointed: a resumed
// run refills it.
struct SummaryPool {
  int64_t capacity = 0;
  at::Tensor summaries;  // [n, T, d]
  at::Tensor documents;  // [n] int64
  int64_t size() const { return summaries.defined() ? summaries.size(0) : 0; }
  void add(const at::Tensor& more, const at::Tensor& more_documents);
};

// A contrastive step over unit keys: each question i (keys [Bq, k], document index
// question_documents[i]) against the keys [n, k] (documents key_documents [n]; its own document's
// key at row own_offset + i), cross-entropy of the scores / temperature; other copies of its own
// document are no negatives (their scores are -inf in `scores`).
struct ContrastiveStep {
  at::Tensor loss;
  double top1 = 0;    // share of questions whose own document scores highest
  at::Tensor scores;  // [Bq, n]
};
ContrastiveStep contrastive_step(const at::Tensor& question_keys, const at::Tensor& question_documents,
                                 const at::Tensor& keys, const at::Tensor& key_documents, int64_t own_offset,
                                 double temperature);
// The same from scores [Bq, n] made otherwise (the aggregator's selection scores).
ContrastiveStep contrastive_from_scores(const at::Tensor& scores, const at::Tensor& question_documents,
                                        const at::Tensor& key_documents, int64_t own_offset, double temperature);

// `count` distinct document indices of [0, documents), drawn with `seed` (the token keys'
// negatives: seeded by step and rank, so a resumed run draws the same).
at::Tensor random_documents(int64_t documents, int64_t count, int64_t seed);

// One step of the retriever: its contrastive loss, each question i (latent [Bq, T, d], document
// index question_documents[i]) against the keys [n, k] (documents key_documents [n]; its own
// document's key at row own_offset + i) and the pool's; other copies of its own document are no
// negatives. With hard > 0 (and a pool that large), each question's `hard` best-matching pool
// documents [Bq, hard, T, d] as distractors for its memory.
struct RetrieverStep {
  at::Tensor loss;
  double top1 = 0;  // share of questions whose own document scores highest
  at::Tensor distractors;
};
RetrieverStep retriever_step(Retriever& retriever, const at::Tensor& question_latents, const at::Tensor& question_documents,
                             at::Tensor keys, at::Tensor key_documents, int64_t own_offset, const SummaryPool& pool,
                             int64_t hard, double temperature);

// Context distillation (mac.distill_weight): what the frozen LM computes where it predicts the
// answer ("Answer:" and the answer's tokens) when it reads the question behind MAC's prefix
// (student) should be what it computes there when it reads it right after the document itself
// (teacher: the LM's own reading, F1 0.9 on the quickstart). Every layer's state is a target,
// not only the next token. (Matching the question's tokens too, on the quickstart world, slowed
// the QA loss: eight prefix slots cannot stand in for everything a document changes there.)
// student: per layer [B, Ts, d], right-padded (student_mask [B, Ts]); teacher: per layer
// [R, Tt, d] for the student rows `rows` [R], left-padded, so the same tokens end each teacher
// row; counted [B, Ts]: the student tokens compared (the answer-predicting ones). The loss is
// the mean over layers of sum |student - teacher|^2 / sum |teacher|^2 over the counted tokens.
at::Tensor context_distillation_loss(const std::vector<at::Tensor>& student, const at::Tensor& student_mask,
                                     const std::vector<at::Tensor>& teacher, const at::Tensor& rows,
                                     const at::Tensor& counted);

// k = floor(B r), at least 1.
int64_t documents_with_grad(int64_t bank_size, double ratio);

}  // namespace engram::mac
