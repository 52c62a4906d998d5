#include "methods/longmem/training.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include "core/error.h"
#include "data/collate.h"
#include "data/readers.h"
#include "data/stream_batcher.h"
#include "dist/communicator.h"
#include "eval/options.h"
#include "io/h5file.h"
#include "methods/longmem/system.h"
#include "model/language_model.h"
#include "text/tokenizer.h"
#include "train/cross_entropy.h"

namespace fs = std::filesystem;

namespace engram::longmem {

std::vector<data::Document> read_documents(const std::vector<std::string>& paths, const data::ReadOptions& read) {
  std::vector<data::Document> docs;
  for (const auto& path : paths) {
    if (fs::path(path).extension() != ".txt") {
      for (auto& doc : data::read_files({path}, read)) docs.push_back(std::move(doc));
      continue;
    }
    std::ifstream in(path, std::ios::binary);
    if (!in) core::fail("cannot read '{}'", path);
    std::stringstream text;
    text << in.rdbuf();
    docs.push_back(data::Document{path, text.str(), std::nullopt, {}});
  }
  return docs;
}

std::vector<int32_t> stream_tokens(const std::vector<data::Document>& documents, const text::Tokenizer& tokenizer) {
  const std::vector<int32_t> newline = tokenizer.encode("\n");
  std::vector<int32_t> tokens;
  for (const auto& doc : documents) {
    const auto ids = data::encode_reading_layout(tokenizer, doc);
    tokens.insert(tokens.end(), ids.begin(), ids.end());
    tokens.insert(tokens.end(), newline.begin(), newline.end());
  }
  return tokens;
}

namespace {

// The step loop: rank r's rows of block t, memory cleared at each epoch's start.
train::TrainResult run_training(const LongMemOptions& o, LongMem& system, const data::StreamBatcher& batcher,
                                dist::Communicator& comm, dist::MpiHandle mpi_comm) {
  const int64_t rows = o.train.micro_batch, rank = comm.rank();
  // Forward of the frozen backbone, forward and backward of the SideNet.
  double flops_per_token = 2.0 * static_cast<double>(system.backbone()->num_parameters());
  for (const auto& p : system.sidenet()->parameters()) flops_per_token += 6.0 * static_cast<double>(p.numel());
  train::Trainer trainer(o.train, system.sidenet()->named_weights(), comm, mpi_comm,
                         batcher.steps() * batcher.batch(), o.config_yaml, flops_per_token);
  trainer.keep_rank_state(
      "longmem_memory", [&] { return system.memory().state(); },
      [&](const at::Tensor& state) { system.memory().restore(state); });
  int64_t micro = trainer.resume() * o.train.accumulation;  // micro-steps done: the stream position
  system.sidenet()->train();
  return trainer.run([&](const std::vector<int64_t>&) {
    const int64_t t = micro++ % batcher.steps();
    if (t == 0) system.memory().clear();  // a new epoch starts with an empty memory (spec 2)
    auto [inputs, targets] = batcher.step(t);
    inputs = inputs.narrow(0, rank * rows, rows);
    targets = targets.narrow(0, rank * rows, rows);
    const SegmentOutput out = system.forward(inputs, LongMem::Pass{true, true, system.config().memory});
    at::Tensor loss = train::token_cross_entropy(out.side_logits, targets);
    train::MicroBatchLoss result{loss, targets.numel(), {}};
    {
      torch::NoGradGuard no_grad;
      result.figures["backbone_loss"] = train::token_cross_entropy(out.backbone_logits, targets).item<double>();
      if (system.config().memory) result.figures["memory_share"] = torch::sigmoid(system.sidenet()->gate()).mean().item<double>();
    }
    return result;
  });
}

}  // namespace

TrainReport train_longmem(const LongMemOptions& o, dist::Communicator& comm, dist::MpiHandle mpi_comm) {
  model::LanguageModel base = eval::load_base_model(o.base_model);
  const auto tokens = stream_tokens(read_documents(o.train_data, o.read), *base.tokenizer);
  const int64_t rows = o.train.micro_batch * comm.world_size();
  if (static_cast<int64_t>(tokens.size()) < rows * (o.seq_len + 1))
    core::fail("longmem.train_data holds {} tokens: too few for {} rows of {} tokens ({} ranks x "
               "longmem.train.micro_batch {})",
               tokens.size(), rows, o.seq_len + 1, comm.world_size(), o.train.micro_batch);
  const data::StreamBatcher batcher(tokens, rows, o.seq_len);
  torch::manual_seed(o.seed);  // the same dropout-free start on every rank; weights come from the backbone
  LongMem system(base.decoder, o.sidenet, o.chunk, o.memory_tokens);
  system.set_memory_search(o.search);
  spdlog::info("longmem: backbone {} parameters, SideNet {} layers ({} trainable parameters), memory layer {} "
               "(side layer {}), {} tokens -> {} steps per epoch of {} rows x {} tokens",
               system.backbone()->num_parameters(), system.config().side_layers(base.decoder->config().n_layers),
               [&] { int64_t n = 0; for (const auto& p : system.sidenet()->parameters()) n += p.numel(); return n; }(),
               system.config().memory_layer, system.config().memory_side_layer(), tokens.size(), batcher.steps(),
               rows, o.seq_len);
  TrainReport report;
  report.stream_tokens = static_cast<int64_t>(tokens.size());
  report.steps_per_epoch = batcher.steps();
  report.training = run_training(o, system, batcher, comm, mpi_comm);
  if (report.training.stopped) return report.stopped = true, report;
  system.sidenet()->eval();
  if (system.config().memory) {
    const at::Tensor share = torch::sigmoid(system.sidenet()->gate().detach()).to(torch::kDouble);
    report.memory_share.assign(share.data_ptr<double>(), share.data_ptr<double>() + share.numel());
  }
  report.sidenet_path = o.out_dir + "/sidenet.h5";
  if (comm.rank() == 0) {
    fs::create_directories(o.out_dir);
    io::H5File file(report.sidenet_path + ".tmp", io::H5File::Mode::Create);
    system.save(file, "/sidenet");
    file.set_attr("/sidenet", "base_model", o.base_model);
    file.close();
    fs::rename(report.sidenet_path + ".tmp", report.sidenet_path);
  }
  comm.barrier();
  if (!o.recall_data.empty()) {
    auto docs = data::read_files({o.recall_data}, o.read);
    if (o.recall_documents > 0 && static_cast<int64_t>(docs.size()) > o.recall_documents)
      docs.resize(static_cast<size_t>(o.recall_documents));
    system.memory().clear();
    report.recall = beyond_window_recall(system, *base.tokenizer, docs, o.seq_len, o.max_new_tokens, comm);
  }
  return report;
}

}  // namespace engram::longmem
