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

namespace {

// sum_rows KL(p || q) of log-probabilities [n, k] (k: all V ids, or a teacher's top k), times T^2,
// divided by n V (Mean, V the student's vocabulary) or n (Token).
at::Tensor reduced_kl(const at::Tensor& log_p, const at::Tensor& log_q, int64_t vocab, double temperature,
                      SelfParamOptions::Reduction reduction) {
  const at::Tensor kl = (log_p.exp() * (log_p - log_q)).sum();
  const double n = static_cast<double>(log_p.size(0));
  const double divisor = reduction == SelfParamOptions::Reduction::Mean ? n * static_cast<double>(vocab) : n;
  return kl * (temperature * temperature / std::max(divisor, 1.0));
}

}  // namespace

at::Tensor distillation_kl(const at::Tensor& teacher_logits, const at::Tensor& student_logits, double temperature,
                           SelfParamOptions::Reduction reduction) {
  const at::Tensor log_p = torch::log_softmax(teacher_logits.detach().to(torch::kFloat) / temperature, -1);
  const at::Tensor log_q = torch::log_softmax(student_logits.to(torch::kFloat) / temperature, -1);
  return reduced_kl(log_p, log_q, student_logits.size(1), temperature, reduction);
}

TeacherRows TeacherRows::rows(int64_t begin, int64_t length) const {
  return {logits.narrow(0, begin, length), indices.defined() ? indices.narrow(0, begin, length) : at::Tensor()};
}

at::Tensor rows_kl(const TeacherRows& teacher, const at::Tensor& student_logits, double temperature,
                   SelfParamOptions::Reduction reduction) {
  if (!teacher.indices.defined()) return distillation_kl(teacher.logits, student_logits, temperature, reduction);
  const at::Tensor log_p = torch::log_softmax(teacher.logits.to(torch::kFloat) / temperature, -1);
  const at::Tensor log_q_all = torch::log_softmax(student_logits.to(torch::kFloat) / temperature, -1);
  const at::Tensor log_q = log_q_all.gather(1, teacher.indices.to(torch::kLong));
  return reduced_kl(log_p, log_q, student_logits.size(1), temperature, reduction);
}

namespace {

std::vector<int32_t> joined(const std::vector<int32_t>& a, const std::vector<int32_t>& b, const std::vector<int32_t>& c) {
  std::vector<int32_t> ids;
  ids.reserve(a.size() + b.size() + c.size());
  for (const auto* part : {&a, &b, &c}) ids.insert(ids.end(), part->begin(), part->end());
  return ids;
}

// Logits [B, T, V] of several sequences in one forward pass, padded on the right. Under the causal
// mask a position sees only earlier ones and positions count from the first token, so padding
// after a sequence changes none of its rows: no attention mask is needed.
at::Tensor batch_logits(model::Decoder& m, const std::vector<std::vector<int32_t>>& rows) {
  size_t longest = 0;
  for (const auto& r : rows) longest = std::max(longest, r.size());
  at::Tensor ids = torch::zeros({static_cast<int64_t>(rows.size()), static_cast<int64_t>(longest)}, torch::kLong);
  auto a = ids.accessor<int64_t, 2>();
  for (size_t b = 0; b < rows.size(); ++b)
    for (size_t t = 0; t < rows[b].size(); ++t) a[static_cast<int64_t>(b)][static_cast<int64_t>(t)] = rows[b][t];
  return m->forward(ids).logits;
}

// The examples that have a token to predict, with their slices.
std::vector<std::pair<const DistillExample*, Slices>> predictable(const std::vector<DistillExample>& examples,
                                                                  const std::vector<int32_t>& start, bool with_context) {
  std::vector<std::pair<const DistillExample*, Slices>> out;
  for (const auto& e : examples) {
    const Slices s = target_slices(static_cast<int64_t>(start.size()),
                                   with_context ? static_cast<int64_t>(e.context.size()) : 0,
                                   static_cast<int64_t>(e.target.size()));
    if (s.length > 0) out.emplace_back(&e, s);
  }
  return out;
}

}  // namespace

