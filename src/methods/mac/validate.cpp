#include "methods/mac/validate.h"

#include <algorithm>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "config/config.h"
#include "core/error.h"
#include "dist/communicator.h"
#include "methods/mac/answer.h"
#include "methods/mac/bank.h"
#include "methods/mac/memorize.h"

namespace fs = std::filesystem;

namespace engram::mac {

ValidationOptions validation_options_from(const config::Config& cfg) {
  ValidationOptions o;
  o.every = cfg.get_int("mac.eval_every");
  o.documents = cfg.get_int("mac.val_bank");
  o.questions = cfg.get_int("mac.val_questions");
  if (o.every < 0) core::fail("mac.eval_every must be >= 0 (0 = no validation), got {}", o.every);
  if (o.every > 0 && (o.documents < 1 || o.questions < 1))
    core::fail("with mac.eval_every, mac.val_bank ({}) and mac.val_questions ({}) must be >= 1", o.documents,
               o.questions);
  return o;
}

Validator::Validator(const config::Config& cfg, std::vector<data::Document> documents)
    : config_(cfg), documents_(std::move(documents)), out_dir_(cfg.get_string("mac.out_dir")) {
  const int64_t limit = cfg.get_int("mac.val_questions");
  for (size_t d = 0; d < documents_.size(); ++d)
    for (const auto& qa : documents_[d].qa)
      if (!qa.answers.empty() && static_cast<int64_t>(questions_.size()) < limit)
        questions_.push_back(eval::StreamQuestion{&qa, static_cast<int64_t>(d)});
  if (questions_.empty()) core::fail("mac.val_bank: the held-out training documents have no questions");
  // A resumed run keeps the best of the runs before it.
  std::ifstream in(out_dir_ + "/best.json");
  if (in && fs::exists(out_dir_ + "/best.h5")) {
    nlohmann::json best = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
    if (best.is_object() && best.contains("f1") && best.contains("step")) {
      best_f1_ = best["f1"].get<double>();
      best_step_ = best["step"].get<int64_t>();
    }
  }
}

double Validator::validate(MacSystem& s, int64_t step, dist::Communicator& comm, dist::MpiHandle mpi_comm) {
  MemorizeOptions memorize_options;
  memorize_options.bank_path = out_dir_ + "/val_bank.h5";
  memorize_options.doc_tokens = config_.get_int("mac.doc_tokens");
  memorize_options.progress = false;
  memorize(s, documents_, memorize_options, comm, mpi_comm);
  AnswerOptions answer_options = answer_options_from(config_, *s.lm_tokenizer);
  answer_options.progress = false;
  answer_options.top_k = 0;  // MAC itself: the retriever is a separate row
  double f1 = 0;
  {
    BankReader bank(memorize_options.bank_path);
    f1 = answer_questions(s, bank, questions_, answer_options, comm).scores.all.f1_mean();
  }
  const bool best = f1 > best_f1_;
  if (comm.rank() == 0)  // for plotting: one line per validation
    std::ofstream(out_dir_ + "/validation.jsonl", std::ios::app)
        << nlohmann::json{{"step", step}, {"f1", f1}, {"best", best}}.dump() << "\n";
  if (best) {
    best_f1_ = f1;
    best_step_ = step;
    if (comm.rank() == 0) {
      save_mac_model(out_dir_ + "/best.h5", s.mac, s.lm_source, config_.to_yaml());
      const std::string tmp = out_dir_ + "/best.json.tmp";
      std::ofstream(tmp) << nlohmann::json{{"step", step}, {"f1", f1}}.dump() << "\n";
      fs::rename(tmp, out_dir_ + "/best.json");
    }
  }
  spdlog::info("mac-train: validation at step {}: F1 {:.3f} over {} questions of {} held-out documents{}", step, f1,
               questions_.size(), documents_.size(),
               best ? " (best so far: best.h5)" : fmt::format(" (best {:.3f} at step {})", best_f1_, best_step_));
  comm.barrier();  // best.h5 is in place before any rank goes on
  return f1;
}

std::string trained_model_path(const config::Config& cfg) {
  const std::string dir = cfg.get_string("mac.out_dir");
  return fs::exists(dir + "/best.h5") ? dir + "/best.h5" : dir + "/mac.h5";
}

}  // namespace engram::mac
