#include "methods/mac/meta_train.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iterator>
#include <limits>
#include <numeric>
#include <optional>
#include <random>
#include <tuple>

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include "config/config.h"
#include "core/error.h"
#include "data/collate.h"
#include "data/options.h"
#include "data/readers.h"
#include "dist/communicator.h"
#include "dist/runtime.h"
#include "methods/mac/aggregate.h"
#include "methods/mac/system.h"
#include "methods/mac/validate.h"
#include "train/cross_entropy.h"
#include "train/trainer.h"

namespace fs = std::filesystem;

namespace engram::mac {

int64_t memory_group(int64_t step, int64_t curriculum_steps, int64_t questions, int64_t largest) {
  int64_t group = curriculum_group(step, curriculum_steps, questions);
  if (largest <= 0 || (group > 0 && group <= largest)) return group;
  group = std::min(largest, questions);
  while (questions % group != 0) --group;  // whole groups only
  return group;
}

int64_t curriculum_group(int64_t step, int64_t curriculum_steps, int64_t questions) {
  if (step >= curriculum_steps || questions <= 1) return 0;
  // S stages of equal length, stage j with groups of 2^j documents, S = floor(log2(questions)):
  // 16 questions -> groups of 1, 2, 4, 8, then the whole bank.
  int64_t stages = 0;
  while ((int64_t{2} << stages) <= questions) ++stages;
  int64_t group = int64_t{1} << (step * stages / curriculum_steps);
  while (questions % group != 0) group /= 2;  // whole groups only: 10 questions -> 2, not 4
  return group;
}

QuestionMemory question_memory(const at::Tensor& bank, int64_t questions, int64_t group, int64_t own_offset) {
  ENGRAM_CHECK(bank.dim() == 3 && own_offset >= 0 && own_offset + questions <= bank.size(0),
               "question_memory: bank [N, T, d] must hold the questions' rows");
  at::Tensor gold = torch::arange(questions, torch::kLong);
  if (group < 1) return QuestionMemory{Memory{bank.unsqueeze(0), {}}, gold + own_offset};
  ENGRAM_CHECK(questions % group == 0, "question_memory: {} questions do not make groups of {}", questions, group);
  const int64_t T = bank.size(1), d = bank.size(2);
  at::Tensor groups = bank.narrow(0, own_offset, questions).view({questions / group, group, T, d});
  return QuestionMemory{Memory{groups.repeat_interleave(group, 0), {}}, gold.remainder(group)};
}

int64_t documents_with_grad(int64_t bank_size, double ratio) {
  if (!(ratio > 0 && ratio <= 1)) core::fail("mac.backprop_ratio must be in (0, 1], got {}", ratio);
  return std::max<int64_t>(1, static_cast<int64_t>(std::floor(static_cast<double>(bank_size) * ratio + 1e-9)));
}

at::Tensor context_distillation_loss(const std::vector<at::Tensor>& student, const at::Tensor& student_mask,
                                     const std::vector<at::Tensor>& teacher, const at::Tensor& rows,
                                     const at::Tensor& counted) {
  ENGRAM_CHECK(!student.empty() && student.size() == teacher.size() && rows.dim() == 1 &&
                   rows.size(0) == teacher.front().size(0),
               "context_distillation_loss: one teacher tensor [R, Tt, d] per student layer, R rows");
  const int64_t R = rows.size(0), Ts = student.front().size(1), Tt = teacher.front().size(1), d = student.front().size(2);
  at::Tensor lengths = student_mask.index_select(0, rows).sum(1);          // [R] real student tokens
  at::Tensor column = torch::arange(Ts, torch::kLong).unsqueeze(0);        // [1, Ts]
  at::Tensor valid = column < lengths.unsqueeze(1);                         // [R, Ts]
  // Student token j of row r is teacher column Tt - length_r + j (clamped where not valid).
  at::Tensor teacher_column = (column + (Tt - lengths).unsqueeze(1)).clamp(0, Tt - 1);
  valid = valid & counted.index_select(0, rows).to(torch::kBool);
  at::Tensor weight = valid.to(student.front().scalar_type()).unsqueeze(-1);  // [R, Ts, 1]
  at::Tensor total = torch::zeros({}, student.front().options());
  for (size_t l = 0; l < student.size(); ++l) {
    at::Tensor s = student[l].index_select(0, rows);                                          // [R, Ts, d]
    at::Tensor t = teacher[l].gather(1, teacher_column.unsqueeze(-1).expand({R, Ts, d})).to(s.dtype());
    at::Tensor error = ((s - t).pow(2) * weight).sum();
    at::Tensor scale = (t.pow(2) * weight).sum().clamp_min(1e-12);
    total = total + error / scale;
  }
  return total / static_cast<double>(student.size());
}

namespace {

// One training row: a document (by index) and one of its questions, all tokenized once.
struct Row {
  int64_t document;
  std::vector<int32_t> question;  // MAC tokens of the question (its last mac.question_tokens)
  data::Example qa;               // LM tokens: "Question: q Answer:" + " a" + EOS, loss on the answer
  // With mac.distill_weight: "Context: <document> " + the same tokens as qa, whole (no ids when
  // the document does not fit in mac.doc_tokens + mac.qa_tokens or the tokens differ: no teacher).
  data::Example teacher;
};

struct TrainSet {
  std::vector<std::vector<int32_t>> documents;  // MAC tokens (the first mac.doc_tokens)
  std::vector<Row> rows;
};

// The MAC tokens of the training documents `indices` [n] (int64), padded into [n, S] ids and mask.
std::pair<at::Tensor, at::Tensor> padded_documents(const MacSystem& s, const TrainSet& set, const at::Tensor& indices) {
  const at::Tensor flat = indices.to(torch::kLong).contiguous();
  const int64_t* index = flat.data_ptr<int64_t>();
  std::vector<const std::vector<int32_t>*> docs;
  for (int64_t i = 0; i < flat.numel(); ++i) docs.push_back(&set.documents[static_cast<size_t>(index[i])]);
  return s.mac_pad(docs);
}

// The training stream's documents; the last `held_out` of them with questions go to `validation`.
std::vector<data::Document> read_train_documents(const config::Config& cfg, int64_t held_out,
                                                 std::vector<data::Document>& validation) {
  std::vector<data::Document> documents = data::read_files(cfg.get_list("stream.train"), data::read_options_from(cfg));
  // From the end: the first index of the held-out documents with questions.
  size_t cut = documents.size();
  for (int64_t found = 0; cut > 0 && found < held_out;) found += documents[--cut].qa.empty() ? 0 : 1;
  std::vector<data::Document> training(std::make_move_iterator(documents.begin()),
                                       std::make_move_iterator(documents.begin() + static_cast<std::ptrdiff_t>(cut)));
  for (size_t i = cut; i < documents.size(); ++i)  // documents without questions there stay in training
    (documents[i].qa.empty() ? training : validation).push_back(std::move(documents[i]));
  if (static_cast<int64_t>(validation.size()) < held_out)
    core::fail("mac.val_bank: {} documents with questions held out for validation, but stream.train has only {}",
               held_out, validation.size());
  return training;
}

TrainSet read_train_set(const config::Config& cfg, const MacSystem& s, bool distill,
                        const std::vector<data::Document>& documents) {
  TrainSet set;
  const int64_t qa_tokens = cfg.get_int("mac.qa_tokens");
  const int64_t doc_tokens = cfg.get_int("mac.doc_tokens"), question_tokens = cfg.get_int("mac.question_tokens");
  const auto answer_end = cfg.get_string("mac.answer_end") == "newline" ? data::AnswerEnd::Newline : data::AnswerEnd::Eos;
  for (const auto& doc : documents) {
    for (const auto& qa : doc.qa) {
      if (qa.heldout || qa.answers.empty()) continue;
      set.rows.push_back(Row{static_cast<int64_t>(set.documents.size()), s.mac_encode(qa.question, question_tokens, true),
                             data::encode_qa(*s.lm_tokenizer, data::PromptFormat::QuestionAnswer, "", qa.question,
                                             qa.answers.front(), qa_tokens, answer_end),
                             {}});
      if (distill) {
        const int64_t budget = doc_tokens + qa_tokens;
        data::Example teacher = data::encode_qa(*s.lm_tokenizer, data::PromptFormat::ContextQuestionAnswer, doc.text,
                                                qa.question, qa.answers.front(), budget, answer_end);
        const auto& student = set.rows.back().qa.ids;
        const bool whole = static_cast<int64_t>(teacher.ids.size()) < budget;
        if (whole && teacher.ids.size() > student.size() &&
            std::equal(student.begin(), student.end(), teacher.ids.end() - static_cast<std::ptrdiff_t>(student.size())))
          set.rows.back().teacher = std::move(teacher);
      }
    }
    set.documents.push_back(s.mac_encode(doc.text, doc_tokens, false));
  }
  if (set.rows.empty()) core::fail("stream.train: no documents with questions to train on");
  if (distill) {
    const auto with_teacher = std::count_if(set.rows.begin(), set.rows.end(), [](const Row& r) { return !r.teacher.ids.empty(); });
    spdlog::info("mac-train: context distillation for {} of {} questions (the others' documents do not fit in "
                 "mac.doc_tokens + mac.qa_tokens)", with_teacher, set.rows.size());
  }
  return set;
}

// Every rank's rows of x [B, ...] in rank order, [W B, ...]: the others' detached, this rank's
// own with their gradient.
at::Tensor with_other_ranks(const at::Tensor& x, dist::Communicator& comm) {
  at::Tensor all = comm.all_gather(x.detach().contiguous());  // [W, B, ...]
  std::vector<at::Tensor> parts;
  for (int r = 0; r < comm.world_size(); ++r) parts.push_back(r == comm.rank() ? x : all[r]);
  return torch::cat(parts, 0);
}

}  // namespace

at::Tensor random_documents(int64_t documents, int64_t count, int64_t seed) {
  count = std::min(count, documents);
  if (count <= 0) return torch::empty({0}, torch::kLong);
  std::mt19937_64 rng(static_cast<uint64_t>(seed));
  std::vector<int64_t> all(static_cast<size_t>(documents));
  std::iota(all.begin(), all.end(), int64_t{0});
  for (int64_t i = 0; i < count; ++i) {  // a partial Fisher-Yates shuffle: `count` distinct documents
    std::uniform_int_distribution<int64_t> pick(i, documents - 1);
    std::swap(all[static_cast<size_t>(i)], all[static_cast<size_t>(pick(rng))]);
  }
  return torch::tensor(std::vector<int64_t>(all.begin(), all.begin() + count), torch::kLong);
}

void SummaryPool::add(const at::Tensor& more, const at::Tensor& more_documents) {
  if (capacity <= 0) return;
  summaries = size() == 0 ? more.detach() : torch::cat({more.detach(), summaries}, 0);
  documents = size() == more.size(0) ? more_documents : torch::cat({more_documents, documents}, 0);
  if (size() > capacity) summaries = summaries.narrow(0, 0, capacity), documents = documents.narrow(0, 0, capacity);
}

ContrastiveStep contrastive_step(const at::Tensor& question_keys, const at::Tensor& question_documents,
                                 const at::Tensor& keys, const at::Tensor& key_documents, int64_t own_offset,
                                 double temperature) {
  return contrastive_from_scores(torch::matmul(question_keys, keys.t()), question_documents, key_documents, own_offset,
                                 temperature);
}

ContrastiveStep contrastive_from_scores(const at::Tensor& scores, const at::Tensor& question_documents,
                                        const at::Tensor& key_documents, int64_t own_offset, double temperature) {
  const int64_t Bq = scores.size(0);
  at::Tensor own = torch::arange(Bq, torch::kLong) + own_offset;
  at::Tensor copies = key_documents.unsqueeze(0) == question_documents.unsqueeze(1);
  copies.scatter_(1, own.unsqueeze(1), false);
  ContrastiveStep step;
  step.scores = scores.masked_fill(copies, -std::numeric_limits<float>::infinity());
  step.loss = torch::nll_loss(torch::log_softmax(step.scores / temperature, 1), own);
  step.top1 = (step.scores.argmax(1) == own).to(torch::kFloat64).mean().item<double>();
  return step;
}

RetrieverStep retriever_step(Retriever& retriever, const at::Tensor& question_latents, const at::Tensor& question_documents,
                             at::Tensor keys, at::Tensor key_documents, int64_t own_offset, const SummaryPool& pool,
                             int64_t hard, double temperature) {
  const int64_t Bq = question_latents.size(0), in_batch = keys.size(0);
  if (pool.size() > 0) {
    keys = torch::cat({keys, retriever->document_keys(pool.summaries)}, 0);
    key_documents = torch::cat({key_documents, pool.documents}, 0);
  }
  ContrastiveStep scored = contrastive_step(retriever->question_keys(question_latents), question_documents, keys,
                                            key_documents, own_offset, temperature);
  const at::Tensor& scores = scored.scores;
  RetrieverStep step;
  step.loss = scored.loss;
  step.top1 = scored.top1;
  if (hard > 0 && pool.size() >= hard) {
    at::Tensor best = std::get<1>(scores.detach().narrow(1, in_batch, pool.size()).topk(hard, 1));  // [Bq, hard]
    step.distractors = pool.summaries.index_select(0, best.flatten()).view({Bq, hard, pool.summaries.size(1),
                                                                            pool.summaries.size(2)});
  }
  return step;
}

namespace {

// What meta_train reads from mac.* besides the training data and the pool, checked.
struct MetaTrainSettings {
  double distill_weight = 0;   // context distillation (0: none)
  std::string out_dir;
  double ratio = 1;            // backprop dropout: the share of a bank encoded with gradient
  bool global_bank = false;    // every question searches every rank's bank
  bool lm_dropout = false;
  int64_t curriculum_steps = 0;
  int64_t largest_group = 0;   // mac.memory_group
  double selection_weight = 0;  // the aggregator's selection scores, contrastive over the global batch
  double selection_temperature = 1;
  int64_t selection_from_step = 0;  // before it the selection loss is measured, not trained
  double retriever_weight = 0, retriever_early_weight = 0;  // from mac.retriever.from_step on / before it
  double temperature = 1;
  int64_t retriever_from_step = 0;
  int64_t token_negatives = 0;  // random negative documents of the token keys
  int64_t seed = 0;
};

MetaTrainSettings read_settings(const config::Config& cfg, double distill_weight) {
  MetaTrainSettings st;
  st.distill_weight = distill_weight;
  st.out_dir = cfg.get_string("mac.out_dir");
  st.ratio = cfg.get_float("mac.backprop_ratio");
  st.global_bank = cfg.get_bool("mac.global_bank");
  st.lm_dropout = cfg.get_bool("mac.lm_dropout");
  st.curriculum_steps = cfg.get_int("mac.curriculum_steps");
  st.largest_group = cfg.get_int("mac.memory_group");
  if (st.largest_group < 0)
    core::fail("mac.memory_group must be >= 0 (0 = the whole bank), got {}", st.largest_group);
  st.selection_weight = cfg.get_float("mac.selection_weight");
  if (!(st.selection_weight >= 0)) core::fail("mac.selection_weight must be >= 0, got {}", st.selection_weight);
  st.selection_from_step = cfg.get_int("mac.selection_from_step");
  if (st.selection_from_step < 0) core::fail("mac.selection_from_step must be >= 0, got {}", st.selection_from_step);
  st.selection_temperature = cfg.get_float("mac.selection_temperature");
  if (!(st.selection_temperature > 0))
    core::fail("mac.selection_temperature must be positive, got {}", st.selection_temperature);
  st.retriever_weight = cfg.get_float("mac.retriever.weight");
  st.temperature = cfg.get_float("mac.retriever.temperature");
  if (st.retriever_weight < 0) core::fail("mac.retriever.weight must be >= 0, got {}", st.retriever_weight);
  st.retriever_from_step = cfg.get_int("mac.retriever.from_step");
  st.token_negatives = cfg.get_int("mac.retriever.token_negatives");
  if (st.token_negatives < 0)
    core::fail("mac.retriever.token_negatives must be >= 0, got {}", st.token_negatives);
  st.seed = cfg.get_int("run.seed");
  st.retriever_early_weight = cfg.get_float("mac.retriever.early_weight");
  if (st.retriever_early_weight < 0)
    core::fail("mac.retriever.early_weight must be >= 0, got {}", st.retriever_early_weight);
  if (!(st.temperature > 0)) core::fail("mac.retriever.temperature must be positive, got {}", st.temperature);
  return st;
}

// The pool goes into every checkpoint (each rank's own), so a resume continues bit-exactly.
// T, summary_width: the shape of one summary.
void keep_pool_in_checkpoints(train::Trainer& trainer, SummaryPool& pool, int64_t T, int64_t summary_width) {
  trainer.keep_rank_state(
      "mac_pool.summaries", [&pool] { return pool.size() ? pool.summaries : torch::empty({0}); },
      [&pool, T, summary_width](const at::Tensor& flat) {
        pool.summaries = flat.numel() ? flat.view({-1, T, summary_width}) : at::Tensor();
      });
  trainer.keep_rank_state(
      "mac_pool.documents", [&pool] { return pool.size() ? pool.documents : torch::empty({0}, torch::kLong); },
      [&pool](const at::Tensor& flat) { pool.documents = flat.numel() ? flat : at::Tensor(); });
}

// One micro-batch's rows as a memory bank: their documents' summaries and the trained rows'
// questions (backpropagation dropout: only the first with_grad rows are trained).
struct MicroBatchBank {
  int64_t B = 0, with_grad = 0;
  std::vector<const std::vector<int32_t>*> questions;  // MAC tokens of the trained rows' questions
  std::vector<data::Example> qa;                       // LM examples of the trained rows
  at::Tensor doc_ids, doc_mask;  // [B, S] MAC tokens of the rows' documents
  // [B, T, d] summaries, the first with_grad with gradient; with mac.global_bank every rank's
  // [W B, T, d] (the others' detached).
  at::Tensor bank;
  at::Tensor documents;       // [B] each row's document index
  at::Tensor all_documents;   // [W B] every rank's (gathered for the retriever only, else = documents)
  at::Tensor bank_documents;  // the bank rows' document indices
  int64_t own_offset = 0;     // where this rank's rows start in the bank
};

// The loss of one micro-batch of meta-training (train::LossFn): the answer's cross-entropy under
// the prefix the aggregator makes from each question and its memory, plus the retrievers'
// contrastive losses, the attention loss and context distillation where configured. It also keeps
// the retriever's pool of past summaries.
class MetaTrainLoss {
 public:
  MetaTrainLoss(MacSystem& s, const TrainSet& set, const MetaTrainSettings& st, dist::Communicator& comm,
                const train::Trainer& trainer, SummaryPool& pool, int64_t hard_negatives, int64_t with_grad,
                int32_t lm_pad)
      : s_(s), set_(set), st_(st), comm_(comm), trainer_(trainer), pool_(pool), hard_negatives_(hard_negatives),
        k_(with_grad), lm_pad_(lm_pad) {}

