#pragma once
// The MAC shape of the module tests: tiny T5s, a 2-block aggregator, a base LM of width 16 with
// 4 heads; T summary tokens, L layers, P prefix tokens, and a retriever of `retrieval_dim`.
#include <cstdint>

#include "methods/mac/modules.h"
#include "model/t5.h"

namespace engram::checks {

inline mac::MacConfig tiny_mac_config(int64_t T = 4, int64_t L = 2, int64_t P = 2, int64_t retrieval_dim = 0) {
  mac::MacConfig c;
  c.T = T;
  c.P = P;
  c.amortizer = model::T5Config::preset("tiny");
  c.question = model::T5Config::preset("tiny");
  c.aggregator_blocks = 2;
  c.aggregator_heads = 2;
  c.aggregator_head_dim = 8;
  c.slot_hidden = 12;
  c.d = 16;
  c.L = L;
  c.H = 4;
  c.retrieval_dim = retrieval_dim;
  return c;
}

}  // namespace engram::checks
