#pragma once
// Text generation with the decoder LM: greedy, sampling (one token at a time from
// softmax(logits / temperature), seeded: SELF-PARAM's self-sampled targets), beam search (HF BeamSearchScorer) and diverse group
// beam search (HF group beam search, Vijayakumar et al. 2016), with an optional MAC prefix.
//
// Batching: prompts of different lengths are left-padded with pad_id and masked, so every row's
// last prompt token sits in the last column; one forward per step covers the whole batch and all
// beams, reusing the KV cache. The prompt itself is run once per prompt (not per beam) and the
// cache is then repeated for the beams.
//
// Beam search (HF semantics):
//   - scores are sums of log-softmax log-probs (float32); a finished hypothesis (one that chose
//     EOS) is scored sum_logprobs / length^length_penalty with
//     length = real prompt tokens + generated tokens before EOS (HF <= 4.35's hyp.shape[-1] for an
//     unpadded prompt); EOS's log-prob is included in the sum, EOS itself is not in the output.
//   - each step takes the top 2 * beams_per_group candidates of a group; an EOS candidate ranked
//     among the first beams_per_group becomes a finished hypothesis, the others continue; at most
//     num_beams (per group) finished hypotheses are kept (the worst is dropped).
//   - early_stopping = true: a prompt (group) is done as soon as it has beams_per_group finished
//     hypotheses. false: HF's heuristic; done once the best running score normalised by the
//     current length cannot beat the worst kept hypothesis.
//   - at max_new_tokens, every running beam of an unfinished group is offered as a hypothesis.
// Diverse group beam search: num_beams beams split into num_beam_groups groups of
// num_beams / num_beam_groups, processed in order at each step; group g's log-probs get
// -diversity_penalty * (number of times each token was chosen by groups 0..g-1 at this step) (HF's
// HammingDiversityLogitsProcessor; the penalty becomes part of the beam score, as in HF). Every
// group keeps its own finished hypotheses; a prompt is done when all its groups are done; the
// answer is the best finished hypothesis over all groups. beam == diverse_beam with one group.
#include <cstdint>
#include <string>
#include <vector>

#include "core/enum_names.h"
#include "model/decoder.h"

namespace engram::model {

struct GenerateOptions {
  enum class Strategy { Greedy, Beam, DiverseBeam, Sample };
  int64_t max_new_tokens = 16;
  Strategy strategy = Strategy::Greedy;
  int num_beams = 1;
  int num_beam_groups = 1;
  double diversity_penalty = 0;
  double length_penalty = 1.0;
  bool early_stopping = true;
  int32_t eos_id = -1;  // -1: no EOS, every row runs max_new_tokens
  int32_t pad_id = 0;   // left padding of prompts and filler after a row stops
  double temperature = 1.0;  // sample: tokens drawn from softmax(logits / temperature)
  uint64_t seed = 0;         // sample: the draws' generator seed (the same seed, the same samples)

  // core::UserError naming the option: num_beams < 1, num_beam_groups < 1,
  // num_beams % num_beam_groups != 0, greedy with num_beams != 1, beam with num_beam_groups != 1,
  // negative max_new_tokens / diversity_penalty, pad_id < 0.
  void validate() const;
};

// A finished hypothesis (beam strategies; greedy gives one per prompt).
struct Hypothesis {
  std::vector<int32_t> tokens;  // new tokens, EOS excluded
  double score = 0;             // sum_logprobs / length^length_penalty (penalties included)
  double sum_logprobs = 0;      // the beam score: model log-probs plus diversity penalties
  int group = 0;                // beam group it came from
  bool finished_by_eos = false;
};

// prompts: token ids (each non-empty; ids must be < vocab size). prefix: batch 1 or prompts.size()
// (repeated for beams). Returns the new tokens of the best sequence per prompt, EOS excluded.
// Runs under NoGradGuard with the model in eval mode (the previous mode is restored).
std::vector<std::vector<int32_t>> generate(Decoder& model, const std::vector<std::vector<int32_t>>& prompts,
                                           const GenerateOptions& options, const Prefix* prefix = nullptr);

// The same search, returning every kept finished hypothesis per prompt, best first (for greedy,
// the single greedy sequence). The first entry's tokens are what generate() returns.
std::vector<std::vector<Hypothesis>> generate_hypotheses(Decoder& model,
                                                         const std::vector<std::vector<int32_t>>& prompts,
                                                         const GenerateOptions& options,
                                                         const Prefix* prefix = nullptr);

}  // namespace engram::model

template <>
struct engram::core::EnumNames<engram::model::GenerateOptions::Strategy> {
  using Strategy = engram::model::GenerateOptions::Strategy;
  static constexpr std::pair<Strategy, const char*> names[] = {
      {Strategy::Greedy, "greedy"},
      {Strategy::Beam, "beam"},
      {Strategy::DiverseBeam, "diverse_beam"},
      {Strategy::Sample, "sample"}};
};
