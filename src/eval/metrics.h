#pragma once
// QA answer metrics (specs/mac.md section 5 item 4; specs/selfparam.md "Evaluation") and
// perplexity.
//
// normalize_answer follows SQuAD's / MAC's Python: lower() -> drop string.punctuation -> whole-word
// a|an|the -> " " -> " ".join(split()). Byte-level differences from Python, on purpose (no Unicode
// tables): only ASCII letters are lower-cased ("ÉCOLE" -> "École"), only ASCII whitespace
// separates tokens, and every non-ASCII byte counts as a word character for the article rule (so
// Python's "the’s" -> "’s" is kept as "the’s" here). ASCII text gives exactly Python's result.
//
// Every metric returns 0.0 or 1.0 (F1: [0, 1]) so they share one signature.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace engram::eval {

std::string normalize_answer(std::string_view text);

// normalize(pred) == normalize(gold).
double exact_match(std::string_view prediction, std::string_view gold);

// MAC's "EM": normalize both, cut the prediction to the gold's length in characters, compare. So
// words generated after the answer are ignored ("Paris is the capital" vs "Paris" -> 1), and so is
// the rest of a longer word ("Parisian" vs "Paris" -> 1, as in MAC). An empty normalized gold
// matches everything (Python: pred[:0] == "").
double prefix_exact_match(std::string_view prediction, std::string_view gold);

// SQuAD v1.1 token F1 over whitespace tokens of the normalized strings with a multiset
// intersection. No common token gives 0, which includes both sides normalizing to empty (the
// official v1.1 script and MAC; SQuAD v2's script would give 1 there).
double token_f1(std::string_view prediction, std::string_view gold);

// SELF-PARAM's "acc": the normalized gold occurs in the normalized prediction (an empty gold
// always does, as with Python's `in`).
double substring_accuracy(std::string_view prediction, std::string_view gold);

using Metric = double (*)(std::string_view prediction, std::string_view gold);

// The best score over several references (SQuAD's official evaluation); 0 when there are none.
double max_over_references(Metric metric, std::string_view prediction,
                           const std::vector<std::string>& references);

// Which references a question is scored against. MAC scores the one reference (answers[0]) with no
// max; SQuAD's official script takes the max over all of them.
enum class References { First, Max };

// Running sums over questions. The sums are public so ranks can add them up before the means.
struct MetricSums {
  explicit MetricSums(References references = References::First) : references(references) {}

  // `answers` must not be empty (every reader guarantees at least one).
  void add(std::string_view prediction, const std::vector<std::string>& answers);
  void merge(const MetricSums& other);

  double exact_match_mean() const { return mean(exact_match_sum); }
  double prefix_exact_match_mean() const { return mean(prefix_exact_match_sum); }
  double f1_mean() const { return mean(f1_sum); }
  double substring_accuracy_mean() const { return mean(substring_accuracy_sum); }

  References references;
  double exact_match_sum = 0;
  double prefix_exact_match_sum = 0;
  double f1_sum = 0;
  double substring_accuracy_sum = 0;
  int64_t count = 0;

 private:
  double mean(double sum) const { return count > 0 ? sum / static_cast<double>(count) : 0.0; }
};

// exp(total_nll / total_tokens): NaN when there are no tokens or the NLL is NaN, +inf when the
// mean is so large that exp overflows (or the NLL is +inf).
double perplexity_from_nll(double total_nll, int64_t total_tokens);

// Sums of token NLL and token counts (over batches, then over ranks).
struct PerplexitySums {
  void add(double nll, int64_t tokens) {
    total_nll += nll;
    total_tokens += tokens;
  }
  double mean_nll() const;  // NaN when empty
  double perplexity() const { return perplexity_from_nll(total_nll, total_tokens); }

  double total_nll = 0;
  int64_t total_tokens = 0;
};

}  // namespace engram::eval