at::Tensor distillation_loss(model::Decoder& teacher, model::Decoder& student, const std::vector<DistillExample>& examples,
                             const std::vector<int32_t>& start, double temperature,
                             SelfParamOptions::Reduction reduction) {
  const auto items = predictable(examples, start, true);
  std::vector<std::vector<int32_t>> inputs;
  std::vector<std::pair<int64_t, int64_t>> slices;
  std::vector<DistillExample> kept;
  for (const auto& [e, s] : items) {
    inputs.push_back(joined(start, e->context, e->target));
    slices.emplace_back(s.teacher_begin, s.length);
    kept.push_back(*e);
  }
  const auto rows = teacher_rows(teacher, inputs, slices, 0, static_cast<int64_t>(inputs.size()));
  return distillation_loss(rows, student, kept, start, temperature, reduction);
}

at::Tensor distillation_loss(const std::vector<TeacherRows>& teacher, model::Decoder& student,
                             const std::vector<DistillExample>& examples, const std::vector<int32_t>& start,
                             double temperature, SelfParamOptions::Reduction reduction) {
  ENGRAM_CHECK(teacher.size() == examples.size(), "distillation_loss: {} teacher rows for {} examples", teacher.size(),
               examples.size());
  std::vector<std::vector<int32_t>> student_inputs;
  std::vector<std::pair<size_t, Slices>> items;  // example, its slices
  for (size_t b = 0; b < examples.size(); ++b) {
    const Slices s = target_slices(static_cast<int64_t>(start.size()), static_cast<int64_t>(examples[b].context.size()),
                                   static_cast<int64_t>(examples[b].target.size()));
    if (s.length == 0) continue;
    student_inputs.push_back(joined(start, {}, examples[b].target));
    items.emplace_back(b, s);
  }
  if (items.empty()) return {};
  const at::Tensor student_logits = batch_logits(student, student_inputs);
  at::Tensor total;
  for (size_t i = 0; i < items.size(); ++i) {
    const auto& [b, s] = items[i];
    at::Tensor kl = rows_kl(teacher[b], student_logits[static_cast<int64_t>(i)].narrow(0, s.student_begin, s.length),
                            temperature, reduction);
    total = total.defined() ? total + kl : kl;
  }
  return total / static_cast<double>(items.size());
}

at::Tensor sentence_cross_entropy(model::Decoder& student, const std::vector<DistillExample>& examples,
                                  const std::vector<int32_t>& start) {
  const auto items = predictable(examples, start, false);
  if (items.empty()) return {};
  std::vector<std::vector<int32_t>> rows;
  for (const auto& [e, s] : items) rows.push_back(joined(start, {}, e->target));
  const at::Tensor logits = batch_logits(student, rows);
  at::Tensor total;
  for (size_t b = 0; b < items.size(); ++b) {
    const auto& [e, s] = items[b];
    std::vector<int64_t> next(e->target.end() - s.length, e->target.end());
    at::Tensor ce = torch::nn::functional::cross_entropy(
        logits[static_cast<int64_t>(b)].narrow(0, s.student_begin, s.length).to(torch::kFloat),
        torch::tensor(next, torch::kLong));
    total = total.defined() ? total + ce : ce;
  }
  return total / static_cast<double>(items.size());
}

std::vector<TeacherRows> teacher_rows(model::Decoder& teacher, const std::vector<std::vector<int32_t>>& inputs,
                                      const std::vector<std::pair<int64_t, int64_t>>& slices, int64_t top_k,
                                      int64_t batch) {
  torch::NoGradGuard no_grad;
  std::vector<TeacherRows> out;
  for (size_t first = 0; first < inputs.size(); first += static_cast<size_t>(batch)) {
    const size_t last = std::min(inputs.size(), first + static_cast<size_t>(batch));
    const at::Tensor logits = batch_logits(teacher, {inputs.begin() + first, inputs.begin() + last});
    for (size_t b = first; b < last; ++b) {
      const auto [begin, length] = slices[b];
      const at::Tensor rows = logits[static_cast<int64_t>(b - first)].narrow(0, begin, length);
      if (top_k <= 0 || top_k >= rows.size(1)) {
        out.push_back({batch > 1 ? rows.clone() : rows, at::Tensor()});  // a clone frees the padded batch
        continue;
      }
      auto [values, ids] = rows.topk(top_k, -1);
      out.push_back({values.contiguous(), ids.to(torch::kInt).contiguous()});
    }
  }
  return out;
}

}  // namespace engram::selfparam