  train::MicroBatchLoss operator()(const std::vector<int64_t>& indices) {
    MicroBatchBank mb = summarize_rows(indices);
    share_bank(mb);
    auto [q_ids, q_mask] = s_.mac_pad(mb.questions);
    at::Tensor z0 = s_.mac->encode_question(q_ids, q_mask);
    // Curriculum: at first each question's memory is its own document only, so the modules learn
    // to encode and read a document; then groups of 2, 4, ... documents, so they learn to find it
    // among others while the needle is still easy to find.
    const int64_t group = memory_group(trainer_.step(), st_.curriculum_steps, mb.with_grad, st_.largest_group);
    auto [memory, gold] = question_memory(mb.bank, mb.with_grad, group, mb.own_offset);

    RetrieverStep retrieved;
    const bool second_phase = trainer_.step() >= st_.retriever_from_step;  // of the retriever (below)
    if (s_.mac->has_retriever()) {
      retrieved = train_retriever(mb, z0, second_phase);
      // After the curriculum, each question's memory also holds the pool documents its key finds
      // nearest to its own: the kind of distractors answering with mac.retriever.top_k brings.
      if (retrieved.distractors.defined() && group == 0)
        memory.rows = torch::cat({memory.rows.expand({mb.with_grad, -1, -1, -1}), retrieved.distractors}, 1);
    }
    ContrastiveStep token_step;
    if (s_.mac->has_token_keys()) token_step = train_token_keys(mb, q_ids, q_mask);
    update_pool(mb, second_phase);

    std::vector<at::Tensor> attention;
    at::Tensor z = aggregate(s_.mac->aggregator(), z0, memory, nullptr, &attention);
    model::Prefix prefix = s_.mac->prefix(z);
    data::Batch b = data::collate(mb.qa, lm_pad_);
    model::ForwardOptions forward;
    forward.attention_mask = b.attention_mask;
    forward.prefix = &prefix;
    forward.output_hidden_states = st_.distill_weight > 0;
    model::DecoderOutput out = s_.lm->forward(b.input_ids, forward);
    at::Tensor qa_loss = train::token_cross_entropy(out.logits, b.labels);
    train::MicroBatchLoss micro{qa_loss, b.attention_mask.sum().item<int64_t>(), {}};
    micro.figures["qa_loss"] = qa_loss.item<double>();
    add_gold_attention(micro, attention, gold, mb.bank.size(1));
    if (st_.selection_weight > 0) add_selection(micro, mb, z0);
    if (st_.distill_weight > 0) add_distillation(micro, indices, mb.with_grad, b, out);
    add_contrastive_losses(micro, token_step, retrieved, second_phase);
    return micro;
  }

