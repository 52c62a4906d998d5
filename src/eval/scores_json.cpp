#include "eval/scores_json.h"

namespace engram::eval {

nlohmann::json metrics_json(const MetricSums& m) {
  return {{"questions", m.count},
          {"exact_match", m.exact_match_mean()},
          {"prefix_exact_match", m.prefix_exact_match_mean()},
          {"f1", m.f1_mean()},
          {"substring_accuracy", m.substring_accuracy_mean()}};
}

nlohmann::json scores_json(const QaEvalResult& r) {
  return {{"all", metrics_json(r.all)},
          {"training_templates", metrics_json(r.training_templates)},
          {"heldout", metrics_json(r.heldout)}};
}

}  // namespace engram::eval
