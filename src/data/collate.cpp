#include "data/collate.h"

#include <ATen/ATen.h>

#include "core/error.h"
#include "data/document.h"
#include "text/tokenizer.h"

namespace engram::data {

PromptFormat prompt_format_from_name(const std::string& name) {
  if (name == "cqa") return PromptFormat::ContextQuestionAnswer;
  if (name == "qa") return PromptFormat::QuestionAnswer;
  core::fail("prompt format '{}': expected cqa (Context/Question/Answer) or qa (Question/Answer)", name);
}

std::string prompt_text(PromptFormat format, const std::string& context, const std::string& question) {
  if (format == PromptFormat::ContextQuestionAnswer) return "Context: " + context + " Question: " + question + " Answer:";
  return "Question: " + question + " Answer:";
}

std::string answer_text(const std::string& answer) { return " " + answer; }

std::vector<std::pair<std::string, bool>> reading_layout(const Document& document) {
  std::vector<std::pair<std::string, bool>> pieces;
  for (const auto& qa : document.qa) {
    if (qa.heldout || qa.answers.empty()) continue;
    pieces.emplace_back(pieces.empty() ? prompt_text(PromptFormat::ContextQuestionAnswer, document.text, qa.question)
                                       : "Question: " + qa.question + " Answer:",
                        false);
    pieces.emplace_back(answer_text(qa.answers.front()) + "\n", true);
  }
  return pieces;
}

std::vector<int32_t> encode_reading_layout(const text::Tokenizer& tokenizer, const Document& document) {
  const auto pieces = reading_layout(document);
  if (pieces.empty()) return tokenizer.encode(document.text);
  std::vector<int32_t> ids;
  for (const auto& [piece, answer] : pieces)
    for (int32_t id : tokenizer.encode(piece)) ids.push_back(id);
  return ids;
}

Example encode_qa(const text::Tokenizer& tokenizer, PromptFormat format, const std::string& context,
                  const std::string& question, const std::string& answer, int64_t max_tokens, AnswerEnd end) {
  std::vector<int32_t> prompt = tokenizer.encode(prompt_text(format, context, question));
  std::vector<int32_t> reply = tokenizer.encode(answer_text(answer) + (end == AnswerEnd::Newline ? "\n" : ""));
  if (end == AnswerEnd::Eos && tokenizer.eos_id() >= 0) reply.push_back(tokenizer.eos_id());
  if (static_cast<int64_t>(reply.size()) >= max_tokens)
    core::fail("answer '{}' needs {} tokens, more than the {} allowed", answer, reply.size(), max_tokens);
  // Over budget: drop the start of the prompt; the question and answer at its end stay.
  const auto keep = static_cast<size_t>(max_tokens) - reply.size();
  if (prompt.size() > keep) prompt.erase(prompt.begin(), prompt.end() - static_cast<std::ptrdiff_t>(keep));
  Example example;
  example.ids = prompt;
  example.ids.insert(example.ids.end(), reply.begin(), reply.end());
  example.train_mask.assign(prompt.size(), 0);
  example.train_mask.resize(example.ids.size(), 1);
  return example;
}

std::vector<Example> encode_text(const text::Tokenizer& tokenizer, const std::string& text, int64_t max_tokens) {
  ENGRAM_CHECK(max_tokens > 1, "max_tokens {}", max_tokens);
  std::vector<int32_t> ids = tokenizer.encode(text);
  if (tokenizer.eos_id() >= 0) ids.push_back(tokenizer.eos_id());
  std::vector<Example> pieces;
  for (size_t begin = 0; begin < ids.size(); begin += static_cast<size_t>(max_tokens)) {
    size_t end = std::min(ids.size(), begin + static_cast<size_t>(max_tokens));
    Example piece;
    piece.ids.assign(ids.begin() + static_cast<std::ptrdiff_t>(begin), ids.begin() + static_cast<std::ptrdiff_t>(end));
    piece.train_mask.assign(piece.ids.size(), 1);
    pieces.push_back(std::move(piece));
  }
  return pieces;
}

Batch collate(const std::vector<Example>& examples, int32_t pad_id, PadSide side) {
  ENGRAM_CHECK(!examples.empty(), "collate: no examples");
  size_t width = 0;
  for (const auto& e : examples) width = std::max(width, e.ids.size());
  const auto rows = static_cast<int64_t>(examples.size()), cols = static_cast<int64_t>(width);
  at::Tensor ids = at::full({rows, cols}, pad_id, at::kLong);
  at::Tensor mask = at::zeros({rows, cols}, at::kLong);
  at::Tensor labels = at::full({rows, cols}, kIgnoreLabel, at::kLong);
  auto ids_a = ids.accessor<int64_t, 2>();
  auto mask_a = mask.accessor<int64_t, 2>();
  auto labels_a = labels.accessor<int64_t, 2>();
  for (int64_t b = 0; b < rows; ++b) {
    const Example& e = examples[static_cast<size_t>(b)];
    const auto n = static_cast<int64_t>(e.ids.size());
    const int64_t start = side == PadSide::Left ? cols - n : 0;
    for (int64_t t = 0; t < n; ++t) {
      ids_a[b][start + t] = e.ids[static_cast<size_t>(t)];
      mask_a[b][start + t] = 1;
      // Position t predicts token t+1.
      if (t + 1 < n && e.train_mask[static_cast<size_t>(t + 1)]) labels_a[b][start + t] = e.ids[static_cast<size_t>(t + 1)];
    }
  }
  return Batch{ids, mask, labels};
}

}  // namespace engram::data