 private:
  const Row& row_at(const std::vector<int64_t>& indices, int64_t i) const {
    return set_.rows[static_cast<size_t>(indices[static_cast<size_t>(i)])];
  }

  // The rows' documents summarised (the first with_grad with gradient, the others under no-grad as
  // distractors), and the trained rows' questions and QA examples.
  MicroBatchBank summarize_rows(const std::vector<int64_t>& indices) {
    MicroBatchBank mb;
    mb.B = static_cast<int64_t>(indices.size());
    mb.with_grad = std::min(k_, mb.B);
    std::vector<const std::vector<int32_t>*> docs;
    for (int64_t i = 0; i < mb.B; ++i) {
      const Row& row = row_at(indices, i);
      docs.push_back(&set_.documents[static_cast<size_t>(row.document)]);
      if (i < mb.with_grad) mb.questions.push_back(&row.question), mb.qa.push_back(row.qa);
    }
    std::tie(mb.doc_ids, mb.doc_mask) = s_.mac_pad(docs);
    mb.bank = s_.mac->summarize(mb.doc_ids.narrow(0, 0, mb.with_grad), mb.doc_mask.narrow(0, 0, mb.with_grad));
    if (mb.with_grad < mb.B) {
      torch::NoGradGuard no_grad;
      at::Tensor rest = s_.mac->summarize(mb.doc_ids.narrow(0, mb.with_grad, mb.B - mb.with_grad),
                                          mb.doc_mask.narrow(0, mb.with_grad, mb.B - mb.with_grad));
      mb.bank = torch::cat({mb.bank, rest.detach()}, 0);
    }
    mb.documents = torch::empty({mb.B}, torch::kLong);
    for (int64_t i = 0; i < mb.B; ++i) mb.documents[i] = row_at(indices, i).document;
    return mb;
  }

