#pragma once
// Turning examples into model inputs: prompt formats, answer-only label masks, and padded batches.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>

namespace engram::text {
class Tokenizer;
}

namespace engram::data {

constexpr int64_t kIgnoreLabel = -100;  // labels the loss skips (LibTorch's cross_entropy default)

enum class PromptFormat {
  ContextQuestionAnswer,  // "Context: <c> Question: <q> Answer: <a>"
  QuestionAnswer,         // "Question: <q> Answer: <a>" (closed book)
};
PromptFormat prompt_format_from_name(const std::string& name);  // "cqa" | "qa"

// The prompt up to and including "Answer:", and the answer text that follows it (" <a>").
std::string prompt_text(PromptFormat format, const std::string& context, const std::string& question);
std::string answer_text(const std::string& answer);

// A document with questions as engram's pretraining lays it out, in pieces to encode apart:
// "Context: <text> Question: q1 Answer:", " a1\n", "Question: q2 Answer:", " a2\n", ... (the
// bool: the piece is an answer). Held-out questions are left out; no question -> no piece.
struct Document;
std::vector<std::pair<std::string, bool>> reading_layout(const Document& document);
// The token ids of that layout, or of the text alone when the document has no question (plain
// text, read as language modelling).
std::vector<int32_t> encode_reading_layout(const text::Tokenizer& tokenizer, const Document& document);

// One tokenized example: ids, and which positions are trained on.
struct Example {
  std::vector<int32_t> ids;
  std::vector<uint8_t> train_mask;  // 1 where the token is predicted by the loss
};

// Prompt + answer (+ EOS when the tokenizer has one), loss on the answer tokens only. Prompts
// longer than `max_tokens` lose their start (the question and answer are kept).
// How a trained answer ends: with EOS (Hugging Face LMs, the reference) or with a newline (the
// reading format engram's pretraining teaches: "... Answer: <a>\n").
enum class AnswerEnd { Eos, Newline };
Example encode_qa(const text::Tokenizer& tokenizer, PromptFormat format, const std::string& context,
                  const std::string& question, const std::string& answer, int64_t max_tokens,
                  AnswerEnd end = AnswerEnd::Eos);
// Plain text (language modelling): every token is trained on; split into pieces of <= max_tokens.
std::vector<Example> encode_text(const text::Tokenizer& tokenizer, const std::string& text, int64_t max_tokens);

// A padded batch for a causal LM. Labels are shifted: labels[b][t] = ids[b][t+1] where that
// token is trained on, else kIgnoreLabel. Padding goes right (training) or left (generation, so
// every prompt ends at the last column).
struct Batch {
  at::Tensor input_ids;       // [B, T] int64
  at::Tensor attention_mask;  // [B, T] int64, 1 for real tokens
  at::Tensor labels;          // [B, T] int64
};
enum class PadSide { Right, Left };
Batch collate(const std::vector<Example>& examples, int32_t pad_id, PadSide side = PadSide::Right);

}  // namespace engram::data
