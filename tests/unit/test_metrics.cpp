// eval/metrics on fixed strings; expected values worked out by hand from the SQuAD/MAC definitions.
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/error.h"
#include "eval/metrics.h"

namespace {

using namespace engram::eval;
using Strings = std::vector<std::string>;

TEST(Normalize, LowercasePunctuationArticlesWhitespace) {
  EXPECT_EQ(normalize_answer("The Oskar."), "oskar");
  EXPECT_EQ(normalize_answer("  A  cat,\tan owl;\nTHE end!  "), "cat owl end");
  EXPECT_EQ(normalize_answer("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"), "");
  EXPECT_EQ(normalize_answer("rock-n-roll"), "rocknroll");  // punctuation removed, not spaced
  EXPECT_EQ(normalize_answer("U.S.A."), "usa");
}

TEST(Normalize, ArticlesOnlyAsWholeWords) {
  EXPECT_EQ(normalize_answer("theater"), "theater");
  EXPECT_EQ(normalize_answer("Anna, then Thea"), "anna then thea");
  EXPECT_EQ(normalize_answer("a an the"), "");
  // Punctuation goes first, so "the." and "(a)" become articles and are removed.
  EXPECT_EQ(normalize_answer("the. (a) x"), "x");
  // And "the-end" becomes the single word "theend", which is kept.
  EXPECT_EQ(normalize_answer("the-end"), "theend");
}

TEST(Normalize, EmptyAndUnicode) {
  EXPECT_EQ(normalize_answer(""), "");
  EXPECT_EQ(normalize_answer("   "), "");
  // Only ASCII letters are lower-cased; non-ASCII bytes pass through unchanged.
  EXPECT_EQ(normalize_answer("ÉCOLE Café"), "École café");
  // Non-ASCII characters count as word characters: "thé" is not an article.
  EXPECT_EQ(normalize_answer("thé the"), "thé");
}

TEST(ExactMatch, Basics) {
  EXPECT_EQ(exact_match("The Oskar.", "oskar"), 1.0);
  EXPECT_EQ(exact_match("Oskar Schindler", "oskar"), 0.0);
  EXPECT_EQ(exact_match("", ""), 1.0);
  EXPECT_EQ(exact_match("a", ""), 1.0);  // both normalize to ""
}

TEST(PrefixExactMatch, MacRule) {
  EXPECT_EQ(prefix_exact_match("Paris is the capital", "Paris"), 1.0);
  EXPECT_EQ(prefix_exact_match("Pa", "Paris"), 0.0);
  EXPECT_EQ(prefix_exact_match("The Paris.", "paris"), 1.0);
  EXPECT_EQ(prefix_exact_match("Parisian", "Paris"), 1.0);  // characters, not words, as in MAC
  EXPECT_EQ(prefix_exact_match("London", "Paris"), 0.0);
  EXPECT_EQ(prefix_exact_match("anything", ""), 1.0);  // pred[:0] == ""
  EXPECT_EQ(prefix_exact_match("Zürich, Switzerland", "zürich"), 1.0);
}

TEST(TokenF1, HandComputed) {
  EXPECT_DOUBLE_EQ(token_f1("The Oskar.", "oskar"), 1.0);
  // pred "cat sat", gold "cat": common 1, P = 1/2, R = 1/1, F1 = 2 * 0.5 * 1 / 1.5 = 2/3.
  EXPECT_DOUBLE_EQ(token_f1("the cat sat", "a cat"), 2.0 / 3.0);
  EXPECT_NEAR(token_f1("the cat sat", "a cat"), 0.667, 0.0005);
  // Multiset intersection: pred "x x y", gold "x z": common = min(2,1) for x = 1; P = 1/3, R = 1/2,
  // F1 = 2*(1/6)/(5/6) = 0.4.
  EXPECT_DOUBLE_EQ(token_f1("x x y", "x z"), 0.4);
  // pred "x x", gold "x x y": common 2; P = 1, R = 2/3, F1 = 2*(2/3)/(5/3) = 0.8.
  EXPECT_DOUBLE_EQ(token_f1("x x", "x x y"), 0.8);
  EXPECT_EQ(token_f1("dog", "cat"), 0.0);
}

TEST(TokenF1, EmptyFollowsSquadV11) {
  EXPECT_EQ(token_f1("", ""), 0.0);  // no common token -> 0, even when both are empty
  EXPECT_EQ(token_f1("the", "a"), 0.0);
  EXPECT_EQ(token_f1("cat", ""), 0.0);
  EXPECT_EQ(token_f1("", "cat"), 0.0);
}

TEST(SubstringAccuracy, SelfParamRule) {
  EXPECT_EQ(substring_accuracy("I think it is Paris, France", "paris"), 1.0);
  EXPECT_EQ(substring_accuracy("Paris", "Paris, France"), 0.0);
  // Both sides normalized first: "theater" contains "ater" (the article in the gold is gone).
  EXPECT_EQ(substring_accuracy("The theater", "the ater"), 1.0);
  EXPECT_EQ(substring_accuracy("cats", "the cat."), 1.0);  // characters, not whole words
  EXPECT_EQ(substring_accuracy("anything", ""), 1.0);
}

TEST(MaxOverReferences, TakesTheBest) {
  const Strings refs = {"Santa Clara", "Santa Clara, California"};
  EXPECT_EQ(max_over_references(exact_match, "Santa Clara California", refs), 1.0);
  EXPECT_DOUBLE_EQ(max_over_references(token_f1, "Clara", refs), 2.0 / 3.0);
  EXPECT_EQ(max_over_references(exact_match, "x", {}), 0.0);
}

TEST(MetricSums, FirstReferenceIsMacsDefault) {
  MetricSums sums;
  sums.add("Paris is the capital", {"Paris", "Paris is the capital"});
  sums.add("the cat sat", {"a cat"});
  sums.add("Pa", {"Paris"});
  EXPECT_EQ(sums.count, 3);
  EXPECT_DOUBLE_EQ(sums.exact_match_mean(), 0.0);
  // "paris is capital" starts with "paris", "cat sat" with "cat"; "pa" does not with "paris".
  EXPECT_DOUBLE_EQ(sums.prefix_exact_match_mean(), 2.0 / 3.0);
  // F1: "paris is capital" vs "paris": P = 1/3, R = 1 -> 0.5; "cat sat" vs "cat": 2/3; "pa": 0.
  EXPECT_DOUBLE_EQ(sums.f1_mean(), (0.5 + 2.0 / 3.0 + 0.0) / 3);
  EXPECT_DOUBLE_EQ(sums.substring_accuracy_mean(), 2.0 / 3.0);
}

TEST(MetricSums, MaxOverReferencesAndMerge) {
  MetricSums max_sums(References::Max);
  max_sums.add("Paris is the capital", {"Paris", "Paris is the capital"});
  EXPECT_DOUBLE_EQ(max_sums.exact_match_mean(), 1.0);
  EXPECT_DOUBLE_EQ(max_sums.f1_mean(), 1.0);

  MetricSums other(References::Max);
  other.add("Berlin", {"Rome"});
  max_sums.merge(other);
  EXPECT_EQ(max_sums.count, 2);
  EXPECT_DOUBLE_EQ(max_sums.exact_match_mean(), 0.5);

  MetricSums empty;
  EXPECT_EQ(empty.f1_mean(), 0.0);
  EXPECT_THROW(empty.add("x", {}), engram::core::InternalError);
}

TEST(Perplexity, FromNllWithGuards) {
  EXPECT_DOUBLE_EQ(perplexity_from_nll(0.0, 10), 1.0);
  EXPECT_DOUBLE_EQ(perplexity_from_nll(10 * std::log(50.0), 10), 50.0);
  EXPECT_TRUE(std::isnan(perplexity_from_nll(1.0, 0)));
  EXPECT_TRUE(std::isnan(perplexity_from_nll(1.0, -3)));
  EXPECT_TRUE(std::isnan(perplexity_from_nll(std::nan(""), 4)));
  EXPECT_EQ(perplexity_from_nll(1e6, 1), std::numeric_limits<double>::infinity());

  PerplexitySums sums;
  EXPECT_TRUE(std::isnan(sums.mean_nll()));
  sums.add(2.0, 2);
  sums.add(4.0, 2);
  EXPECT_DOUBLE_EQ(sums.mean_nll(), 1.5);
  EXPECT_DOUBLE_EQ(sums.perplexity(), std::exp(1.5));
}

}  // namespace
