#include "methods/mac/answer.h"

#include <optional>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "config/config.h"
#include "core/error.h"
#include "core/progress.h"
#include "core/timer.h"
#include "data/collate.h"
#include "dist/communicator.h"
#include "dist/shard_spec.h"
#include "eval/options.h"
#include "methods/mac/bank.h"
#include "methods/mac/options.h"
#include "methods/mac/retrieve.h"
#include "methods/mac/select.h"

namespace engram::mac {

std::string question_prompt(const std::string& question) {
  return data::prompt_text(data::PromptFormat::QuestionAnswer, "", question);
}

AnswerOptions answer_options_from(const config::Config& cfg, const text::Tokenizer& lm_tokenizer) {
  AnswerOptions options;
  options.hierarchical = cfg.get_string("mac.aggregation") == "hierarchical";
  options.group_size = cfg.get_int("mac.group_size");
  options.carry = cfg.get_string("mac.hierarchy_carries") == "summary" ? Carry::Summary : Carry::Latent;
  options.top_k = cfg.get_int("mac.retriever.top_k");
  if (options.top_k < 0) core::fail("mac.retriever.top_k must be >= 0 (0 = no retrieval), got {}", options.top_k);
  options.select = cfg.get_int("mac.select");
  if (options.select < 0) core::fail("mac.select must be >= 0 (0 = attend over the whole bank), got {}", options.select);
  if (options.top_k > 0 && options.select > options.top_k)
    core::fail("mac.select ({}) must be <= mac.retriever.top_k ({}): the aggregator selects among the retrieved",
               options.select, options.top_k);
  options.selection_temperature = cfg.get_float("mac.selection_temperature");
  options.retriever_temperature = cfg.get_float("mac.retriever.temperature");
  options.selection_vote = cfg.get_float("mac.selection_vote");
  options.batch = cfg.get_int("mac.answer_batch");
  options.question_tokens = cfg.get_int("mac.question_tokens");
  options.prompt_tokens = cfg.get_int("mac.qa_tokens");
  options.generation = eval::decoding_options_from(cfg).generate_options(lm_tokenizer);
  return options;
}

namespace {

model::Prefix select_rows(const model::Prefix& prefix, const at::Tensor& rows) {
  model::Prefix out;
  for (const auto& k : prefix.keys) out.keys.push_back(k.index_select(0, rows));
  for (const auto& v : prefix.values) out.values.push_back(v.index_select(0, rows));
  return out;
}

// Every rank's strings, in rank order.
std::vector<std::vector<std::string>> gather_strings(const std::vector<std::string>& mine, dist::Communicator& comm) {
  std::vector<std::vector<std::string>> out;
  for (const auto& bytes : comm.all_gather_bytes(nlohmann::json(mine).dump()))
    out.push_back(nlohmann::json::parse(bytes).get<std::vector<std::string>>());
  return out;
}

// Sums towards AnswerResult's gold_* figures, over the questions whose gold document is in the bank.
struct GoldTally {
  double attention = 0;  // the final block's attention share on the gold document
  double top1 = 0;       // the gold document first (most attention, or the retriever's best)
  double retrieved = 0;  // the gold document among the retriever's K
  int64_t count = 0;
};

// answer_questions, one batch of questions at a time: each rank aggregates over its own shard of
// the bank (or the retriever's best documents of it), generates the answers of its share of the
// batch, and every rank gets every answer.
class BatchAnswerer {
 public:
  BatchAnswerer(MacSystem& s, const BankReader& bank, const std::vector<BankQuestion>& questions,
                const AnswerOptions& options, dist::Communicator& comm)
      : s_(s), bank_(bank), questions_(questions), options_(options), comm_(comm),
        n_(options.bank_rows < 0 ? bank.rows() : std::min(options.bank_rows, bank.rows())) {
    if (n_ == 0) core::fail("the memory bank is empty: memorize documents first");
    W_ = comm.world_size();
    rank_ = comm.rank();
    shard_ = dist::ShardSpec(n_, W_).range(rank_);
    M_ = options.hierarchical ? options.group_size : kFlat;
    retrieving_ = options.top_k > 0 && options.view != BankView::GoldOnly;
    selecting_ = options.select > 0 && options.view != BankView::GoldOnly;
    // Selection over the whole bank reads the shard from the file group by group (select.h); the
    // other ways hold this rank's share in memory.
    if (options.view != BankView::GoldOnly && !(selecting_ && !retrieving_))
      shard_rows_ = bank.summaries(shard_.begin, shard_.size()).unsqueeze(0);
    token_keys_ = s.mac->has_token_keys();
    if (retrieving_)
      shard_index_.emplace(shard_rows_[0],
                           token_keys_ ? bank.keys(shard_.begin, shard_.size())
                                       : s.mac->retriever()->document_keys(shard_rows_[0]),
                           shard_.begin);
    measure_attention_ = !retrieving_ && !selecting_ && !options.hierarchical && options.view == BankView::Full;
    measure_retrieval_ = (retrieving_ || selecting_) && options.view == BankView::Full;
  }