  // Every rank's document indices [W B] (only the retriever needs them: no collective otherwise),
  // and with mac.global_bank every rank's bank.
  void share_bank(MicroBatchBank& mb) {
    const int W = comm_.world_size();
    const bool gather = (s_.mac->has_retriever() || st_.selection_weight > 0) && W > 1;
    mb.all_documents = gather ? comm_.all_gather(mb.documents).flatten() : mb.documents;
    if (st_.global_bank && W > 1) {
      mb.own_offset = comm_.rank() * mb.B;
      mb.bank = with_other_ranks(mb.bank, comm_);
    }
    mb.bank_documents = st_.global_bank ? mb.all_documents : mb.documents;
  }

  // Contrastive: each question against every document of the global batch and pool.
  // Two phases, both training the encoders too (summaries that are easy to tell apart help
  // the aggregator find the gold document as well). Before mac.retriever.from_step, a small
  // weight within the batch, while the QA loss gets the encoders reading (a full weight from
  // the first step kept them from ever reading; trained alone on summaries that do not yet
  // tell documents apart, the retriever learned next to nothing). From it on, the full weight,
  // with the pool's negatives and hard distractors (a pool from the start, of summaries from
  // encoders that still change fast, taught the retriever nothing).
  RetrieverStep train_retriever(const MicroBatchBank& mb, const at::Tensor& z0, bool second_phase) {
    Retriever& retriever = s_.mac->retriever();
    at::Tensor keys = retriever->document_keys(mb.bank);
    int64_t own_keys = mb.own_offset;  // where this rank's documents start among the keys
    // A local bank: gather the keys alone (k numbers a document).
    if (!st_.global_bank && comm_.world_size() > 1) {
      own_keys = comm_.rank() * mb.B;
      keys = with_other_ranks(keys, comm_);
    }
    return retriever_step(retriever, z0, mb.documents.narrow(0, 0, mb.with_grad),
                          keys, mb.all_documents, own_keys, second_phase ? pool_ : SummaryPool{}, hard_negatives_,
                          st_.temperature);
  }

