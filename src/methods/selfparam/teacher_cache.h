#pragma once
// selfparam.teacher_cache: the teacher's side of terms (A) and (B) computed once, before training,
// in batched forward passes, instead of at every step. (A): the rows of each (document, target)
// pair this rank will distil. (B): one pass over each document; a continuation split at r reads
// the same input (the document, whole), so its teacher rows are rows of that pass. Term (C) is not
// cached: its text changes at every step. Rows are kept whole or as their top k logits
// (selfparam.teacher_top_k), which trades exactness for memory.
#include <cstdint>
#include <map>
#include <utility>
#include <vector>

#include "methods/selfparam/distill.h"

namespace engram::selfparam {

class TeacherCache {
 public:
  using Key = std::pair<size_t, size_t>;  // (document, target index)

  // `qa`: this rank's (document, target) pairs and their (A) examples; `documents`: the tokens
  // the teacher reads for (B) ("Context: <text>"), empty when (B) is off. `start`: the BOS, if any.
  TeacherCache(model::Decoder& teacher, const std::vector<std::pair<Key, DistillExample>>& qa,
               const std::vector<std::vector<int32_t>>& documents, const std::vector<int32_t>& start, int64_t top_k);

  const TeacherRows& qa(const Key& key) const;  // (A)'s target rows
  // (B)'s rows for a continuation of `document` split after `context_tokens` tokens.
  TeacherRows continuation(size_t document, const DistillExample& example) const;
  int64_t bytes() const;  // what the kept rows take
  double seconds() const { return seconds_; }

 private:
  std::map<Key, TeacherRows> qa_;
  std::vector<TeacherRows> documents_;
  int64_t start_tokens_;
  double seconds_ = 0;
};

}  // namespace engram::selfparam
