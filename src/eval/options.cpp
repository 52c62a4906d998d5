#include "eval/options.h"

#include <algorithm>
#include <set>

#include "config/config.h"
#include "core/error.h"
#include "text/tokenizer.h"

namespace engram::eval {

void declare_shared_options(config::Schema& schema) {
  schema.add_string("base.model", "runs/quickstart/base",
                    "the frozen base LM every method starts from: an engram model file (model.h5) or run folder, or "
                    "a Hugging Face folder (config.json + safetensors)");
  schema.add_list("stream.train", {"runs/quickstart/data/train.jsonl"},
                  "training documents with questions (MAC meta-training), any supported format");
  schema.add_string("stream.test", "runs/quickstart/data/test.jsonl",
                    "the test stream of engram eval: documents in stream order with their questions");
  schema.add_string("decoding.strategy", "greedy",
                    "how answers are generated: greedy, beam (decoding.num_beams), or diverse_beam (group beam "
                    "search: decoding.num_beams, decoding.num_beam_groups, decoding.diversity_penalty)",
                    core::enum_choices<model::GenerateOptions::Strategy>());
  schema.add_int("decoding.num_beams", 12, "beams of diverse_beam decoding", config::Range::at_least(1));
  schema.add_int("decoding.num_beam_groups", 4, "beam groups of diverse_beam decoding", config::Range::at_least(1));
  schema.add_float("decoding.diversity_penalty", 10.0, "diversity penalty of diverse_beam decoding",
                   config::Range::at_least(0));
  schema.add_int("decoding.max_new_tokens", 16, "answer tokens generated at most", config::Range::at_least(1));
  schema.add_string("eval.out_dir", "runs/quickstart/eval", "table.md, table.csv, results.json and contenders' files");
  schema.add_list("eval.methods", {"closed_book", "context", "ft", "mac"},
                  "the contenders, in table order (engram eval --help lists them)");
  schema.add_int("eval.documents", 0, "documents of the test stream to use, from its start (0 = all)",
                 config::Range::at_least(0));
  schema.add_int("eval.questions", 400, "questions scored per row, spread evenly over the stream (0 = all)",
                 config::Range::at_least(0));
  schema.add_list("eval.curve_sizes", {"1", "16", "128", "1000", "10000"},
                  "stream lengths of the F1-vs-documents curve (lengths above the stream's are skipped)");
  schema.add_int("eval.retention_points", 10, "points of the retention curve (stream fractions 1/k .. 1)",
                 config::Range::at_least(0));
  schema.add_float("eval.ft_lr", 1e-4, "learning rate of the FT(C) baseline's one AdamW step per document",
                   config::Range::at_least(0));
  schema.add_int("eval.ft_tokens", 256, "FT(C): tokens per fine-tuning sequence (longer documents are split)",
                 config::Range::at_least(2));
}

model::GenerateOptions DecodingOptions::generate_options(const text::Tokenizer& tokenizer) const {
  model::GenerateOptions g;
  g.max_new_tokens = max_new_tokens;
  g.eos_id = tokenizer.eos_id();
  g.pad_id = std::max(0, tokenizer.pad_id());
  g.strategy = strategy;
  if (strategy != model::GenerateOptions::Strategy::Greedy) g.num_beams = num_beams;
  if (strategy == model::GenerateOptions::Strategy::DiverseBeam) {
    g.num_beam_groups = num_beam_groups;
    g.diversity_penalty = diversity_penalty;
  }
  g.validate();
  return g;
}

DecodingOptions decoding_options_from(const config::Config& cfg) {
  DecodingOptions d;
  d.strategy = core::parse_enum<model::GenerateOptions::Strategy>(cfg.get_string("decoding.strategy"), "decoding.strategy");
  d.max_new_tokens = cfg.get_int("decoding.max_new_tokens");
  d.num_beams = static_cast<int>(cfg.get_int("decoding.num_beams"));
  d.num_beam_groups = static_cast<int>(cfg.get_int("decoding.num_beam_groups"));
  d.diversity_penalty = cfg.get_float("decoding.diversity_penalty");
  return d;
}

EvalOptions eval_options_from(const config::Config& cfg) {
  EvalOptions o;
  o.base_model = cfg.get_string("base.model");
  o.test_stream = cfg.get_string("stream.test");
  o.out_dir = cfg.get_string("eval.out_dir");
  o.methods = cfg.get_list("eval.methods");
  o.documents = cfg.get_int("eval.documents");
  o.questions = cfg.get_int("eval.questions");
  for (const auto& text : cfg.get_list("eval.curve_sizes")) {
    try {
      size_t used = 0;
      o.curve_sizes.push_back(std::stoll(text, &used));
      if (used != text.size()) throw std::invalid_argument(text);
    } catch (const std::exception&) {
      core::fail("eval.curve_sizes: expected whole numbers of documents, got '{}'", text);
    }
  }
  o.retention_points = cfg.get_int("eval.retention_points");
  o.ft_lr = cfg.get_float("eval.ft_lr");
  o.ft_tokens = cfg.get_int("eval.ft_tokens");
  o.decoding = decoding_options_from(cfg);
  if (o.methods.empty()) core::fail("eval.methods: name at least one contender");
  return o;
}

model::LanguageModel load_base_model(const std::string& path) {
  model::LanguageModelSource source;
  source.path = path;
  source.key = "base.model";
  source.frozen = true;
  return model::load_language_model(source);
}

int64_t retention_span(int64_t n) { return std::max<int64_t>(1, n / 10); }

std::vector<int64_t> curve_points(const EvalOptions& options, int64_t n) {
  std::set<int64_t> points;
  for (int64_t size : options.curve_sizes)
    if (size >= 1 && size <= n) points.insert(size);
  for (int64_t p = 1; p <= options.retention_points; ++p)
    points.insert(std::max(retention_span(n), n * p / options.retention_points));
  return {points.begin(), points.end()};
}

}  // namespace engram::eval