  // Keys from tokens: each question against every rank's batch and fresh random negatives.
  ContrastiveStep train_token_keys(const MicroBatchBank& mb, const at::Tensor& q_ids, const at::Tensor& q_mask) {
    TokenKeys& token_keys = s_.mac->token_keys();
    at::Tensor keys = token_keys->document_keys(mb.doc_ids, mb.doc_mask);
    const int W = comm_.world_size();
    const int64_t own_keys = W > 1 ? comm_.rank() * mb.B : 0;
    if (W > 1) keys = with_other_ranks(keys, comm_);
    at::Tensor negatives = random_documents(static_cast<int64_t>(set_.documents.size()), st_.token_negatives,
                                            st_.seed + 7919 * trainer_.step() + 104729 * comm_.rank());
    if (negatives.numel() > 0) {
      auto [n_ids, n_mask] = padded_documents(s_, set_, negatives);
      keys = torch::cat({keys, token_keys->document_keys(n_ids, n_mask)}, 0);
    }
    return contrastive_step(token_keys->question_keys(q_ids, q_mask), mb.documents.narrow(0, 0, mb.with_grad), keys,
                            torch::cat({mb.all_documents, negatives}, 0), own_keys, st_.temperature);
  }

  // The bank joins the pool (the retriever's second phase).
  void update_pool(const MicroBatchBank& mb, bool second_phase) {
    if (s_.mac->has_retriever() && second_phase) pool_.add(mb.bank, mb.bank_documents);
  }

