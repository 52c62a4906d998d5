#include "model/generate.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include <torch/torch.h>

#include "core/error.h"

namespace engram::model {

void GenerateOptions::validate() const {
  if (max_new_tokens < 0) core::fail("generate.max_new_tokens must be >= 0, got {}", max_new_tokens);
  if (num_beams < 1) core::fail("generate.num_beams must be >= 1, got {}", num_beams);
  if (num_beam_groups < 1) core::fail("generate.num_beam_groups must be >= 1, got {}", num_beam_groups);
  if (num_beams % num_beam_groups != 0)
    core::fail("generate.num_beams ({}) must be divisible by generate.num_beam_groups ({})", num_beams,
               num_beam_groups);
  const bool one_row = strategy == Strategy::Greedy || strategy == Strategy::Sample;
  if (one_row && (num_beams != 1 || num_beam_groups != 1))
    core::fail("generate.strategy {} needs num_beams = 1 and num_beam_groups = 1, got {} and {}",
               core::name_of(strategy), num_beams, num_beam_groups);
  if (strategy == Strategy::Sample && !(temperature > 0))
    core::fail("generate.temperature must be > 0 to sample, got {}", temperature);
  if (strategy == Strategy::Beam && num_beam_groups != 1)
    core::fail("generate.strategy beam needs num_beam_groups = 1 (use diverse_beam), got {}", num_beam_groups);
  if (strategy == Strategy::Beam && diversity_penalty != 0)
    core::fail("generate.diversity_penalty applies to diverse_beam only, got {} with beam", diversity_penalty);
  if (!(diversity_penalty >= 0)) core::fail("generate.diversity_penalty must be >= 0, got {}", diversity_penalty);
  if (!std::isfinite(length_penalty)) core::fail("generate.length_penalty must be finite");
  if (pad_id < 0) core::fail("generate.pad_id must be >= 0, got {}", pad_id);
}

namespace {

// Restores the module's training mode on scope exit.
struct EvalGuard {
  explicit EvalGuard(Decoder& m) : model(m), was_training(m->is_training()) { model->eval(); }
  ~EvalGuard() { model->train(was_training); }
  Decoder& model;
  bool was_training;
};

struct Batch {
  at::Tensor ids;   // [B, L] int64, left padded
  at::Tensor mask;  // [B, L] int64, 1 real / 0 pad
  std::vector<int64_t> prompt_len;
};

Batch left_pad(const std::vector<std::vector<int32_t>>& prompts, int32_t pad_id, int64_t vocab) {
  Batch batch;
  const int64_t B = static_cast<int64_t>(prompts.size());
  int64_t L = 0;
  for (size_t b = 0; b < prompts.size(); ++b) {
    if (prompts[b].empty()) core::fail("generate: prompt {} is empty (every prompt needs at least one token)", b);
    for (int32_t t : prompts[b])
      if (t < 0 || t >= vocab) core::fail("generate: prompt {} has token id {} outside [0, {})", b, t, vocab);
    L = std::max<int64_t>(L, static_cast<int64_t>(prompts[b].size()));
  }
  batch.ids = torch::full({B, L}, static_cast<int64_t>(pad_id), torch::kLong);
  batch.mask = torch::zeros({B, L}, torch::kLong);
  auto ids = batch.ids.accessor<int64_t, 2>();
  auto mask = batch.mask.accessor<int64_t, 2>();
  for (int64_t b = 0; b < B; ++b) {
    const auto& p = prompts[b];
    const int64_t n = static_cast<int64_t>(p.size());
    for (int64_t i = 0; i < n; ++i) {
      ids[b][L - n + i] = p[i];
      mask[b][L - n + i] = 1;
    }
    batch.prompt_len.push_back(n);
  }
  return batch;
}

// The prefix with batch B (a batch-1 prefix is broadcast), each row repeated `repeats` times.
Prefix expand_prefix(const Prefix& prefix, int64_t B, int64_t repeats) {
  if (prefix.keys.size() != prefix.values.size())
    core::fail("generate: prefix has {} key tensors but {} value tensors", prefix.keys.size(), prefix.values.size());
  Prefix out;
  auto expand = [&](at::Tensor t) {
    if (t.dim() != 4) core::fail("generate: prefix tensors must be [B, H, P, head_dim], got {} dims", t.dim());
    if (t.size(0) != B) {
      if (t.size(0) != 1) core::fail("generate: prefix batch {} must be 1 or the number of prompts ({})", t.size(0), B);
      t = t.expand({B, t.size(1), t.size(2), t.size(3)}).contiguous();
    }
    return repeats > 1 ? t.repeat_interleave(repeats, 0) : t;
  };
  for (size_t l = 0; l < prefix.keys.size(); ++l) {
    out.keys.push_back(expand(prefix.keys[l]));
    out.values.push_back(expand(prefix.values[l]));
  }
  return out;
}

double length_normalised(double sum_logprobs, int64_t length, double length_penalty) {
  return sum_logprobs / std::pow(static_cast<double>(std::max<int64_t>(length, 1)), length_penalty);
}

// HF BeamHypotheses: the best `capacity` finished hypotheses of one (prompt, group).
struct BeamHypotheses {
  int64_t capacity;
  double length_penalty;
  bool early_stopping;
  std::vector<Hypothesis> beams;
  double worst_score = 1e9;

