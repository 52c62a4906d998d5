#pragma once
// QA scores as JSON, one name per metric in every output of engram (pretrain's eval.json, the
// evaluation's results.json): exact_match (SQuAD's), prefix_exact_match (MAC's "EM": the
// prediction cut to the gold's length), f1 (SQuAD token F1), substring_accuracy (SELF-PARAM's
// "acc"), each a mean over `questions`.
#include <nlohmann/json.hpp>

#include "eval/qa_eval.h"

namespace engram::eval {

nlohmann::json metrics_json(const MetricSums& sums);
// {"all": ..., "training_templates": ..., "heldout": ...}, each metrics_json.
nlohmann::json scores_json(const QaEvalResult& result);

}  // namespace engram::eval