  // Spec check 7: the share of the final block's attention on the gold document. T: the
  // entries' length in the bank.
  void add_gold_attention(train::MicroBatchLoss& micro, const std::vector<at::Tensor>& attention,
                          const at::Tensor& gold, int64_t T) const {
    micro.figures["gold_attention"] = attention_on_entry(attention.back(), gold, T).mean().item<double>();
  }

  // mac.selection_weight: each trained question's selection scores (the aggregator's first look,
  // Aggregator::selection_scores) over every document of the global batch, a contrastive loss with
  // its own document the label. Selection is trained apart from reading: reading a blend of
  // documents never left the closed-book plateau (docs/mac.md), so answering reads only what the
  // aggregator selects (mac.select).
  void add_selection(train::MicroBatchLoss& micro, const MicroBatchBank& mb, const at::Tensor& z0) const {
    // Before mac.selection_from_step the encoders learn to read alone (a selection loss from the
    // first step slowed reading down for good: docs/mac.md); its figures are logged all along.
    const bool trained = trainer_.step() >= st_.selection_from_step;
    std::optional<torch::NoGradGuard> measured_only;
    if (!trained) measured_only.emplace();
    at::Tensor bank = mb.bank;
    int64_t own = mb.own_offset;
    if (!st_.global_bank && comm_.world_size() > 1) {
      own = comm_.rank() * mb.B;
      bank = with_other_ranks(mb.bank, comm_);
    }
    at::Tensor scores = s_.mac->aggregator()->selection_scores(z0, bank.unsqueeze(0));
    ContrastiveStep step = contrastive_from_scores(scores, mb.documents.narrow(0, 0, mb.with_grad), mb.all_documents,
                                                   own, st_.selection_temperature);
    micro.figures["selection_loss"] = step.loss.item<double>();
    micro.figures["selection_top1"] = step.top1;
    if (trained) micro.loss = micro.loss + st_.selection_weight * step.loss;
  }

