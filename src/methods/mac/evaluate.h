#pragma once
// engram mac-eval: MAC and its baselines on one test stream, one table (Markdown + JSON), plus
// F1 against bank size and retention curves (JSON; tools/plot_mac.py draws them).
//
// Rows: base model closed-book; context in prompt (upper bound); uniform fine-tuning FT(C) (one
// online next-token step per document, in stream order, then closed-book); MAC (hierarchical);
// MAC flat; MAC with only the gold document (upper bound); MAC with the gold document removed
// (must collapse to closed-book). Columns: EM, F1 (all questions and held-out paraphrases),
// adaptation seconds per document, peak memory, storage bytes per document.
#include <string>

namespace engram::config {
class Config;
class Schema;
}
namespace engram::dist {
class Runtime;
}

namespace engram::mac {

void declare_mac_eval_options(config::Schema& schema);

// Collective. Writes <mac.eval.out_dir>/{table.md, results.json, bank.h5} and returns the
// Markdown table (rank 0; others get "").
std::string evaluate_mac(const config::Config& config, dist::Runtime& runtime);

}  // namespace engram::mac
