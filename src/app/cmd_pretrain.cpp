// engram pretrain: trains the base LM from scratch, data parallel, resumable. On the synthetic
// world it reads the pretrain split as documents plus "Context: <doc> Question: <q> Answer: <a>"
// lines, so the model learns to read a context and answer while the evaluation entities stay
// unknown to it; then it measures exactly that on the valid split.
#include <filesystem>
#include <fstream>
#include <iostream>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include "app/command.h"
#include "core/error.h"
#include "core/timer.h"
#include "data/collate.h"
#include "data/options.h"
#include "dist/runtime.h"
#include "eval/qa_eval.h"
#include "model/decoder.h"
#include "model/model_file.h"
#include "text/tokenizer.h"
#include "train/cross_entropy.h"
#include "train/trainer.h"

namespace fs = std::filesystem;

namespace engram::app {
namespace {

std::vector<data::Document> read_documents(const std::vector<std::string>& files, const config::Config& cfg) {
  return data::read_files(files, data::read_options_from(cfg));
}

// One example per document. With questions (reading format):
//   "Context: <doc> Question: <q1> Answer: <a1>\nQuestion: <q2> Answer: <a2>\n..."
// with the training-template questions only (held-out phrasings stay unseen), and the loss on
// the answers (and the newline that ends each) only: the context is random facts whose tokens
// would swamp the signal. Each entity appears in exactly one example, so an answer can only be
// read from the context, never remembered: this is what teaches a small model to read. Without
// questions: the text, as language modelling.
std::vector<data::Example> build_examples(const std::vector<data::Document>& docs, const text::Tokenizer& tok,
                                          int64_t seq_len, bool context_loss) {
  std::vector<data::Example> examples;
  for (const auto& doc : docs) {
    data::Example e;
    auto append = [&](const std::string& text, bool trained) {
      for (int32_t id : tok.encode(text)) {
        e.ids.push_back(id);
        e.train_mask.push_back(trained ? 1 : 0);
      }
    };
    bool first = true;
    for (const auto& qa : doc.qa) {
      if (qa.heldout) continue;
      append(first ? data::prompt_text(data::PromptFormat::ContextQuestionAnswer, doc.text, qa.question)
                   : "Question: " + qa.question + " Answer:",
             context_loss);
      append(data::answer_text(qa.answers.front()) + "\n", true);
      first = false;
    }
    if (first) {  // no questions: plain text
      for (auto& piece : data::encode_text(tok, doc.text, seq_len)) examples.push_back(std::move(piece));
      continue;
    }
    if (static_cast<int64_t>(e.ids.size()) > seq_len) {  // keep whole questions only
      e.ids.resize(static_cast<size_t>(seq_len));
      e.train_mask.resize(static_cast<size_t>(seq_len));
    }
    examples.push_back(std::move(e));
  }
  return examples;
}

void print_eval(const std::string& label, const eval::QaEvalResult& r) {
  std::cout << fmt::format("{:<34} {:>6} {:>8.3f} {:>8.3f}\n", label + " (training templates)",
                           r.training_templates.count, r.training_templates.exact_match_mean(),
                           r.training_templates.f1_mean());
  std::cout << fmt::format("{:<34} {:>6} {:>8.3f} {:>8.3f}\n", label + " (held-out paraphrases)", r.heldout.count,
                           r.heldout.exact_match_mean(), r.heldout.f1_mean());
}

nlohmann::json eval_json(const eval::QaEvalResult& r) {
  auto one = [](const eval::MetricSums& m) {
    return nlohmann::json{{"questions", m.count}, {"em", m.exact_match_mean()}, {"f1", m.f1_mean()},
                          {"prefix_em", m.prefix_exact_match_mean()}};
  };
  return {{"training_templates", one(r.training_templates)}, {"heldout", one(r.heldout)}, {"all", one(r.all)}};
}

int run_pretrain(CommandContext& ctx) {
  const auto& cfg = ctx.config;
  dist::Runtime& rt = *ctx.runtime;
  dist::Communicator& comm = rt.comm();
  const bool rank0 = comm.rank() == 0;
  const std::string out_dir = cfg.get_string("pretrain.out_dir");
  const std::string tokenizer_path = cfg.get_string("tokenizer.model");
  auto tokenizer = text::load_tokenizer(tokenizer_path);

  core::Stopwatch clock;
  const auto docs = read_documents(cfg.get_list("pretrain.data"), cfg);
  const int64_t seq_len = cfg.get_int("pretrain.seq_len");
  const auto examples = build_examples(docs, *tokenizer, seq_len, cfg.get_bool("pretrain.context_loss"));
  int64_t tokens = 0;
  for (const auto& e : examples) tokens += static_cast<int64_t>(e.ids.size());
  spdlog::info("pretrain: {} documents -> {} examples, {} tokens ({:.1f} s)", docs.size(), examples.size(), tokens,
               clock.seconds());

  model::DecoderConfig arch = model::decoder_config_from(cfg);
  if (arch.vocab_size <= 0) arch.vocab_size = tokenizer->vocab_size();
  if (arch.vocab_size < tokenizer->vocab_size())
    core::fail("model.vocab_size {} is smaller than the tokenizer's {}", arch.vocab_size, tokenizer->vocab_size());
  if (arch.positions == "learned" && arch.max_positions < seq_len)
    core::fail("model.max_positions {} < pretrain.seq_len {}", arch.max_positions, seq_len);
  torch::manual_seed(cfg.get_int("run.seed"));  // the same initial weights on every rank
  model::Decoder decoder(arch);
  decoder->set_activation_checkpointing(cfg.get_bool("train.activation_checkpointing"));
  spdlog::info("model: {} parameters ({} layers, d {}, {} heads, vocab {})", decoder->num_parameters(),
               arch.n_layers, arch.d_model, arch.n_heads, arch.vocab_size);

  train::TrainOptions options = train::train_options_from(cfg);
  options.out_dir = out_dir;
  std::vector<std::pair<std::string, at::Tensor>> params;
  for (const auto& item : decoder->named_parameters()) params.emplace_back(item.key(), item.value());
  const double flops_per_token = 6.0 * static_cast<double>(decoder->num_parameters());
  train::Trainer trainer(options, params, comm, rt.mpi_comm_handle(), static_cast<int64_t>(examples.size()),
                         cfg.to_yaml(), flops_per_token);
  trainer.resume();
  decoder->train();
  const int32_t pad = std::max(0, tokenizer->pad_id());
  auto result = trainer.run([&](const std::vector<int64_t>& indices) {
    std::vector<data::Example> batch;
    for (int64_t i : indices) batch.push_back(examples[static_cast<size_t>(i)]);
    data::Batch b = data::collate(batch, pad);
    model::ForwardOptions forward;
    forward.attention_mask = b.attention_mask;
    at::Tensor logits = decoder->forward(b.input_ids, forward).logits;
    at::Tensor loss = train::token_cross_entropy(logits, b.labels);
    return train::MicroBatchLoss{loss, b.attention_mask.sum().item<int64_t>(), {}};
  });
  if (result.stopped) {
    spdlog::warn("pretrain stopped at step {}; run the same command again to continue", result.last_step);
    return 0;
  }

  // The model file: weights, architecture, the tokenizer beside it.
  if (rank0) {
    fs::create_directories(out_dir);
    // Beside the model under the Hugging Face name, so the folder is self-contained (and converts).
    const std::string tokenizer_copy = out_dir + "/tokenizer.model";
    if (fs::absolute(tokenizer_copy) != fs::absolute(tokenizer_path))
      fs::copy_file(tokenizer_path, tokenizer_copy, fs::copy_options::overwrite_existing);
    model::save_model_file(out_dir + "/model.h5", decoder, tokenizer_copy, cfg.to_yaml());
  }
  comm.barrier();

  // Does it read without knowing? Valid entities were never in the pretraining data.
  const auto eval_docs = read_documents({cfg.get_string("pretrain.eval_data")}, cfg);
  eval::QaEvalOptions eval_options;
  eval_options.max_questions = cfg.get_int("pretrain.eval_questions");
  eval_options.max_prompt_tokens = seq_len;
  auto in_context = eval::evaluate_qa(decoder, *tokenizer, eval_docs, eval_options, comm);
  eval_options.format = data::PromptFormat::QuestionAnswer;
  auto closed_book = eval::evaluate_qa(decoder, *tokenizer, eval_docs, eval_options, comm);
  if (rank0) {
    std::cout << fmt::format("\npretrained {} steps in {:.0f} s ({:.0f} tokens/s, {:.1f} GFLOP/s); final loss {:.4f}\n",
                             result.last_step, result.seconds, result.tokens_per_s, result.gflops, result.last_loss)
              << fmt::format("{:<34} {:>6} {:>8} {:>8}\n", "evaluation on valid entities", "n", "EM", "F1");
    print_eval("context in prompt", in_context);
    print_eval("closed book", closed_book);
    for (const auto& line : in_context.examples) std::cout << "  e.g. " << line << "\n";
    nlohmann::json report{{"steps", result.last_step},
                          {"seconds", result.seconds},
                          {"final_loss", result.last_loss},
                          {"context_in_prompt", eval_json(in_context)},
                          {"closed_book", eval_json(closed_book)}};
    std::ofstream(out_dir + "/eval.json") << report.dump(2) << "\n";
    std::cout << "wrote " << out_dir << "/model.h5 and " << out_dir << "/eval.json\n";
  }
  return 0;
}

}  // namespace

void declare_pretrain_options(config::Schema& schema) {
  schema.add_list("pretrain.data", {"runs/quickstart/data/pretrain.jsonl"},
                  "training files, any supported format (JSONL, StreamingQA/ArchivalQA CSV, SQuAD JSON)");
  schema.add_string("pretrain.out_dir", "runs/quickstart/base", "checkpoints, metrics.jsonl, model.h5, eval.json");
  schema.add_int("pretrain.seq_len", 256, "longest training sequence in tokens");
  schema.add_bool("pretrain.context_loss", false,
                  "reading sequences: next-token loss on the context and questions too, not only on the answers "
                  "(the entity names repeat in them, which teaches the copying that reading needs)");
  schema.add_string("pretrain.eval_data", "runs/quickstart/data/valid.jsonl",
                    "documents whose questions measure reading (context in prompt) and knowing (closed book)");
  schema.add_int("pretrain.eval_questions", 400, "questions evaluated after training (0 = all)");
}

Command pretrain_command() {
  Command c;
  c.name = "pretrain";
  c.summary = "train the base LM from scratch (data parallel, resumable)";
  c.description =
      "Trains a decoder (model.*) on pretrain.data with the trainer (train.*). A document with questions\n"
      "becomes one 'Context: <doc> Question: <q1> Answer: <a1>\\n Question: <q2> ...' sequence with the\n"
      "loss on the answers (each entity once, so answers can only be read, not remembered: the model\n"
      "learns to read); one without questions is plain language-modelling text. Checkpoints go to pretrain.out_dir/checkpoints (resumed automatically; SIGTERM or\n"
      "SIGUSR1 saves and exits 0), metrics to metrics.jsonl, the final model to model.h5 (with the\n"
      "tokenizer beside it). Then it evaluates on pretrain.eval_data: F1 with the context in the prompt\n"
      "(training templates and held-out paraphrases) and closed book.\n\n"
      "example: mpirun -np 2 engram pretrain --config configs/quickstart.yaml";
  c.run = run_pretrain;
  return c;
}

}  // namespace engram::app
