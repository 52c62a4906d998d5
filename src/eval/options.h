#pragma once
// Options every method reads (not one method's): the frozen base LM (base.*), the stream's files
// (stream.*), answer decoding (decoding.*) and the shared evaluation (eval.*). Each is read once
// into a typed struct at the boundary of the stage that uses it.
#include <cstdint>
#include <string>
#include <vector>

#include "model/generate.h"
#include "model/language_model.h"

namespace engram::config {
class Config;
class Schema;
}  // namespace engram::config
namespace engram::text {
class Tokenizer;
}

namespace engram::eval {

void declare_shared_options(config::Schema& schema);

struct DecodingOptions {
  model::GenerateOptions::Strategy strategy = model::GenerateOptions::Strategy::Greedy;
  int64_t max_new_tokens = 16;
  int num_beams = 12, num_beam_groups = 4;
  double diversity_penalty = 10.0;
  // The generator's options, with EOS and padding of `tokenizer`.
  model::GenerateOptions generate_options(const text::Tokenizer& tokenizer) const;
};
DecodingOptions decoding_options_from(const config::Config& config);

struct EvalOptions {
  std::string base_model;     // base.model
  std::string test_stream;    // stream.test, or --stream
  std::string out_dir;        // eval.out_dir
  std::vector<std::string> methods;  // contender keys, in table order
  int64_t documents = 0;      // first documents of the stream (0 = all)
  int64_t questions = 400;    // questions per row (0 = all)
  std::vector<int64_t> curve_sizes;  // F1 against documents absorbed
  int64_t retention_points = 10;
  double ft_lr = 1e-4;        // FT(C)
  int64_t ft_tokens = 256;    // FT(C): tokens per fine-tuning sequence
  DecodingOptions decoding;
};
EvalOptions eval_options_from(const config::Config& config);

// The frozen base LM of base.model (`path`) with its tokenizer: what every method starts from.
model::LanguageModel load_base_model(const std::string& path);

// The stream lengths the curves need, for a stream of n documents: the curve sizes up to n and
// the retention points (fractions k / retention_points of n, at least the first tenth).
std::vector<int64_t> curve_points(const EvalOptions& options, int64_t n);
// The first tenth of a stream of n documents (at least one): what retention asks about.
int64_t retention_span(int64_t n);

}  // namespace engram::eval
