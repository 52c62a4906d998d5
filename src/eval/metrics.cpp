#include "eval/metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <unordered_map>

#include "core/error.h"

namespace engram::eval {
namespace {

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

// Python's string.punctuation: !"#$%&'()*+,-./:;<=>?@[\]^_`{|}~
bool is_punctuation(char c) {
  return (c >= '!' && c <= '/') || (c >= ':' && c <= '@') || (c >= '[' && c <= '`') ||
         (c >= '{' && c <= '~');
}

// A character of a \w run in Python's re, after punctuation removal: ASCII letters and digits, and
// (approximately) everything non-ASCII.
bool is_word_byte(char c) {
  const auto u = static_cast<unsigned char>(c);
  return u >= 0x80 || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

std::vector<std::string_view> split_tokens(std::string_view normalized) {
  std::vector<std::string_view> tokens;
  size_t start = 0;
  while (start < normalized.size()) {
    const size_t stop = std::min(normalized.find(' ', start), normalized.size());
    if (stop > start) tokens.push_back(normalized.substr(start, stop - start));
    start = stop + 1;
  }
  return tokens;
}

}  // namespace

std::string normalize_answer(std::string_view text) {
  // lower() and punctuation removal in one pass.
  std::string kept;
  kept.reserve(text.size());
  for (const char c : text) {
    if (is_punctuation(c)) continue;
    kept.push_back(c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c);
  }
  // re.sub(r"\b(a|an|the)\b", " ", ...): whole word runs equal to an article become a space.
  std::string no_articles;
  no_articles.reserve(kept.size());
  for (size_t i = 0; i < kept.size();) {
    if (!is_word_byte(kept[i])) {
      no_articles.push_back(kept[i++]);
      continue;
    }
    size_t j = i;
    while (j < kept.size() && is_word_byte(kept[j])) ++j;
    const std::string_view word(kept.data() + i, j - i);
    if (word == "a" || word == "an" || word == "the")
      no_articles.push_back(' ');
    else
      no_articles.append(word);
    i = j;
  }
  // " ".join(s.split())
  std::string out;
  out.reserve(no_articles.size());
  for (size_t i = 0; i < no_articles.size();) {
    if (is_space(no_articles[i])) {
      ++i;
      continue;
    }
    if (!out.empty()) out.push_back(' ');
    while (i < no_articles.size() && !is_space(no_articles[i])) out.push_back(no_articles[i++]);
  }
  return out;
}

double exact_match(std::string_view prediction, std::string_view gold) {
  return normalize_answer(prediction) == normalize_answer(gold) ? 1.0 : 0.0;
}

double prefix_exact_match(std::string_view prediction, std::string_view gold) {
  const std::string p = normalize_answer(prediction);
  const std::string g = normalize_answer(gold);
  // Python's p[:len(g)] == g (len in code points) is "p starts with g" for valid UTF-8.
  return p.compare(0, g.size(), g) == 0 ? 1.0 : 0.0;
}

double token_f1(std::string_view prediction, std::string_view gold) {
  const std::string p = normalize_answer(prediction);
  const std::string g = normalize_answer(gold);
  const std::vector<std::string_view> pred_tokens = split_tokens(p);
  const std::vector<std::string_view> gold_tokens = split_tokens(g);
  std::unordered_map<std::string_view, int64_t> gold_counts;
  for (const auto token : gold_tokens) ++gold_counts[token];
  int64_t common = 0;  // size of the multiset intersection
  for (const auto token : pred_tokens) {
    const auto it = gold_counts.find(token);
    if (it != gold_counts.end() && it->second > 0) {
      --it->second;
      ++common;
    }
  }
  if (common == 0) return 0.0;
  const double precision = static_cast<double>(common) / static_cast<double>(pred_tokens.size());
  const double recall = static_cast<double>(common) / static_cast<double>(gold_tokens.size());
  return 2 * precision * recall / (precision + recall);
}

double substring_accuracy(std::string_view prediction, std::string_view gold) {
  return normalize_answer(prediction).find(normalize_answer(gold)) != std::string::npos ? 1.0 : 0.0;
}

double max_over_references(Metric metric, std::string_view prediction,
                           const std::vector<std::string>& references) {
  double best = 0.0;
  for (const auto& reference : references) best = std::max(best, metric(prediction, reference));
  return best;
}

void MetricSums::add(std::string_view prediction, const std::vector<std::string>& answers) {
  ENGRAM_CHECK(!answers.empty(), "a question without answers reached scoring");
  const auto score = [&](Metric metric) {
    return references == References::First ? metric(prediction, answers.front())
                                           : max_over_references(metric, prediction, answers);
  };
  exact_match_sum += score(exact_match);
  prefix_exact_match_sum += score(prefix_exact_match);
  f1_sum += score(token_f1);
  substring_accuracy_sum += score(substring_accuracy);
  ++count;
}

void MetricSums::merge(const MetricSums& other) {
  exact_match_sum += other.exact_match_sum;
  prefix_exact_match_sum += other.prefix_exact_match_sum;
  f1_sum += other.f1_sum;
  substring_accuracy_sum += other.substring_accuracy_sum;
  count += other.count;
}

double perplexity_from_nll(double total_nll, int64_t total_tokens) {
  if (total_tokens <= 0 || std::isnan(total_nll)) return std::numeric_limits<double>::quiet_NaN();
  return std::exp(total_nll / static_cast<double>(total_tokens));  // overflow gives +inf
}

double PerplexitySums::mean_nll() const {
  return total_tokens > 0 ? total_nll / static_cast<double>(total_tokens)
                          : std::numeric_limits<double>::quiet_NaN();
}

}  // namespace engram::eval