  // Context distillation: the LM's states behind the prefix (`b`, `out`) against its states after
  // the document (the rows' teachers, those whose document fits), at the tokens that predict the answer.
  void add_distillation(train::MicroBatchLoss& micro, const std::vector<int64_t>& indices, int64_t with_grad,
                        const data::Batch& b, const model::DecoderOutput& out) const {
    std::vector<data::Example> teachers;
    std::vector<int64_t> rows;
    for (int64_t i = 0; i < with_grad; ++i) {
      const Row& row = row_at(indices, i);
      if (row.teacher.ids.empty()) continue;
      teachers.push_back(row.teacher);
      rows.push_back(i);
    }
    double distill_value = 0;
    if (!rows.empty()) {
      data::Batch tb = data::collate(teachers, lm_pad_, data::PadSide::Left);
      model::ForwardOptions teacher_forward;
      teacher_forward.attention_mask = tb.attention_mask;
      teacher_forward.output_hidden_states = true;
      teacher_forward.stop_at_hidden_state = static_cast<int>(s_.lm->config().n_layers);  // states only, no head
      model::DecoderOutput taught;
      {
        torch::NoGradGuard no_grad;
        taught = s_.lm->forward(tb.input_ids, teacher_forward);
      }
      // States after each block (H[1..L]; H[0], the embeddings, are the same in both).
      std::vector<at::Tensor> student(out.hidden_states.begin() + 1, out.hidden_states.end());
      std::vector<at::Tensor> teacher(taught.hidden_states.begin() + 1, taught.hidden_states.end());
      at::Tensor distill = context_distillation_loss(student, b.attention_mask, teacher,
                                                     torch::tensor(rows, torch::kLong), b.labels.ne(data::kIgnoreLabel));
      distill_value = distill.item<double>();
      micro.loss = micro.loss + st_.distill_weight * distill;
    }
    micro.figures["distill_loss"] = distill_value;
  }

  // The retrievers' contrastive losses: the token keys' at weight 1 (they train their own
  // parameters only), the retriever's at its phase's weight.
  void add_contrastive_losses(train::MicroBatchLoss& micro, const ContrastiveStep& token_step,
                              const RetrieverStep& retrieved, bool second_phase) const {
    if (token_step.loss.defined()) {
      micro.figures["token_retriever_loss"] = token_step.loss.item<double>();
      micro.figures["token_retriever_top1"] = token_step.top1;
      micro.loss = micro.loss + token_step.loss;
    }
    if (retrieved.loss.defined()) {
      micro.figures["retriever_loss"] = retrieved.loss.item<double>();
      micro.figures["retriever_top1"] = retrieved.top1;
      micro.loss = micro.loss + (second_phase ? st_.retriever_weight : st_.retriever_early_weight) * retrieved.loss;
    }
  }

