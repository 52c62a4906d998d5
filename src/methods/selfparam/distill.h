#pragma once
// SELF-PARAM's objective (specs/selfparam.md 1): the student without the document should predict
// a target sentence as the teacher does with the document in front of it. Token-level forward
// KL(teacher || student) over every token of the target, with the reference's exact alignment.
#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>

#include "methods/selfparam/options.h"
#include "model/decoder.h"

namespace engram::selfparam {

// Teacher input: start ++ context ++ target; student input: start ++ target, where `start` is
// the optional BOS (0 or 1 tokens). Row teacher_begin + t of the teacher's logits and row
// student_begin + t of the student's predict the same target token, for t < length.
// With a BOS (the reference): teacher [Lc, Lc + n), student [0, n). Without one (engram's base
// LMs are pretrained and prompted without BOS) nothing predicts the target's first token in the
// student, so both slices start one token later and cover the other n - 1.
struct Slices {
  int64_t teacher_begin = 0, student_begin = 0, length = 0;
};
Slices target_slices(int64_t start_tokens, int64_t context_tokens, int64_t target_tokens);

// T^2 * KL(softmax(teacher / T) || softmax(student / T)) for logits [n, V] each, reduced as
// Reduction::Mean (divided by n V, the reference's F.kl_div default) or Reduction::Token
// (divided by n). The teacher's logits carry no gradient.
at::Tensor distillation_kl(const at::Tensor& teacher_logits, const at::Tensor& student_logits, double temperature,
                           SelfParamOptions::Reduction reduction);

// One distillation example: what the teacher reads before the target, and the target.
struct DistillExample {
  std::vector<int32_t> context;  // empty: the teacher sees the target alone
  std::vector<int32_t> target;
};

// The teacher's logits on some rows of an input: kept whole, or the top k of each row
// (selfparam.teacher_cache: what a cached teacher keeps per target sentence).
struct TeacherRows {
  at::Tensor logits;   // [n, k]: all V logits of each row, or its k largest
  at::Tensor indices;  // [n, k] int32 vocabulary ids of a top-k; undefined when whole
  TeacherRows rows(int64_t begin, int64_t length) const;
};

// The teacher's logits of each input's rows [begin, begin + length) (no gradient), `batch` inputs
// per forward pass, each row kept whole (top_k 0) or as its top_k logits.
std::vector<TeacherRows> teacher_rows(model::Decoder& teacher, const std::vector<std::vector<int32_t>>& inputs,
                                      const std::vector<std::pair<int64_t, int64_t>>& slices, int64_t top_k,
                                      int64_t batch);

// T^2 KL(teacher || student) for one target's rows: whole rows as distillation_kl; a top-k keeps
// the teacher's distribution on its k ids (renormalised there) against the student's full
// log-softmax at those ids. Reduction as distillation_kl (Mean divides by n V, V the student's).
at::Tensor rows_kl(const TeacherRows& teacher, const at::Tensor& student_logits, double temperature,
                   SelfParamOptions::Reduction reduction);

// The mean distillation loss of `examples` (each its own KL, then averaged): the teacher reads
// start ++ context ++ target without gradient, the student start ++ target.
at::Tensor distillation_loss(model::Decoder& teacher, model::Decoder& student, const std::vector<DistillExample>& examples,
                             const std::vector<int32_t>& start, double temperature,
                             SelfParamOptions::Reduction reduction);
// The same with the teacher's rows given (teacher[b]: the target slice of examples[b], as
// target_slices places it): only the student runs.
at::Tensor distillation_loss(const std::vector<TeacherRows>& teacher, model::Decoder& student,
                             const std::vector<DistillExample>& examples, const std::vector<int32_t>& start,
                             double temperature, SelfParamOptions::Reduction reduction);

// The mean next-token cross-entropy of the student on start ++ target over the target's tokens
// (FT(S): the same sentences learned directly).
at::Tensor sentence_cross_entropy(model::Decoder& student, const std::vector<DistillExample>& examples,
                                  const std::vector<int32_t>& start);

}  // namespace engram::selfparam
