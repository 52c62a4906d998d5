#include "methods/selfparam/distill.h"

#include <torch/torch.h>

#include "core/error.h"

namespace engram::selfparam {

Slices target_slices(int64_t start_tokens, int64_t context_tokens, int64_t target_tokens) {
  ENGRAM_CHECK(start_tokens >= 0 && start_tokens <= 1 && context_tokens >= 0 && target_tokens >= 0,
               "target_slices({}, {}, {})", start_tokens, context_tokens, target_tokens);
  // Position p predicts token p + 1. The target's token t (0-based) sits at start + Lc + t in the
  // teacher and start + t in the student; the first predictable one is t0 = 1 - start when the
  // context is empty in the student's input (it always is).
  const int64_t first = 1 - start_tokens;
  Slices s;
  s.length = std::max<int64_t>(0, target_tokens - first);
  s.teacher_begin = start_tokens + context_tokens + first - 1;
  s.student_begin = start_tokens + first - 1;
  return s;
}

at::Tensor distillation_kl(const at::Tensor& teacher_logits, const at::Tensor& student_logits, double temperature,
                           SelfParamOptions::Reduction reduction) {
  const at::Tensor log_p = torch::log_softmax(teacher_logits.detach().to(torch::kFloat) / temperature, -1);
  const at::Tensor log_q = torch::log_softmax(student_logits.to(torch::kFloat) / temperature, -1);
  const at::Tensor kl = (log_p.exp() * (log_p - log_q)).sum();
  const double n = static_cast<double>(teacher_logits.size(0));
  const double divisor = reduction == SelfParamOptions::Reduction::Mean ? n * static_cast<double>(teacher_logits.size(1)) : n;
  return kl * (temperature * temperature / std::max(divisor, 1.0));
}

namespace {

at::Tensor ids_tensor(const std::vector<int32_t>& a, const std::vector<int32_t>& b, const std::vector<int32_t>& c) {
  std::vector<int64_t> ids;
  ids.reserve(a.size() + b.size() + c.size());
  for (const auto* part : {&a, &b, &c}) ids.insert(ids.end(), part->begin(), part->end());
  return torch::tensor(ids, torch::kLong).unsqueeze(0);
}

// Batch 1 per example: the reference's batch size, and no padding to mask (examples differ in
// length by a whole document).
at::Tensor logits_of(model::Decoder& m, const at::Tensor& ids) { return m->forward(ids).logits.squeeze(0); }

}  // namespace

at::Tensor distillation_loss(model::Decoder& teacher, model::Decoder& student, const std::vector<DistillExample>& examples,
                             const std::vector<int32_t>& start, double temperature,
                             SelfParamOptions::Reduction reduction) {
  at::Tensor total;
  int64_t counted = 0;
  for (const auto& e : examples) {
    const Slices s = target_slices(static_cast<int64_t>(start.size()), static_cast<int64_t>(e.context.size()),
                                   static_cast<int64_t>(e.target.size()));
    if (s.length == 0) continue;
    at::Tensor teacher_rows;
    {
      torch::NoGradGuard no_grad;
      teacher_rows = logits_of(teacher, ids_tensor(start, e.context, e.target)).narrow(0, s.teacher_begin, s.length);
    }
    at::Tensor student_rows = logits_of(student, ids_tensor(start, {}, e.target)).narrow(0, s.student_begin, s.length);
    at::Tensor kl = distillation_kl(teacher_rows, student_rows, temperature, reduction);
    total = total.defined() ? total + kl : kl;
    ++counted;
  }
  if (!counted) return {};
  return total / static_cast<double>(counted);
}

at::Tensor sentence_cross_entropy(model::Decoder& student, const std::vector<DistillExample>& examples,
                                  const std::vector<int32_t>& start) {
  at::Tensor total;
  int64_t counted = 0;
  for (const auto& e : examples) {
    const Slices s = target_slices(static_cast<int64_t>(start.size()), 0, static_cast<int64_t>(e.target.size()));
    if (s.length == 0) continue;
    at::Tensor rows = logits_of(student, ids_tensor(start, {}, e.target)).narrow(0, s.student_begin, s.length);
    std::vector<int64_t> next(e.target.end() - s.length, e.target.end());
    at::Tensor ce = torch::nn::functional::cross_entropy(rows.to(torch::kFloat), torch::tensor(next, torch::kLong));
    total = total.defined() ? total + ce : ce;
    ++counted;
  }
  if (!counted) return {};
  return total / static_cast<double>(counted);
}

}  // namespace engram::selfparam