  MacSystem& s_;
  const TrainSet& set_;
  const MetaTrainSettings& st_;
  dist::Communicator& comm_;
  const train::Trainer& trainer_;
  SummaryPool& pool_;
  const int64_t hard_negatives_;
  const int64_t k_;  // documents of a bank encoded with gradient (documents_with_grad)
  const int32_t lm_pad_;
};

}  // namespace

MetaTrainReport meta_train(const config::Config& cfg, dist::Runtime& rt) {
  dist::Communicator& comm = rt.comm();
  MacSystem s = build_mac_system(cfg, /*fresh_modules=*/true);
  const double distill_weight = cfg.get_float("mac.distill_weight");
  if (distill_weight < 0) core::fail("mac.distill_weight must be >= 0, got {}", distill_weight);
  const ValidationOptions validation = validation_options_from(cfg);
  std::vector<data::Document> held_out;
  const TrainSet set = read_train_set(cfg, s, distill_weight > 0,
                                      read_train_documents(cfg, validation.every > 0 ? validation.documents : 0, held_out));
  const MetaTrainSettings st = read_settings(cfg, distill_weight);
  if (validation.every > 0)
    spdlog::info("mac-train: the last {} documents held out for validation every {} steps", held_out.size(),
                 validation.every);
  const int32_t lm_pad = std::max(0, s.lm_tokenizer->pad_id());
  spdlog::info("mac-train: {} rows over {} documents; base {} ; MAC {} parameters (T {}, {} prefix slots)",
               set.rows.size(), set.documents.size(), s.lm_source, s.mac->num_parameters(), s.mac->config().T,
               s.mac->config().slots());

  train::TrainOptions options = train::train_options_from(cfg, "mac.train");
  options.out_dir = st.out_dir;
  const int64_t bank_size = options.micro_batch;
  const int64_t k = documents_with_grad(bank_size, st.ratio);
  spdlog::info("mac-train: banks of {} documents per rank ({} with gradient){}", bank_size, k,
               st.global_bank ? fmt::format(", {} per question with mac.global_bank", bank_size * comm.world_size())
                              : "");
  // FLOPs per trained answer token are dominated by the modules; 6 x MAC parameters is the
  // usual estimate for the progress line.
  train::Trainer trainer(options, named_parameters_of(s.mac), comm, rt.mpi_handle(),
                         static_cast<int64_t>(set.rows.size()), cfg.to_yaml(),
                         6.0 * static_cast<double>(s.mac->num_parameters()));
  SummaryPool pool;
  pool.capacity = cfg.get_int("mac.retriever.pool");
  const int64_t hard_negatives = cfg.get_int("mac.retriever.hard_negatives");
  if (pool.capacity < 0 || hard_negatives < 0 || hard_negatives > pool.capacity)
    core::fail("mac.retriever.pool ({}) and mac.retriever.hard_negatives ({}) must be >= 0, hard_negatives <= pool",
               pool.capacity, hard_negatives);
  keep_pool_in_checkpoints(trainer, pool, s.mac->config().T, s.mac->config().amortizer.d_model);
  if (trainer.resume() == 0 && comm.rank() == 0) {  // a fresh run: an earlier run's best is not this one's
    for (const char* name : {"/best.h5", "/best.json", "/validation.jsonl"}) fs::remove(st.out_dir + name);
  }
  comm.barrier();  // no rank's Validator reads a best.json that rank 0 is removing
  if (pool.size() != (pool.documents.defined() ? pool.documents.numel() : 0))
    core::fail("{}: the checkpoint's retriever pool has {} summaries for {} documents", st.out_dir, pool.size(),
               pool.documents.defined() ? pool.documents.numel() : 0);
  s.mac->train();
  s.lm->train(st.lm_dropout);

  MetaTrainLoss loss(s, set, st, comm, trainer, pool, hard_negatives, k, lm_pad);
  std::optional<Validator> validator;
  if (validation.every > 0) validator.emplace(cfg, std::move(held_out));
  auto validate = [&](int64_t step) {
    if (!validator || step % validation.every != 0) return;
    validator->validate(s, step, comm, rt.mpi_handle());
    s.mac->train();
    s.lm->train(st.lm_dropout);
  };
  train::TrainResult result = trainer.run(std::ref(loss), validate);

  MetaTrainReport report;
  report.steps = result.last_step;
  report.seconds = result.seconds;
  report.last_loss = result.last_loss;
  report.stopped = result.stopped;
  if (result.stopped) return report;
  report.model_path = st.out_dir + "/mac.h5";
  if (comm.rank() == 0) {
    fs::create_directories(st.out_dir);
    save_mac_model(report.model_path, s.mac, s.lm_source, cfg.to_yaml());
  }
  comm.barrier();
  return report;
}

}  // namespace engram::mac
