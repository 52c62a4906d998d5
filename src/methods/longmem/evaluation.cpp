#include "methods/longmem/evaluation.h"

#include <algorithm>
#include <cmath>

#include <torch/torch.h>

#include "core/error.h"
#include "dist/communicator.h"
#include "methods/longmem/system.h"
#include "text/tokenizer.h"

namespace engram::longmem {
namespace {

at::Tensor row_of(const std::vector<int32_t>& ids, size_t begin, size_t end) {
  return torch::tensor(std::vector<int64_t>(ids.begin() + static_cast<std::ptrdiff_t>(begin),
                                            ids.begin() + static_cast<std::ptrdiff_t>(end)),
                       torch::kLong)
      .unsqueeze(0);
}

}  // namespace

std::string greedy_answer(LongMem& system, const text::Tokenizer& tokenizer, std::vector<int32_t> prompt,
                          int64_t max_new_tokens, bool with_memory, at::Tensor* first_chunks) {
  torch::NoGradGuard no_grad;
  std::vector<int32_t> answer;
  for (int64_t step = 0; step < max_new_tokens; ++step) {
    const SegmentOutput out = system.forward(row_of(prompt, 0, prompt.size()), LongMem::Pass{with_memory, true, false});
    const at::Tensor& logits = with_memory ? out.side_logits : out.backbone_logits;
    if (step == 0 && first_chunks && out.chunk_ids.defined()) *first_chunks = out.chunk_ids[0][-1];  // [H, chunks]
    const auto next = static_cast<int32_t>(logits[0][-1].argmax().item<int64_t>());
    answer.push_back(next);
    prompt.push_back(next);
    if (tokenizer.decode(answer).find('\n') != std::string::npos) break;
  }
  return eval::answer_from_generation(tokenizer.decode(answer));
}

namespace {

// The document's fact part: its text up to the end of the last sentence naming an answer.
std::string fact_part(const data::Document& doc) {
  size_t last = 0;
  for (const auto& qa : doc.qa)
    for (const auto& answer : qa.answers) {
      const size_t at = doc.text.find(answer);
      if (at != std::string::npos) last = std::max(last, at + answer.size());
    }
  const size_t end = doc.text.find('.', last);
  return doc.text.substr(0, end == std::string::npos ? doc.text.size() : end + 1);
}

struct Tallies {
  double memory_tokens = 0, documents = 0;
  at::Tensor hits, retrieved;  // [H] float64
};

void recall_document(LongMem& system, const text::Tokenizer& tokenizer, const data::Document& doc, int64_t seq_len,
                     int64_t max_new_tokens, RecallReport& report, Tallies& tallies) {
  const std::vector<int32_t> context = tokenizer.encode("Context: " + doc.text);
  std::vector<std::vector<int32_t>> questions;
  size_t longest = 0;
  for (const auto& qa : doc.qa) {
    questions.push_back(tokenizer.encode(" Question: " + qa.question + " Answer:"));
    longest = std::max(longest, questions.back().size());
  }
  const int64_t keep = seq_len - max_new_tokens - static_cast<int64_t>(longest);
  if (keep < 1)
    core::fail("longmem.seq_len {}: too short for a question of {} tokens and {} answer tokens", seq_len, longest,
               max_new_tokens);
  // Everything before the window goes into the memory, in segments of seq_len tokens.
  const size_t boundary = static_cast<size_t>(std::max<int64_t>(0, static_cast<int64_t>(context.size()) - keep));
  system.memory().clear();
  for (size_t start = 0; start < boundary; start += static_cast<size_t>(seq_len))
    system.forward(row_of(context, start, std::min(boundary, start + static_cast<size_t>(seq_len))),
                   LongMem::Pass{false, false, true});
  const int64_t chunk = system.memory().shape().chunk;
  const auto fact_tokens = static_cast<int64_t>(tokenizer.encode("Context: " + fact_part(doc)).size());
  tallies.memory_tokens += static_cast<double>(system.memory().size() * chunk);
  tallies.documents += 1;
  const std::vector<int32_t> window(context.begin() + static_cast<std::ptrdiff_t>(boundary), context.end());
  for (size_t k = 0; k < doc.qa.size(); ++k) {
    std::vector<int32_t> prompt = window;
    prompt.insert(prompt.end(), questions[k].begin(), questions[k].end());
    report.backbone.add(greedy_answer(system, tokenizer, prompt, max_new_tokens, false, nullptr), doc.qa[k]);
    at::Tensor chunks;
    report.longmem.add(greedy_answer(system, tokenizer, prompt, max_new_tokens, true, &chunks), doc.qa[k]);
    if (!chunks.defined()) continue;
    const at::Tensor held = chunks.ge(0);  // [H, chunks]
    tallies.retrieved += held.sum(1).to(torch::kDouble);
    tallies.hits += (held & chunks.lt((fact_tokens + chunk - 1) / chunk)).sum(1).to(torch::kDouble);
  }
}

}  // namespace

RecallReport beyond_window_recall(LongMem& system, const text::Tokenizer& tokenizer,
                                  const std::vector<data::Document>& documents, int64_t seq_len,
                                  int64_t max_new_tokens, dist::Communicator& comm) {
  torch::NoGradGuard no_grad;
  RecallReport report;
  Tallies tallies;
  const int64_t heads = system.backbone()->config().n_heads;
  tallies.hits = torch::zeros({heads}, torch::kDouble);
  tallies.retrieved = torch::zeros({heads}, torch::kDouble);
  for (size_t i = static_cast<size_t>(comm.rank()); i < documents.size(); i += static_cast<size_t>(comm.world_size()))
    recall_document(system, tokenizer, documents[i], seq_len, max_new_tokens, report, tallies);
  report.backbone.reduce(comm);
  report.longmem.reduce(comm);
  at::Tensor sums = torch::cat({tallies.hits, tallies.retrieved,
                                torch::tensor({tallies.memory_tokens, tallies.documents}, torch::kDouble)});
  comm.all_reduce(sums);
  const at::Tensor hits = sums.narrow(0, 0, heads), retrieved = sums.narrow(0, heads, heads);
  report.hit_rate = retrieved.sum().item<double>() > 0 ? (hits.sum() / retrieved.sum()).item<double>() : 0.0;
  for (int64_t h = 0; h < heads; ++h)
    report.head_hit_rates.push_back(retrieved[h].item<double>() > 0 ? (hits[h] / retrieved[h]).item<double>() : 0.0);
  report.documents = static_cast<int64_t>(sums[2 * heads + 1].item<double>());
  report.memory_tokens =
      report.documents > 0 ? sums[2 * heads].item<double>() / static_cast<double>(report.documents) : 0.0;
  return report;
}

double PerplexityRow::perplexity(int reader) const {
  return tokens > 0 ? std::exp(nll[reader] / static_cast<double>(tokens)) : 0.0;
}

namespace {

double summed_nll(const at::Tensor& logits, const at::Tensor& targets) {
  return at::cross_entropy_loss(logits.reshape({-1, logits.size(-1)}).to(torch::kFloat), targets.reshape(-1), {},
                                at::Reduction::Sum)
      .item<double>();
}

// Adds the four readers' summed NLL of document `doc` (its wrong memory from `other`) to `sums`
// [segments, 5] (tokens, then the readers).
void document_perplexity(LongMem& system, const std::vector<int32_t>& doc, const std::vector<int32_t>& other,
                         int64_t seq_len, at::Tensor& sums) {
  const auto T = static_cast<size_t>(seq_len);
  const int64_t segments = std::min<int64_t>(sums.size(0), static_cast<int64_t>((doc.size() - 1) / T));
  auto segment = [&](const std::vector<int32_t>& ids, int64_t s, size_t shift) {
    return row_of(ids, static_cast<size_t>(s) * T + shift, static_cast<size_t>(s + 1) * T + shift);
  };
  system.memory().clear();
  for (int64_t s = 0; s < segments; ++s) {
    const at::Tensor inputs = segment(doc, s, 0), targets = segment(doc, s, 1);
    const SegmentOutput plain = system.forward(inputs, LongMem::Pass{true, false, false});
    const SegmentOutput with_memory = system.forward(inputs, LongMem::Pass{true, true, true});
    sums[s][0] += static_cast<double>(T);
    sums[s][1] += summed_nll(plain.backbone_logits, targets);
    sums[s][2] += summed_nll(plain.side_logits, targets);
    sums[s][3] += summed_nll(with_memory.side_logits, targets);
  }
  system.memory().clear();
  for (int64_t s = 0; s < static_cast<int64_t>((other.size() - 1) / T); ++s)
    system.forward(segment(other, s, 0), LongMem::Pass{false, false, true});
  for (int64_t s = 0; s < segments; ++s)
    sums[s][4] += summed_nll(system.forward(segment(doc, s, 0), LongMem::Pass{true, true, false}).side_logits,
                             segment(doc, s, 1));
}

}  // namespace

std::vector<PerplexityRow> segment_perplexity(LongMem& system, const std::vector<std::vector<int32_t>>& documents,
                                              int64_t seq_len, dist::Communicator& comm) {
  torch::NoGradGuard no_grad;
  std::vector<size_t> usable;
  int64_t most = 0;
  for (size_t i = 0; i < documents.size(); ++i)
    if (static_cast<int64_t>(documents[i].size()) >= 2 * seq_len + 1) {
      usable.push_back(i);
      most = std::max(most, static_cast<int64_t>((documents[i].size() - 1) / static_cast<size_t>(seq_len)));
    }
  if (usable.size() < 2)
    core::fail("longmem-ppl: {} documents of at least 2 segments ({} tokens); at least 2 are needed (one gives the "
               "other its wrong memory)",
               usable.size(), 2 * seq_len + 1);
  at::Tensor sums = torch::zeros({most, 5}, torch::kDouble);
  for (size_t k = static_cast<size_t>(comm.rank()); k < usable.size(); k += static_cast<size_t>(comm.world_size()))
    document_perplexity(system, documents[usable[k]], documents[usable[(k + 1) % usable.size()]], seq_len, sums);
  comm.all_reduce(sums);
  std::vector<PerplexityRow> rows;
  for (int64_t s = 0; s < most; ++s) {
    PerplexityRow row;
    row.segment = s;
    row.tokens = static_cast<int64_t>(sums[s][0].item<double>());
    for (int r = 0; r < 4; ++r) row.nll[r] = sums[s][r + 1].item<double>();
    rows.push_back(row);
  }
  return rows;
}

}  // namespace engram::longmem
