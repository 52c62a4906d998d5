#include "eval/baselines.h"

#include <map>

#include <torch/torch.h>

#include "core/progress.h"
#include "data/collate.h"
#include "model/copy.h"
#include "text/tokenizer.h"
#include "train/cross_entropy.h"

namespace engram::eval {
namespace {

// The base LM answering from a prompt: closed book or with the document.
class PromptContender : public Contender {
 public:
  PromptContender(std::string row, data::PromptFormat format) : row_(std::move(row)), format_(format) {}

  double absorb(const Stream& stream, EvalContext&) override {
    return format_ == data::PromptFormat::ContextQuestionAnswer ? stream.mean_text_bytes() : 0.0;
  }

  std::vector<Row> answer(const Stream& stream, const std::vector<StreamQuestion>& questions,
                          EvalContext& ctx) override {
    model::LanguageModel& base = ctx.base();
    return {Row{row_, answer_with_prompts(base.decoder, *base.tokenizer, stream, questions, format_,
                                          ctx.options.decoding.max_new_tokens, ctx.comm), {}}};
  }

 private:
  std::string row_;
  data::PromptFormat format_;
};

// FT(C). Every rank runs the same sequence of steps (it cannot be split: each step depends on the
// last), so every rank holds the same model.
class FineTuneContender : public Contender {
 public:
  double absorb(const Stream& stream, EvalContext& ctx) override {
    model::LanguageModel& base = ctx.base();
    model_ = model::trainable_copy(base.decoder);
    model_->train();
    torch::optim::AdamW optimizer(model_->parameters(), torch::optim::AdamWOptions(ctx.options.ft_lr).weight_decay(0.0));
    const int32_t pad = std::max(0, base.tokenizer->pad_id());
    core::Progress progress("FT(C)", stream.size(), true, 2.0, "doc");
    size_t next_point = 0;
    for (int64_t i = 0; i < stream.size(); ++i) {
      step(stream.documents[static_cast<size_t>(i)].text, *base.tokenizer, pad, ctx.options.ft_tokens, optimizer);
      progress.update(i + 1);
      for (; next_point < ctx.curve_points.size() && ctx.curve_points[next_point] == i + 1; ++next_point)
        snapshots_[i + 1] = model::weights_of(model_);
    }
    model_->eval();
    final_weights_ = model::weights_of(model_);
    return static_cast<double>(model_->num_parameters()) * 4 / static_cast<double>(stream.size());
  }

  std::vector<Row> answer(const Stream& stream, const std::vector<StreamQuestion>& questions,
                          EvalContext& ctx) override {
    return {Row{"FT(C) uniform fine-tuning", closed_book(stream, questions, ctx), {}}};
  }

  bool has_curves() const override { return true; }

  QaEvalResult answer_after(int64_t documents, const Stream& stream, const std::vector<StreamQuestion>& questions,
                            EvalContext& ctx) override {
    model::load_weights(model_, snapshots_.at(documents));
    QaEvalResult r = closed_book(stream, questions, ctx);
    model::load_weights(model_, final_weights_);
    return r;
  }

 private:
  void step(const std::string& text, const text::Tokenizer& tokenizer, int32_t pad, int64_t tokens,
            torch::optim::AdamW& optimizer) {
    auto examples = data::encode_text(tokenizer, text, tokens);
    if (examples.empty()) return;
    data::Batch b = data::collate(examples, pad);
    model::ForwardOptions forward;
    forward.attention_mask = b.attention_mask;
    at::Tensor loss = train::token_cross_entropy(model_->forward(b.input_ids, forward).logits, b.labels);
    optimizer.zero_grad();
    loss.backward();
    optimizer.step();
  }

  QaEvalResult closed_book(const Stream& stream, const std::vector<StreamQuestion>& questions, EvalContext& ctx) {
    return answer_with_prompts(model_, *ctx.base().tokenizer, stream, questions, data::PromptFormat::QuestionAnswer,
                               ctx.options.decoding.max_new_tokens, ctx.comm);
  }

  model::Decoder model_{nullptr};
  std::map<int64_t, std::vector<at::Tensor>> snapshots_;  // documents absorbed -> weights then
  std::vector<at::Tensor> final_weights_;                 // after the whole stream
};

}  // namespace

ContenderSpec closed_book_contender() {
  return {"closed_book", "the base LM answers from the question alone (what it already knows)",
          [](EvalContext&) { return std::make_unique<PromptContender>("base LM, closed book", data::PromptFormat::QuestionAnswer); }};
}

ContenderSpec context_contender() {
  return {"context", "the question's document in the prompt (upper bound of reading it)",
          [](EvalContext&) {
            return std::make_unique<PromptContender>("context in prompt", data::PromptFormat::ContextQuestionAnswer);
          }};
}

ContenderSpec ft_contender() {
  return {"ft", "FT(C): one AdamW step per document in stream order (eval.ft_lr), then closed book",
          [](EvalContext&) { return std::make_unique<FineTuneContender>(); }};
}

}  // namespace engram::eval
