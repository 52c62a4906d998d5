#include "methods/mac/contender.h"

#include <filesystem>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "config/config.h"
#include "methods/mac/answer.h"
#include "methods/mac/bank.h"
#include "methods/mac/memorize.h"
#include "methods/mac/system.h"
#include "methods/mac/validate.h"

namespace fs = std::filesystem;

namespace engram::mac {
namespace {

class MacContender : public eval::Contender {
 public:
  explicit MacContender(eval::EvalContext& ctx)
      : system_(load_mac_system(ctx.config, trained_model_path(ctx.config), ctx.base())),
        answer_options_(answer_options_from(ctx.config, *system_.lm_tokenizer)),
        bank_path_(ctx.options.out_dir + "/bank.h5"),
        doc_tokens_(ctx.config.get_int("mac.doc_tokens")) {}

  double absorb(const eval::Stream& stream, eval::EvalContext& ctx) override {
    MemorizeOptions options;
    options.bank_path = bank_path_;
    options.doc_tokens = doc_tokens_;
    memorize(system_, stream.documents, options, ctx.comm, ctx.mpi_comm);
    bank_ = std::make_unique<BankReader>(bank_path_);
    return static_cast<double>(fs::file_size(bank_path_)) / static_cast<double>(stream.size());
  }

  std::vector<eval::Row> answer(const eval::Stream& stream, const std::vector<eval::StreamQuestion>& questions,
                                eval::EvalContext& ctx) override {
    // MAC itself first: over the whole bank, no retriever (with mac.select S, the aggregator
    // reads the S documents it scores best). Then, with a retriever (top_k = K), MAC + retrieval:
    // the aggregator reads (or selects S among) the retriever's K, beside the retriever's best
    // document read alone. Then the ablations, on MAC itself.
    const int64_t K = answer_options_.top_k, S = answer_options_.select, M = answer_options_.group_size;
    const std::string reads = S > 0 ? fmt::format(", reads its best {}", S) : "";
    std::vector<eval::Row> rows;
    auto add = [&](std::string name, bool hierarchical, int64_t top_k, int64_t select, BankView view) {
      rows.push_back(row(std::move(name), hierarchical, top_k, select, view, stream.size(), questions, ctx));
    };
    add(fmt::format("MAC (hierarchical, M={}{})", M, reads), true, 0, S, BankView::Full);
    add(fmt::format("MAC (flat{})", reads), false, 0, S, BankView::Full);
    if (K > 0) {
      add(fmt::format("MAC + retrieval (top {}{})", K, reads), true, K, S, BankView::Full);
      if (K > 1) add("MAC + retrieval (top 1)", true, 1, 0, BankView::Full);
    }
    add("MAC, gold document only", true, 0, 0, BankView::GoldOnly);
    add("MAC, gold document removed", true, 0, S, BankView::GoldRemoved);
    return rows;
  }

  bool has_curves() const override { return true; }

  // The curves are MAC's own (mac.aggregation and mac.select, no retriever), over the bank's first rows.
  eval::QaEvalResult answer_after(int64_t documents, const eval::Stream&,
                                  const std::vector<eval::StreamQuestion>& questions, eval::EvalContext& ctx) override {
    AnswerOptions o = answer_options_;
    o.top_k = 0;
    o.bank_rows = documents;
    o.progress = false;
    return answer_questions(system_, *bank_, questions, o, ctx.comm).scores;
  }

 private:
  eval::Row row(std::string name, bool hierarchical, int64_t top_k, int64_t select, BankView view, int64_t bank_rows,
                const std::vector<eval::StreamQuestion>& questions, eval::EvalContext& ctx) {
    AnswerOptions o = answer_options_;
    o.hierarchical = hierarchical;
    o.top_k = top_k;
    o.select = select;
    o.view = view;
    AnswerResult r = answer_questions(system_, *bank_, questions, o, ctx.comm);
    eval::Row out{std::move(name), r.scores, {}};
    if (r.gold_attention >= 0) {  // flat over the whole bank
      out.extras.emplace_back("gold_attention", r.gold_attention);
      spdlog::info("eval: {}: attention on the gold document {:.3f} (uniform 1/{} = {:.4f}), the most on it for "
                   "{:.1f}% of questions",
                   out.name, r.gold_attention, bank_rows, 1.0 / static_cast<double>(bank_rows), 100 * r.gold_top1);
    }
    if (r.gold_top1 >= 0) out.extras.emplace_back("gold_top1", r.gold_top1);
    if (r.gold_retrieved >= 0) {  // retriever or selection rows
      out.extras.emplace_back("gold_retrieved", r.gold_retrieved);
      spdlog::info("eval: {}: the gold document among the {} for {:.1f}% of questions, read first for {:.1f}%",
                   out.name, top_k > 0 ? "retrieved" : "selected", 100 * r.gold_retrieved, 100 * r.gold_top1);
    }
    return out;
  }

  MacSystem system_;
  AnswerOptions answer_options_;
  std::string bank_path_;
  int64_t doc_tokens_;
  std::unique_ptr<BankReader> bank_;
};

}  // namespace

eval::ContenderSpec mac_contender() {
  return {"mac", "MAC: memorize the stream into a bank (mac.out_dir/mac.h5), answer from it; with its ablations",
          [](eval::EvalContext& ctx) { return std::make_unique<MacContender>(ctx); }};
}

}  // namespace engram::mac
