#include "pretrain/pretrain.h"

#include <algorithm>
#include <fstream>

#include <fmt/ranges.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include "config/config.h"
#include "core/error.h"
#include "core/timer.h"
#include "data/collate.h"
#include "data/options.h"
#include "dist/communicator.h"
#include "eval/scores_json.h"
#include "model/model_file.h"
#include "text/tokenizer.h"
#include "train/cross_entropy.h"


namespace engram::pretrain {
namespace {

// One example per document. With questions (reading format):
//   "Context: <doc> Question: <q1> Answer: <a1>\nQuestion: <q2> Answer: <a2>\n..."
// with the training-template questions only (held-out phrasings stay unseen), and the loss on
// the answers (and the newline that ends each) only: the context is random facts whose tokens
// would swamp the signal. Each entity appears in exactly one example, so an answer can only be
// read from the context, never remembered: this is what teaches a small model to read. Without
// questions: the text, as language modelling. A reading example whose answers all fall past
// seq_len is dropped (counted in `*no_answer`): with nothing to learn its loss is 0/0, NaN, and a
// micro-batch of such examples would poison the weights.
std::vector<data::Example> build_examples(const std::vector<data::Document>& docs, const text::Tokenizer& tok,
                                          int64_t seq_len, bool context_loss, int64_t* no_answer) {
  std::vector<data::Example> examples;
  *no_answer = 0;
  for (const auto& doc : docs) {
    data::Example e;
    auto append = [&](const std::string& text, bool trained) {
      for (int32_t id : tok.encode(text)) {
        e.ids.push_back(id);
        e.train_mask.push_back(trained ? 1 : 0);
      }
    };
    const auto pieces = data::reading_layout(doc);
    if (pieces.empty()) {  // no questions: plain text
      for (auto& piece : data::encode_text(tok, doc.text, seq_len)) examples.push_back(std::move(piece));
      continue;
    }
    for (const auto& [text, answer] : pieces) append(text, answer || context_loss);
    if (static_cast<int64_t>(e.ids.size()) > seq_len) {  // keep whole questions only
      e.ids.resize(static_cast<size_t>(seq_len));
      e.train_mask.resize(static_cast<size_t>(seq_len));
    }
    if (std::find(e.train_mask.begin(), e.train_mask.end(), 1) == e.train_mask.end()) {
      ++*no_answer;
      continue;
    }
    examples.push_back(std::move(e));
  }
  return examples;
}

model::Decoder build_decoder(const PretrainOptions& o, const text::Tokenizer& tokenizer) {
  model::DecoderConfig arch = o.architecture;
  if (arch.vocab_size <= 0) arch.vocab_size = tokenizer.vocab_size();
  if (arch.vocab_size < tokenizer.vocab_size())
    core::fail("model.vocab_size {} is smaller than the tokenizer's {}", arch.vocab_size, tokenizer.vocab_size());
  if (arch.positions == model::DecoderConfig::Positions::Learned && arch.max_positions < o.seq_len)
    core::fail("model.max_positions {} < pretrain.seq_len {}", arch.max_positions, o.seq_len);
  torch::manual_seed(o.seed);  // the same initial weights on every rank
  model::Decoder decoder(arch);
  decoder->set_activation_checkpointing(o.activation_checkpointing);
  spdlog::info("model: {} parameters ({} layers, d {}, {} heads, vocab {})", decoder->num_parameters(),
               arch.n_layers, arch.d_model, arch.n_heads, arch.vocab_size);
  return decoder;
}

train::TrainResult train_decoder(const PretrainOptions& o, model::Decoder& decoder, const text::Tokenizer& tokenizer,
                                 const std::vector<data::Example>& examples, dist::Communicator& comm,
                                 dist::MpiHandle mpi_comm) {
  train::TrainOptions options = o.train;
  options.out_dir = o.out_dir;
  std::vector<std::pair<std::string, at::Tensor>> params;
  for (const auto& item : decoder->named_parameters()) params.emplace_back(item.key(), item.value());
  const double flops_per_token = 6.0 * static_cast<double>(decoder->num_parameters());
  train::Trainer trainer(options, params, comm, mpi_comm, static_cast<int64_t>(examples.size()), o.config_yaml,
                         flops_per_token);
  trainer.resume();
  decoder->train();
  const int32_t pad = std::max(0, tokenizer.pad_id());
  return trainer.run([&](const std::vector<int64_t>& indices) {
    std::vector<data::Example> batch;
    for (int64_t i : indices) batch.push_back(examples[static_cast<size_t>(i)]);
    data::Batch b = data::collate(batch, pad);
    model::ForwardOptions forward;
    forward.attention_mask = b.attention_mask;
    at::Tensor logits = decoder->forward(b.input_ids, forward).logits;
    at::Tensor loss = train::token_cross_entropy(logits, b.labels);
    return train::MicroBatchLoss{loss, b.attention_mask.sum().item<int64_t>(), {}};
  });
}

// The model file: weights, architecture, the tokenizer beside it under the Hugging Face name, so
// the folder is self-contained (and converts). Rank 0 writes it.
void save_model(const PretrainOptions& o, model::Decoder& decoder) {
  const std::string tokenizer_copy = text::copy_tokenizer_into(o.tokenizer, o.out_dir);
  model::save_model_file(o.out_dir + "/model.h5", decoder, tokenizer_copy, o.config_yaml);
}

// Does it read without knowing? The evaluation entities were never in the pretraining data.
void evaluate_reading(const PretrainOptions& o, model::Decoder& decoder, const text::Tokenizer& tokenizer,
                      dist::Communicator& comm, PretrainReport& report) {
  const auto eval_docs = data::read_files({o.eval_data}, o.read);
  eval::QaEvalOptions eval_options;
  eval_options.max_questions = o.eval_questions;
  eval_options.max_prompt_tokens = o.seq_len;
  report.in_context = eval::evaluate_qa(decoder, tokenizer, eval_docs, eval_options, comm);
  eval_options.format = data::PromptFormat::QuestionAnswer;
  report.closed_book = eval::evaluate_qa(decoder, tokenizer, eval_docs, eval_options, comm);
}

}  // namespace

void declare_pretrain_options(config::Schema& schema) {
  schema.add_list("pretrain.data", {"runs/quickstart/data/pretrain.jsonl"},
                  "training files, any supported format (JSONL, StreamingQA/ArchivalQA CSV, SQuAD JSON)");
  schema.add_string("pretrain.out_dir", "runs/quickstart/base", "checkpoints, metrics.jsonl, model.h5, eval.json");
  schema.add_int("pretrain.seq_len", 256, "longest training sequence in tokens", config::Range::at_least(8));
  schema.add_bool("pretrain.context_loss", false,
                  "reading sequences: next-token loss on the context and questions too, not only on the answers "
                  "(the entity names repeat in them, which teaches the copying that reading needs)");
  schema.add_string("pretrain.eval_data", "runs/quickstart/data/valid.jsonl",
                    "documents whose questions measure reading (context in prompt) and knowing (closed book); "
                    "\"\": no such evaluation (plain-text corpora)");
  schema.add_int("pretrain.eval_questions", 400, "questions evaluated after training (0 = all)", config::Range::at_least(0));
}

PretrainOptions pretrain_options_from(const config::Config& cfg) {
  PretrainOptions o;
  o.data = cfg.get_list("pretrain.data");
  o.out_dir = cfg.get_string("pretrain.out_dir");
  o.tokenizer = cfg.get_string("tokenizer.model");
  o.seq_len = cfg.get_int("pretrain.seq_len");
  o.context_loss = cfg.get_bool("pretrain.context_loss");
  o.eval_data = cfg.get_string("pretrain.eval_data");
  o.eval_questions = cfg.get_int("pretrain.eval_questions");
  o.seed = cfg.get_int("run.seed");
  o.architecture = model::decoder_config_from(cfg);
  o.activation_checkpointing = cfg.get_bool("train.activation_checkpointing");
  o.train = train::train_options_from(cfg);
  o.read = data::read_options_from(cfg);
  o.aids = data::reading_aids_from(cfg);
  o.config_yaml = cfg.to_yaml();
  return o;
}

PretrainReport pretrain_base_lm(const PretrainOptions& o, dist::Communicator& comm, dist::MpiHandle mpi_comm) {
  auto tokenizer = text::load_tokenizer(o.tokenizer);
  core::Stopwatch clock;
  auto docs = data::read_files(o.data, o.read);
  if (docs.empty()) core::fail("pretrain.data: no documents in {}", fmt::join(o.data, ", "));
  data::add_reading_aids(docs, o.aids);
  int64_t no_answer = 0;
  const auto examples = build_examples(docs, *tokenizer, o.seq_len, o.context_loss, &no_answer);
  if (no_answer > 0)
    spdlog::warn("pretrain: {} of {} documents dropped: not one answer within pretrain.seq_len = {} tokens", no_answer,
                 docs.size(), o.seq_len);
  if (examples.empty())
    core::fail("pretrain: no training example: every document's answers fall past pretrain.seq_len = {} tokens "
               "(raise it, or use a tokenizer with a larger vocabulary)", o.seq_len);
  int64_t tokens = 0;
  for (const auto& e : examples) tokens += static_cast<int64_t>(e.ids.size());
  spdlog::info("pretrain: {} documents -> {} examples, {} tokens ({:.1f} s)", docs.size(), examples.size(), tokens,
               clock.seconds());

  model::Decoder decoder = build_decoder(o, *tokenizer);
  PretrainReport report;
  report.parameters = decoder->num_parameters();
  report.training = train_decoder(o, decoder, *tokenizer, examples, comm, mpi_comm);
  if (report.training.stopped) {
    report.stopped = true;
    return report;
  }
  if (comm.rank() == 0) save_model(o, decoder);
  comm.barrier();
  if (!o.eval_data.empty()) evaluate_reading(o, decoder, *tokenizer, comm, report);  // "": plain text, no questions
  report.model_path = o.out_dir + "/model.h5";
  report.report_path = o.out_dir + "/eval.json";
  if (comm.rank() == 0) {
    const train::TrainResult& t = report.training;
    nlohmann::json json{{"steps", t.last_step},
                        {"seconds", t.seconds},
                        {"final_loss", t.last_loss},
                        {"context_in_prompt", eval::scores_json(report.in_context)},
                        {"closed_book", eval::scores_json(report.closed_book)}};
    std::ofstream(report.report_path) << json.dump(2) << "\n";
  }
  return report;
}

}  // namespace engram::pretrain