  int rank() const { return rank_; }

  // Questions [begin, end): their answers and scores into the result.
  void answer_batch(size_t begin, size_t end) {
    const int64_t Bq = static_cast<int64_t>(end - begin);
    std::vector<std::string> texts;
    for (size_t i = begin; i < end; ++i) texts.push_back(questions_[i].qa->question);
    auto [q_ids, q_mask] = s_.mac_tokens(texts, options_.question_tokens, true);
    at::Tensor z0 = s_.mac->encode_question(q_ids, q_mask);
    // Generation: rank r takes questions r, r + W, ... of the batch; then everyone gets all answers.
    std::vector<int64_t> mine;
    for (int64_t i = rank_; i < Bq; i += W_) mine.push_back(i);
    const at::Tensor mine_index = torch::tensor(mine, torch::kInt64);

    at::Tensor z;  // [Bq, T, d], or with the gold-only view [mine, T, d]: no other rank needs them
    if (options_.view == BankView::GoldOnly) {
      z = gold_only_latents(begin, end, z0, mine, mine_index);
    } else {
      const at::Tensor valid = options_.view == BankView::GoldRemoved ? without_gold(begin, end) : at::Tensor();
      z = retrieving_ ? retrieved_latents(begin, end, z0, q_ids, q_mask, valid)
          : selecting_ ? selected_latents(begin, end, z0, valid)
                       : aggregated_latents(begin, end, z0, valid);
    }
    const std::vector<std::string> answers = generate_answers(texts, mine, mine_index, z);
    auto all = gather_strings(answers, comm_);
    for (int64_t i = 0; i < Bq; ++i) {
      const std::string& prediction = all[static_cast<size_t>(i % W_)][static_cast<size_t>(i / W_)];
      result_.predictions.push_back(prediction);
      result_.scores.add(prediction, *questions_[begin + static_cast<size_t>(i)].qa);
    }
  }

  // The result with the gold_* figures (seconds left to the caller).
  AnswerResult finish() {
    if (tally_.count > 0) {
      const double count = static_cast<double>(tally_.count);
      result_.gold_top1 = tally_.top1 / count;
      if (measure_attention_) result_.gold_attention = tally_.attention / count;
      if (measure_retrieval_) result_.gold_retrieved = tally_.retrieved / count;
    }
    return std::move(result_);
  }

 private:
  // Question i's gold bank row, or -1 when it has none in the bank.
  int64_t gold_of(size_t i) const {
    const int64_t row = questions_[i].gold_row;
    return row >= 0 && row < n_ ? row : int64_t{-1};
  }