  void add(std::vector<int32_t> tokens, double sum_logprobs, int64_t length, int group, bool eos) {
    const double score = length_normalised(sum_logprobs, length, length_penalty);
    if (static_cast<int64_t>(beams.size()) < capacity || score > worst_score) {
      Hypothesis h;
      h.tokens = std::move(tokens);
      h.score = score;
      h.sum_logprobs = sum_logprobs;
      h.group = group;
      h.finished_by_eos = eos;
      beams.push_back(std::move(h));
      if (static_cast<int64_t>(beams.size()) > capacity) {
        auto worst = std::min_element(beams.begin(), beams.end(),
                                      [](const Hypothesis& a, const Hypothesis& b) { return a.score < b.score; });
        beams.erase(worst);
        worst_score = std::min_element(beams.begin(), beams.end(), [](const Hypothesis& a, const Hypothesis& b) {
                        return a.score < b.score;
                      })->score;
      } else {
        worst_score = std::min(score, worst_score);
      }
    }
  }

  // best_sum_logprobs: the best running candidate score; cur_len: the length before this step's token.
  bool is_done(double best_sum_logprobs, int64_t cur_len) const {
    if (static_cast<int64_t>(beams.size()) < capacity) return false;
    if (early_stopping) return true;
    return worst_score >= length_normalised(best_sum_logprobs, cur_len, length_penalty);
  }
};

at::Tensor last_logits(Decoder& model, const at::Tensor& ids, const at::Tensor& mask, const Prefix* prefix,
                       KVCache* cache) {
  ForwardOptions fo;
  fo.attention_mask = mask;
  fo.prefix = prefix;
  fo.cache = cache;
  auto logits = model->forward(ids, fo).logits;
  return logits.select(1, logits.size(1) - 1).to(torch::kFloat);  // [B, V]
}

// Greedy: the most likely token at each step; sample: a draw from softmax(logits / temperature).
std::vector<std::vector<Hypothesis>> run_greedy(Decoder& model, const Batch& batch, const GenerateOptions& o,
                                                const Prefix* prefix) {
  const int64_t B = batch.ids.size(0);
  const bool sample = o.strategy == GenerateOptions::Strategy::Sample;
  at::Generator draws = at::detail::createCPUGenerator(o.seed);
  std::vector<std::vector<Hypothesis>> result(B, std::vector<Hypothesis>(1));
  std::vector<double> sum(B, 0.0);
  std::vector<bool> done(B, false);
  KVCache cache;
  at::Tensor mask = batch.mask;
  auto logits = last_logits(model, batch.ids, mask, prefix, &cache);
  for (int64_t step = 0; step < o.max_new_tokens; ++step) {
    auto logprobs = torch::log_softmax(logits, -1);
    auto next = sample ? torch::multinomial(torch::softmax(logits / o.temperature, -1), 1, false, draws).squeeze(1)
                       : logits.argmax(-1);  // [B]
    auto chosen = logprobs.gather(1, next.unsqueeze(1)).squeeze(1);
    auto next_a = next.accessor<int64_t, 1>();
    auto chosen_a = chosen.accessor<float, 1>();
    std::vector<int64_t> feed(B, o.pad_id);
    for (int64_t b = 0; b < B; ++b) {
      if (done[b]) continue;
      const auto t = static_cast<int32_t>(next_a[b]);
      sum[b] += chosen_a[b];
      feed[b] = t;
      if (o.eos_id >= 0 && t == o.eos_id) {
        done[b] = true;
        result[b][0].finished_by_eos = true;
      } else {
        result[b][0].tokens.push_back(t);
      }
    }
    if (std::all_of(done.begin(), done.end(), [](bool d) { return d; }) || step + 1 == o.max_new_tokens) break;
    mask = torch::cat({mask, torch::ones({B, 1}, torch::kLong)}, 1);
    logits = last_logits(model, torch::tensor(feed, torch::kLong).view({B, 1}), mask, prefix, &cache);
  }
  for (int64_t b = 0; b < B; ++b) {
    auto& h = result[b][0];
    h.sum_logprobs = sum[b];
    h.score = length_normalised(sum[b], batch.prompt_len[b] + static_cast<int64_t>(h.tokens.size()), o.length_penalty);
  }
  return result;
}

// The state of a beam search over B prompts: num_beams rows per prompt in G groups of `sub` (row
// b * nb + g * sub + j is beam j of group g of prompt b), and the finished hypotheses of each
// (prompt, group), key b * G + g.
struct BeamState {
  int64_t B, nb, G, sub, N, V;
  std::vector<float> scores;                 // [N] each row's beam score (sum of log-probs and penalties)
  std::vector<std::vector<int32_t>> tokens;  // [N] each row's generated tokens
  std::vector<BeamHypotheses> hyps;          // [B G]
  std::vector<bool> done;                    // [B G]

