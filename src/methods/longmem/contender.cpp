#include "methods/longmem/contender.h"

#include <filesystem>
#include <optional>

#include <fmt/format.h>
#include <torch/torch.h>

#include "config/config.h"
#include "core/error.h"
#include "data/collate.h"
#include "dist/communicator.h"
#include "io/h5file.h"
#include "methods/longmem/evaluation.h"
#include "methods/longmem/options.h"
#include "methods/longmem/system.h"
#include "text/tokenizer.h"

namespace engram::longmem {
namespace {

// The stream's documents as one token stream: "Context: <text>" and a newline each.
std::vector<int32_t> stream_of(const eval::Stream& stream, const text::Tokenizer& tokenizer) {
  const std::vector<int32_t> newline = tokenizer.encode("\n");
  std::vector<int32_t> tokens;
  for (const auto& doc : stream.documents) {
    const auto ids = tokenizer.encode("Context: " + doc.text);
    tokens.insert(tokens.end(), ids.begin(), ids.end());
    tokens.insert(tokens.end(), newline.begin(), newline.end());
  }
  return tokens;
}

// Writes `tokens` into the system's memory in segments of seq_len (backbone only), in order.
void write_all(LongMem& system, const std::vector<int32_t>& tokens, int64_t seq_len) {
  torch::NoGradGuard no_grad;
  const auto T = static_cast<size_t>(seq_len);
  for (size_t start = 0; start < tokens.size(); start += T) {
    const size_t end = std::min(tokens.size(), start + T);
    const std::vector<int64_t> ids(tokens.begin() + static_cast<std::ptrdiff_t>(start),
                                   tokens.begin() + static_cast<std::ptrdiff_t>(end));
    system.forward(torch::tensor(ids, torch::kLong).unsqueeze(0), LongMem::Pass{false, false, true});
  }
}

class LongMemContender : public eval::Contender {
 public:
  explicit LongMemContender(eval::EvalContext& ctx) : options_(longmem_options_from(ctx.config)) {}

  double absorb(const eval::Stream& stream, eval::EvalContext& ctx) override {
    model::LanguageModel& base = ctx.base();
    const std::string path = options_.out_dir + "/sidenet.h5";
    if (!std::filesystem::exists(path))
      core::fail("eval method longmem: {} does not exist; train the SideNet first (engram longmem-train)", path);
    io::H5File file(path, io::H5File::Mode::Read);
    system_.emplace(LongMem::load(base.decoder, file, "/sidenet"));
    system_->set_memory_search(options_.search);
    const std::vector<int32_t> tokens = stream_of(stream, *base.tokenizer);
    const int64_t chunk = system_->memory().shape().chunk;
    full_tokens_ = (static_cast<int64_t>(tokens.size()) + chunk - 1) / chunk * chunk;
    // The training-size memory first (kept aside), then the one holding the whole stream.
    system_->resize_memory(options_.memory_tokens);
    write_all(*system_, tokens, options_.seq_len);
    small_ = std::move(system_->memory());
    system_->resize_memory(full_tokens_);
    write_all(*system_, tokens, options_.seq_len);
    // Per document: every token's key and value, and each chunk's mean key (float32).
    const auto& shape = system_->memory().shape();
    const double bytes_per_token = 4.0 * static_cast<double>(shape.heads * shape.head_dim) * (2.0 + 1.0 / chunk);
    return bytes_per_token * static_cast<double>(tokens.size()) / static_cast<double>(stream.size());
  }

  std::vector<eval::Row> answer(const eval::Stream& /*stream*/, const std::vector<eval::StreamQuestion>& questions,
                                eval::EvalContext& ctx) override {
    eval::Row full{"LongMem (memory holds the stream)", scores(questions, ctx), {}};
    full.extras = {{"memory_tokens", static_cast<double>(full_tokens_)}};
    std::swap(system_->memory(), *small_);
    eval::Row small{fmt::format("LongMem (memory of {} tokens, FIFO)", options_.memory_tokens), scores(questions, ctx), {}};
    small.extras = {{"memory_tokens", static_cast<double>(options_.memory_tokens)}};
    std::swap(system_->memory(), *small_);
    return {full, small};
  }

 private:
  eval::QaEvalResult scores(const std::vector<eval::StreamQuestion>& questions, eval::EvalContext& ctx) {
    const text::Tokenizer& tokenizer = *ctx.base().tokenizer;
    eval::QaEvalResult result;
    for (size_t i = static_cast<size_t>(ctx.comm.rank()); i < questions.size();
         i += static_cast<size_t>(ctx.comm.world_size())) {
      const data::QA& qa = *questions[i].qa;
      const auto prompt = tokenizer.encode(data::prompt_text(data::PromptFormat::QuestionAnswer, "", qa.question));
      result.add(greedy_answer(*system_, tokenizer, prompt, ctx.options.decoding.max_new_tokens, true), qa);
    }
    result.reduce(ctx.comm);
    return result;
  }

  LongMemOptions options_;
  std::optional<LongMem> system_;
  std::optional<ChunkMemory> small_;
  int64_t full_tokens_ = 0;
};

}  // namespace

eval::ContenderSpec longmem_contender() {
  return {"longmem",
          "LongMem: the stream written into the memory of the frozen backbone, read by the SideNet (longmem.*)",
          [](eval::EvalContext& ctx) { return std::make_unique<LongMemContender>(ctx); }};
}

}  // namespace engram::longmem