  // The gold-only view: each of this rank's questions aggregated over its gold document alone.
  at::Tensor gold_only_latents(size_t begin, size_t end, const at::Tensor& z0, const std::vector<int64_t>& mine,
                               const at::Tensor& mine_index) {
    std::vector<at::Tensor> gold;
    for (size_t i = begin; i < end; ++i) {  // every rank checks every question: all fail alike
      const int64_t row = questions_[i].gold_row;
      if (row < 0 || row >= n_)
        core::fail("question '{}' has no gold document in the bank", questions_[i].qa->question);
    }
    for (int64_t i : mine) gold.push_back(bank_.summaries(questions_[begin + static_cast<size_t>(i)].gold_row, 1));
    if (mine.empty()) return at::Tensor();
    return aggregate(s_.mac->aggregator(), z0.index_select(0, mine_index), Memory{torch::stack(gold), {}},
                     &result_.stats);
  }

  // The gold-removed view: [Bq, shard rows] false at each question's gold row in this shard.
  at::Tensor without_gold(size_t begin, size_t end) const {
    const int64_t Bq = static_cast<int64_t>(end - begin);
    at::Tensor valid = torch::ones({Bq, shard_.size()}, torch::kBool);
    for (size_t i = begin; i < end; ++i) {
      const int64_t row = questions_[i].gold_row;
      if (row >= shard_.begin && row < shard_.end) valid[static_cast<int64_t>(i - begin)][row - shard_.begin] = false;
    }
    return valid;
  }

  // Aggregation over the retriever's best K documents of every rank; counts how often the gold
  // document is retrieved (first).
  at::Tensor retrieved_latents(size_t begin, size_t end, const at::Tensor& z0, const at::Tensor& q_ids,
                               const at::Tensor& q_mask, const at::Tensor& valid) {
    at::Tensor question_keys = token_keys_ ? s_.mac->token_keys()->question_keys(q_ids, q_mask)
                                           : s_.mac->retriever()->question_keys(z0);
    Retrieved found = retrieve_top_k(question_keys, *shard_index_, valid, options_.top_k, comm_);
    if (options_.select > 0) {  // the aggregator chooses among the retrieved
      Retrieved chosen = select_among(s_.mac->aggregator(), z0, found, options_.select, options_.selection_temperature,
                                      options_.retriever_temperature, options_.selection_vote);
      count_gold(begin, end, chosen.rows, found.rows);
      return aggregate(s_.mac->aggregator(), z0, chosen.memory, &result_.stats);
    }
    count_gold(begin, end, found.rows, found.rows);
    return aggregate_hierarchical(s_.mac->aggregator(), z0, found.memory, M_, &result_.stats, nullptr, options_.carry);
  }

  // Aggregation over the K documents of the whole bank that the aggregator's own first look
  // scores best (select.h); counts how often the gold document is among them (first).
  at::Tensor selected_latents(size_t begin, size_t end, const at::Tensor& z0, const at::Tensor& valid) {
    const BankMeta& meta = bank_.meta();
    const ShardRows shard{[this](int64_t begin, int64_t count) { return bank_.summaries(shard_.begin + begin, count); },
                          shard_.size(), shard_.begin, meta.T, meta.d};
    Retrieved chosen = select_top_k(s_.mac->aggregator(), z0, shard, valid, options_.select, M_, comm_);
    count_gold(begin, end, chosen.rows, chosen.rows);
    return aggregate(s_.mac->aggregator(), z0, chosen.memory, &result_.stats);
  }

  // With the full bank: is each question's gold document first in `first` [Bq, K] and among `any` [Bq, C]?
  void count_gold(size_t begin, size_t end, const at::Tensor& first, const at::Tensor& any) {
    for (size_t i = begin; measure_retrieval_ && i < end; ++i) {
      if (gold_of(i) < 0) continue;
      const int64_t q = static_cast<int64_t>(i - begin);
      tally_.top1 += first[q][0].item<int64_t>() == gold_of(i) ? 1.0 : 0.0;
      tally_.retrieved += (any[q] == gold_of(i)).any().item<bool>() ? 1.0 : 0.0;
      ++tally_.count;
    }
  }