  BeamState(int64_t prompts, const GenerateOptions& o, int64_t vocab)
      : B(prompts), nb(o.num_beams), G(o.num_beam_groups), sub(nb / G), N(B * nb), V(vocab),
        scores(N, -1e9f), tokens(N), hyps(B * G, BeamHypotheses{sub, o.length_penalty, o.early_stopping, {}}),
        done(B * G, false) {
    // Only the first beam of each group is live at the start (HF: the others start at -1e9).
    for (int64_t b = 0; b < B; ++b)
      for (int64_t g = 0; g < G; ++g) scores[b * nb + g * sub] = 0.0f;
  }
};

// What each row becomes at one step.
struct StepChoice {
  std::vector<int64_t> current;  // [N] the token it appends (pad_id in finished groups)
  std::vector<int64_t> reorder;  // [N] the row whose tokens and cache it continues
  std::vector<float> next_scores;  // [N] its beam score after the token
  StepChoice(int64_t N, int64_t pad_id) : current(N, pad_id), reorder(N, 0), next_scores(N, 0.0f) {}
};

// Group g's candidate scores [B sub, V]: each of its rows' log-probs plus the row's beam score,
// less the diversity penalty for the tokens that groups 0..g-1 of the same prompt chose at this
// step (`current`, filled for those groups already).
at::Tensor group_candidates(const at::Tensor& logprobs, const BeamState& st, int64_t g,
                            const std::vector<int64_t>& current, const GenerateOptions& o) {
  std::vector<int64_t> rows;
  rows.reserve(st.B * st.sub);
  for (int64_t b = 0; b < st.B; ++b)
    for (int64_t j = 0; j < st.sub; ++j) rows.push_back(b * st.nb + g * st.sub + j);
  auto rows_t = torch::tensor(rows, torch::kLong);
  auto scores = logprobs.index_select(0, rows_t);  // [B*sub, V]
  if (g > 0 && o.diversity_penalty != 0) {
    // Hamming diversity: how often earlier groups chose each token at this step.
    auto freq = torch::zeros({st.B, st.V}, torch::kFloat);
    auto freq_a = freq.accessor<float, 2>();
    for (int64_t b = 0; b < st.B; ++b)
      for (int64_t r = b * st.nb; r < b * st.nb + g * st.sub; ++r) freq_a[b][current[r]] += 1.0f;
    scores = scores - o.diversity_penalty * freq.repeat_interleave(st.sub, 0);
  }
  std::vector<float> group_scores;
  for (int64_t r : rows) group_scores.push_back(st.scores[r]);
  return scores + torch::tensor(group_scores, torch::kFloat).unsqueeze(1);
}

// Prompt b's group g (not done) from its 2 sub best candidates `vals` / `idx` (flat beam * V + token,
// best first): an EOS among the first `sub` becomes a finished hypothesis, the first `sub` others
// continue. Then whether the group is done.
void choose_beams(BeamState& st, const Batch& batch, const GenerateOptions& o, int64_t b, int64_t g, int64_t step,
                  at::TensorAccessor<float, 1> vals, at::TensorAccessor<int64_t, 1> idx, StepChoice& choice) {
  const int64_t key = b * st.G + g, base = b * st.nb + g * st.sub;
  const bool use_eos = o.eos_id >= 0;
  int64_t count = 0;
  for (int64_t rank = 0; rank < 2 * st.sub && count < st.sub; ++rank) {
    const int64_t src = base + idx[rank] / st.V;
    const auto token = static_cast<int32_t>(idx[rank] % st.V);
    const float score = vals[rank];
    if (use_eos && token == o.eos_id) {
      if (rank >= st.sub) continue;  // an EOS outside the top beams_per_group is not a hypothesis
      st.hyps[key].add(st.tokens[src], score, batch.prompt_len[b] + static_cast<int64_t>(st.tokens[src].size()),
                       static_cast<int>(g), true);
    } else {
      choice.next_scores[base + count] = score;
      choice.current[base + count] = token;
      choice.reorder[base + count] = src;
      ++count;
    }
  }
  ENGRAM_CHECK(count == st.sub, "beam search kept {} of {} beams", count, st.sub);
  const int64_t cur_len = batch.prompt_len[b] + step - 1;
  st.done[key] = st.hyps[key].is_done(vals[0], cur_len);
}

// One group's step for every prompt: the best candidates of `candidates` [B sub, V] per prompt;
// the rows of a finished group only pad (score 0, continuing its first row).
void choose_group(BeamState& st, const Batch& batch, const GenerateOptions& o, const at::Tensor& candidates,
                  int64_t g, int64_t step, StepChoice& choice) {
  auto top = candidates.view({st.B, st.sub * st.V}).topk(2 * st.sub, 1, /*largest=*/true, /*sorted=*/true);
  auto vals = std::get<0>(top).contiguous();
  auto idx = std::get<1>(top).contiguous();
  auto vals_a = vals.accessor<float, 2>();
  auto idx_a = idx.accessor<int64_t, 2>();
  for (int64_t b = 0; b < st.B; ++b) {
    const int64_t base = b * st.nb + g * st.sub;
    if (!st.done[b * st.G + g]) {
      choose_beams(st, batch, o, b, g, step, vals_a[b], idx_a[b], choice);
      continue;
    }
    for (int64_t j = 0; j < st.sub; ++j) {
      choice.next_scores[base + j] = 0.0f;
      choice.current[base + j] = o.pad_id;
      choice.reorder[base + j] = base;
    }
  }
}

// Each row takes over the tokens of the row it continues, plus its new token, and its new score.
void advance(BeamState& st, const StepChoice& choice) {
  std::vector<std::vector<int32_t>> next_tokens(st.N);
  for (int64_t r = 0; r < st.N; ++r) {
    next_tokens[r] = st.tokens[choice.reorder[r]];
    next_tokens[r].push_back(static_cast<int32_t>(choice.current[r]));
  }
  st.tokens.swap(next_tokens);
  st.scores = choice.next_scores;
}

// Unfinished groups offer their running beams (HF finalize); then every prompt's hypotheses of all
// groups, best first.
std::vector<std::vector<Hypothesis>> finalize(BeamState& st, const Batch& batch) {
  for (int64_t b = 0; b < st.B; ++b)
    for (int64_t g = 0; g < st.G; ++g) {
      const int64_t key = b * st.G + g;
      if (st.done[key]) continue;
      for (int64_t j = 0; j < st.sub; ++j) {
        const int64_t r = b * st.nb + g * st.sub + j;
        st.hyps[key].add(st.tokens[r], st.scores[r], batch.prompt_len[b] + static_cast<int64_t>(st.tokens[r].size()),
                         static_cast<int>(g), false);
      }
    }
  std::vector<std::vector<Hypothesis>> result(st.B);
  for (int64_t b = 0; b < st.B; ++b) {
    for (int64_t g = 0; g < st.G; ++g)
      for (auto& h : st.hyps[b * st.G + g].beams) result[b].push_back(h);
    std::stable_sort(result[b].begin(), result[b].end(),
                     [](const Hypothesis& x, const Hypothesis& y) { return x.score > y.score; });
  }
  return result;
}

std::vector<std::vector<Hypothesis>> run_beam(Decoder& model, const Batch& batch, const GenerateOptions& o,
                                              const Prefix* prefix) {
  const int64_t B = batch.ids.size(0);
  const int64_t nb = o.num_beams, sub = nb / o.num_beam_groups, N = B * nb;
  const int64_t V = model->config().vocab_size;
  if (2 * sub > V)
    core::fail("generate: 2 * num_beams / num_beam_groups ({}) exceeds the vocabulary size ({})", 2 * sub, V);

  // Prompt: one forward per prompt, then the cache and logits are repeated for the beams.
  KVCache cache;
  auto logits = last_logits(model, batch.ids, batch.mask, prefix, &cache).repeat_interleave(nb, 0);  // [N, V]
  cache.select_rows(torch::arange(B, torch::kLong).repeat_interleave(nb));
  at::Tensor mask = batch.mask.repeat_interleave(nb, 0);
  Prefix beam_prefix;
  const Prefix* step_prefix = nullptr;
  if (prefix) {
    beam_prefix = expand_prefix(*prefix, B, nb);
    step_prefix = &beam_prefix;
  }

  BeamState st(B, o, V);
  for (int64_t step = 1; step <= o.max_new_tokens; ++step) {
    auto logprobs = torch::log_softmax(logits, -1);  // [N, V]
    StepChoice choice(N, o.pad_id);
    for (int64_t g = 0; g < st.G; ++g)  // in order: group g's penalty counts the choices of groups before it
      choose_group(st, batch, o, group_candidates(logprobs, st, g, choice.current, o), g, step, choice);
    advance(st, choice);
    if (std::all_of(st.done.begin(), st.done.end(), [](bool d) { return d; }) || step == o.max_new_tokens) break;
    cache.select_rows(torch::tensor(choice.reorder, torch::kLong));
    mask = torch::cat({mask, torch::ones({N, 1}, torch::kLong)}, 1);
    logits = last_logits(model, torch::tensor(choice.current, torch::kLong).view({N, 1}), mask, step_prefix, &cache);
  }
  return finalize(st, batch);
}

}  // namespace

std::vector<std::vector<Hypothesis>> generate_hypotheses(Decoder& model,
                                                         const std::vector<std::vector<int32_t>>& prompts,
                                                         const GenerateOptions& options, const Prefix* prefix) {
  options.validate();
  if (prompts.empty()) return {};
  torch::NoGradGuard no_grad;
  EvalGuard eval(model);
  const int64_t B = static_cast<int64_t>(prompts.size());
  auto batch = left_pad(prompts, options.pad_id, model->config().vocab_size);
  if (options.pad_id >= model->config().vocab_size)
    core::fail("generate.pad_id {} is outside the vocabulary [0, {})", options.pad_id, model->config().vocab_size);
  if (options.max_new_tokens == 0) {
    std::vector<std::vector<Hypothesis>> empty(B, std::vector<Hypothesis>(1));
    return empty;
  }
  // A prefix of length 0 is the same as none.
  Prefix batch_prefix;
  const Prefix* p = nullptr;
  if (prefix && prefix->length() > 0) {
    batch_prefix = expand_prefix(*prefix, B, 1);
    p = &batch_prefix;
  }
  if (options.strategy == GenerateOptions::Strategy::Greedy || options.strategy == GenerateOptions::Strategy::Sample)
    return run_greedy(model, batch, options, p);
  return run_beam(model, batch, options, p);
}

std::vector<std::vector<int32_t>> generate(Decoder& model, const std::vector<std::vector<int32_t>>& prompts,
                                           const GenerateOptions& options, const Prefix* prefix) {
  auto hyps = generate_hypotheses(model, prompts, options, prefix);
  std::vector<std::vector<int32_t>> out;
  out.reserve(hyps.size());
  for (auto& h : hyps) out.push_back(h.empty() ? std::vector<int32_t>{} : std::move(h.front().tokens));
  return out;
}

}  // namespace engram::model
