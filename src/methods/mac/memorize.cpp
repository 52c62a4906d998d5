#include "methods/mac/memorize.h"

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include "core/progress.h"
#include "core/timer.h"
#include "dist/communicator.h"
#include "dist/shard_spec.h"
#include "methods/mac/bank.h"

namespace engram::mac {

MemorizeReport memorize(MacSystem& s, const std::vector<data::Document>& documents, const MemorizeOptions& options,
                        dist::Communicator& comm, dist::MpiHandle mpi_comm) {
  core::Stopwatch clock;
  MemorizeReport report;
  report.offered = static_cast<int64_t>(documents.size());
  std::vector<std::string> ids;
  for (const auto& doc : documents) ids.push_back(doc.id);
  const std::vector<int64_t> fresh = new_document_indices(options.bank_path, options.append, ids);
  report.added = static_cast<int64_t>(fresh.size());

  // This rank's contiguous share of the new documents.
  dist::RowRange mine = dist::ShardSpec(report.added, comm.world_size()).range(comm.rank());
  BankRows rows;
  std::vector<at::Tensor> parts, key_parts;
  const bool keys = s.mac->has_token_keys();
  {
    torch::NoGradGuard no_grad;
    const bool was_training = s.mac->is_training();
    s.mac->eval();
    core::Progress progress("memorize", mine.size(), options.progress && comm.rank() == 0, 2.0, "doc");
    for (int64_t begin = mine.begin; begin < mine.end; begin += options.batch) {
      const int64_t end = std::min(mine.end, begin + options.batch);
      std::vector<std::string> texts;
      for (int64_t i = begin; i < end; ++i) {
        const data::Document& doc = documents[static_cast<size_t>(fresh[static_cast<size_t>(i)])];
        texts.push_back(doc.text);
        rows.doc_ids.push_back(doc.id);
        rows.times.push_back(doc.time.value_or(0));
      }
      auto [tokens, mask] = s.mac_tokens(texts, options.doc_tokens, false);
      parts.push_back(s.mac->summarize(tokens, mask));
      if (keys) key_parts.push_back(s.mac->token_keys()->document_keys(tokens, mask));
      progress.update(end - mine.begin);
    }
    if (was_training) s.mac->train();
  }
  const MacConfig& c = s.mac->config();
  rows.summaries = parts.empty() ? torch::zeros({0, c.T, c.d}) : torch::cat(parts, 0);
  if (keys) rows.keys = key_parts.empty() ? torch::zeros({0, c.retrieval_dim}) : torch::cat(key_parts, 0);
  at::Tensor encode = torch::tensor({clock.seconds()}, torch::kFloat64);
  comm.all_reduce(encode, dist::ReduceOp::Max);
  report.encode_seconds = encode.item<double>();

  BankMeta meta;
  meta.fingerprint = s.mac->amortizer_fingerprint();
  meta.T = c.T;
  meta.d = c.d;
  meta.dtype = options.dtype;
  meta.key_dim = keys ? c.retrieval_dim : 0;
  report.total_rows = write_bank(options.bank_path, meta, rows, options.append, comm, mpi_comm);
  report.seconds = clock.seconds();
  return report;
}

}  // namespace engram::mac