  // Aggregation over every rank's shard (aggregate.h's distributed form); with a flat pass over
  // the full bank, counts the final block's attention on the gold document.
  at::Tensor aggregated_latents(size_t begin, size_t end, const at::Tensor& z0, const at::Tensor& valid) {
    std::vector<at::Tensor> attention;
    at::Tensor z = distributed_aggregate(s_.mac->aggregator(), z0, Memory{shard_rows_, valid}, M_, comm_,
                                         &result_.stats, measure_attention_ ? &attention : nullptr, options_.carry);
    if (measure_attention_) {  // the final call saw every row in order: rows are entries
      at::Tensor per_entry = attention_per_entry(attention.back(), z0.size(1)).mean({1, 2});  // [Bq, n]
      for (size_t i = begin; i < end; ++i) {
        if (gold_of(i) < 0) continue;
        at::Tensor question_attention = per_entry[static_cast<int64_t>(i - begin)];
        tally_.attention += question_attention[gold_of(i)].item<double>();
        tally_.top1 += question_attention.argmax().item<int64_t>() == gold_of(i) ? 1.0 : 0.0;
        ++tally_.count;
      }
    }
    return z;
  }

  // This rank's questions `mine` of the batch answered by the LM behind the prefix of their latents.
  std::vector<std::string> generate_answers(const std::vector<std::string>& texts, const std::vector<int64_t>& mine,
                                            const at::Tensor& mine_index, const at::Tensor& z) {
    std::vector<std::string> answers;
    if (mine.empty()) return answers;
    std::vector<std::vector<int32_t>> prompts;
    for (int64_t i : mine) {
      std::vector<int32_t> ids = s_.lm_tokenizer->encode(question_prompt(texts[static_cast<size_t>(i)]));
      if (static_cast<int64_t>(ids.size()) > options_.prompt_tokens)
        ids.erase(ids.begin(), ids.end() - options_.prompt_tokens);
      prompts.push_back(std::move(ids));
    }
    model::Prefix own =
        options_.view == BankView::GoldOnly ? s_.mac->prefix(z) : select_rows(s_.mac->prefix(z), mine_index);
    for (const auto& tokens : model::generate(s_.lm, prompts, options_.generation, &own))
      answers.push_back(eval::answer_from_generation(s_.lm_tokenizer->decode(tokens)));
    return answers;
  }

  MacSystem& s_;
  const BankReader& bank_;
  const std::vector<BankQuestion>& questions_;
  const AnswerOptions& options_;
  dist::Communicator& comm_;
  const int64_t n_;  // bank rows in use
  int W_ = 1, rank_ = 0;
  dist::RowRange shard_;  // this rank's rows of the bank
  at::Tensor shard_rows_;  // [1, n_rank, T, d]: this rank's share only (not with the gold-only view)
  int64_t M_ = kFlat;      // aggregation group size
  bool retrieving_ = false;
  bool selecting_ = false;  // mac.select: the aggregator reads only the documents it scores best
  bool token_keys_ = false;  // the retriever's keys come from the texts, stored in the bank
  std::optional<ShardIndex> shard_index_;  // the retriever's keys of this rank's shard, searchable
  bool measure_attention_ = false, measure_retrieval_ = false;
  AnswerResult result_;
  GoldTally tally_;
};

}  // namespace

AnswerResult answer_questions(MacSystem& s, const BankReader& bank, const std::vector<BankQuestion>& questions,
                              const AnswerOptions& options, dist::Communicator& comm) {
  core::Stopwatch clock;
  torch::NoGradGuard no_grad;
  s.mac->eval();
  s.lm->eval();
  bank.require_fingerprint(s.mac->amortizer_fingerprint());
  BatchAnswerer answerer(s, bank, questions, options, comm);
  core::Progress progress("answer", static_cast<int64_t>(questions.size()), options.progress && answerer.rank() == 0,
                          2.0, "q");
  for (size_t begin = 0; begin < questions.size(); begin += static_cast<size_t>(options.batch)) {
    const size_t end = std::min(questions.size(), begin + static_cast<size_t>(options.batch));
    answerer.answer_batch(begin, end);
    progress.update(static_cast<int64_t>(end));
  }
  AnswerResult result = answerer.finish();
  result.seconds = clock.seconds();
  return result;
}

}  // namespace engram::mac
