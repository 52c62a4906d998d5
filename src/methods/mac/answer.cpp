#include "methods/mac/answer.h"

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "config/config.h"
#include "core/error.h"
#include "core/progress.h"
#include "core/timer.h"
#include "data/collate.h"
#include "dist/communicator.h"
#include "dist/shard_spec.h"
#include "methods/mac/bank.h"
#include "methods/mac/options.h"
#include "methods/mac/retrieve.h"

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
  options.batch = cfg.get_int("mac.answer_batch");
  options.question_tokens = cfg.get_int("mac.question_tokens");
  options.prompt_tokens = cfg.get_int("mac.qa_tokens");
  options.generation = generate_options_from(cfg, lm_tokenizer);
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

}  // namespace

AnswerResult answer_questions(MacSystem& s, const BankReader& bank, const std::vector<BankQuestion>& questions,
                              const AnswerOptions& options, dist::Communicator& comm) {
  core::Stopwatch clock;
  torch::NoGradGuard no_grad;
  s.mac->eval();
  s.lm->eval();
  bank.require_fingerprint(s.mac->amortizer_fingerprint());
  const int64_t n = options.bank_rows < 0 ? bank.rows() : std::min(options.bank_rows, bank.rows());
  if (n == 0) core::fail("the memory bank is empty: memorize documents first");
  const int W = comm.world_size(), rank = comm.rank();
  const dist::RowRange shard = dist::ShardSpec(n, W).range(rank);
  at::Tensor shard_rows;  // [1, n_rank, T, d]: this rank's share only
  if (options.view != BankView::GoldOnly) shard_rows = bank.summaries(shard.begin, shard.size()).unsqueeze(0);
  const int64_t M = options.hierarchical ? options.group_size : kFlat;
  const bool retrieving = options.top_k > 0 && options.view != BankView::GoldOnly;
  std::optional<ShardIndex> shard_index;  // the retriever's keys of this rank's shard, searchable
  const bool token_keys = s.mac->has_token_keys();  // keys from the texts, stored in the bank
  if (retrieving)
    shard_index.emplace(shard_rows[0],
                        token_keys ? bank.keys(shard.begin, shard.size())
                                   : s.mac->retriever()->document_keys(shard_rows[0]),
                        shard.begin);

  AnswerResult result;
  const bool measure_attention = !retrieving && !options.hierarchical && options.view == BankView::Full;
  const bool measure_retrieval = retrieving && options.view == BankView::Full;
  double attention_sum = 0, top1_sum = 0, retrieved_sum = 0;
  int64_t gold_count = 0;  // questions with their gold document in the bank
  auto gold_of = [&](size_t i) {
    const int64_t row = questions[i].gold_row;
    return row >= 0 && row < n ? row : int64_t{-1};
  };
  core::Progress progress("answer", static_cast<int64_t>(questions.size()), options.progress && rank == 0, 2.0, "q");
  for (size_t begin = 0; begin < questions.size(); begin += static_cast<size_t>(options.batch)) {
    const size_t end = std::min(questions.size(), begin + static_cast<size_t>(options.batch));
    const int64_t Bq = static_cast<int64_t>(end - begin);
    std::vector<std::string> texts;
    for (size_t i = begin; i < end; ++i) texts.push_back(questions[i].qa->question);
    auto [q_ids, q_mask] = s.mac_tokens(texts, options.question_tokens, true);
    at::Tensor z0 = s.mac->encode_question(q_ids, q_mask);
    // Generation: rank r takes questions r, r + W, ... of the batch; then everyone gets all answers.
    std::vector<int64_t> mine;
    for (int64_t i = rank; i < Bq; i += W) mine.push_back(i);
    const at::Tensor mine_index = torch::tensor(mine, torch::kInt64);

    at::Tensor z;  // [Bq, T, d], or with the gold-only view [mine, T, d]: no other rank needs them
    if (options.view == BankView::GoldOnly) {
      std::vector<at::Tensor> gold;
      for (size_t i = begin; i < end; ++i) {  // every rank checks every question: all fail alike
        const int64_t row = questions[i].gold_row;
        if (row < 0 || row >= n) core::fail("question '{}' has no gold document in the bank", questions[i].qa->question);
      }
      for (int64_t i : mine) gold.push_back(bank.summaries(questions[begin + static_cast<size_t>(i)].gold_row, 1));
      if (!mine.empty())
        z = aggregate(s.mac->aggregator(), z0.index_select(0, mine_index), Memory{torch::stack(gold), {}}, &result.stats);
    } else {
      at::Tensor valid;
      if (options.view == BankView::GoldRemoved) {
        valid = torch::ones({Bq, shard.size()}, torch::kBool);
        for (size_t i = begin; i < end; ++i) {
          const int64_t row = questions[i].gold_row;
          if (row >= shard.begin && row < shard.end) valid[static_cast<int64_t>(i - begin)][row - shard.begin] = false;
        }
      }
      if (retrieving) {
        at::Tensor question_keys = token_keys ? s.mac->token_keys()->question_keys(q_ids, q_mask)
                                              : s.mac->retriever()->question_keys(z0);
        Retrieved found = retrieve_top_k(question_keys, *shard_index, valid, options.top_k, comm);
        z = aggregate_hierarchical(s.mac->aggregator(), z0, found.memory, M, &result.stats, nullptr, options.carry);
        for (size_t i = begin; measure_retrieval && i < end; ++i) {
          if (gold_of(i) < 0) continue;
          at::Tensor hits = found.rows[static_cast<int64_t>(i - begin)] == gold_of(i);
          top1_sum += hits[0].item<bool>() ? 1.0 : 0.0;
          retrieved_sum += hits.any().item<bool>() ? 1.0 : 0.0;
          ++gold_count;
        }
      } else {
        std::vector<at::Tensor> attention;
        z = distributed_aggregate(s.mac->aggregator(), z0, Memory{shard_rows, valid}, M, comm, &result.stats,
                                  measure_attention ? &attention : nullptr, options.carry);
        if (measure_attention) {  // the final call saw every row in order: rows are entries
          at::Tensor per_entry = attention_per_entry(attention.back(), z0.size(1)).mean({1, 2});  // [Bq, n]
          for (size_t i = begin; i < end; ++i) {
            if (gold_of(i) < 0) continue;
            at::Tensor mine = per_entry[static_cast<int64_t>(i - begin)];
            attention_sum += mine[gold_of(i)].item<double>();
            top1_sum += mine.argmax().item<int64_t>() == gold_of(i) ? 1.0 : 0.0;
            ++gold_count;
          }
        }
      }
    }
    std::vector<std::string> answers;
    if (!mine.empty()) {
      std::vector<std::vector<int32_t>> prompts;
      for (int64_t i : mine) {
        std::vector<int32_t> ids = s.lm_tokenizer->encode(question_prompt(texts[static_cast<size_t>(i)]));
        if (static_cast<int64_t>(ids.size()) > options.prompt_tokens)
          ids.erase(ids.begin(), ids.end() - options.prompt_tokens);
        prompts.push_back(std::move(ids));
      }
      model::Prefix own = options.view == BankView::GoldOnly ? s.mac->prefix(z) : select_rows(s.mac->prefix(z), mine_index);
      for (const auto& tokens : model::generate(s.lm, prompts, options.generation, &own))
        answers.push_back(eval::answer_from_generation(s.lm_tokenizer->decode(tokens)));
    }
    auto all = gather_strings(answers, comm);
    for (int64_t i = 0; i < Bq; ++i) {
      const std::string& prediction = all[static_cast<size_t>(i % W)][static_cast<size_t>(i / W)];
      result.predictions.push_back(prediction);
      result.scores.add(prediction, *questions[begin + static_cast<size_t>(i)].qa);
    }
    progress.update(static_cast<int64_t>(end));
  }
  if (gold_count > 0) {
    const double count = static_cast<double>(gold_count);
    result.gold_top1 = top1_sum / count;
    if (measure_attention) result.gold_attention = attention_sum / count;
    if (measure_retrieval) result.gold_retrieved = retrieved_sum / count;
  }
  result.seconds = clock.seconds();
  return result;
}

}  // namespace engram::mac
