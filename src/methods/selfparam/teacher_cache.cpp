#include "methods/selfparam/teacher_cache.h"

#include <set>

#include <torch/torch.h>

#include "core/error.h"
#include "core/timer.h"

namespace engram::selfparam {
namespace {

constexpr int64_t kBatch = 16;  // inputs per teacher forward pass

std::vector<int32_t> joined(const std::vector<int32_t>& a, const std::vector<int32_t>& b, const std::vector<int32_t>& c) {
  std::vector<int32_t> ids(a);
  ids.insert(ids.end(), b.begin(), b.end());
  ids.insert(ids.end(), c.begin(), c.end());
  return ids;
}

}  // namespace

TeacherCache::TeacherCache(model::Decoder& teacher, const std::vector<std::pair<Key, DistillExample>>& qa,
                           const std::vector<std::vector<int32_t>>& documents, const std::vector<int32_t>& start,
                           int64_t top_k)
    : start_tokens_(static_cast<int64_t>(start.size())) {
  core::Stopwatch clock;
  std::vector<std::vector<int32_t>> inputs;
  std::vector<std::pair<int64_t, int64_t>> slices;
  std::vector<Key> keys;
  std::set<Key> seen;
  for (const auto& [key, e] : qa) {
    if (!seen.insert(key).second) continue;
    const Slices s = target_slices(start_tokens_, static_cast<int64_t>(e.context.size()), static_cast<int64_t>(e.target.size()));
    inputs.push_back(joined(start, e.context, e.target));
    slices.emplace_back(s.teacher_begin, s.length);
    keys.push_back(key);
  }
  auto rows = teacher_rows(teacher, inputs, slices, top_k, kBatch);
  for (size_t k = 0; k < keys.size(); ++k) qa_.emplace(keys[k], std::move(rows[k]));
  // (B): every row of the document's pass but its last (which predicts past the end).
  inputs.clear(), slices.clear();
  for (const auto& doc : documents) {
    inputs.push_back(joined(start, {}, doc));
    slices.emplace_back(0, std::max<int64_t>(0, static_cast<int64_t>(inputs.back().size()) - 1));
  }
  documents_ = teacher_rows(teacher, inputs, slices, top_k, kBatch);
  seconds_ = clock.seconds();
}

const TeacherRows& TeacherCache::qa(const Key& key) const {
  auto it = qa_.find(key);
  ENGRAM_CHECK(it != qa_.end(), "teacher cache: no rows for document {} target {}", key.first, key.second);
  return it->second;
}

TeacherRows TeacherCache::continuation(size_t document, const DistillExample& example) const {
  ENGRAM_CHECK(document < documents_.size(), "teacher cache: no rows for document {}", document);
  const Slices s = target_slices(start_tokens_, static_cast<int64_t>(example.context.size()),
                                 static_cast<int64_t>(example.target.size()));
  return documents_[document].rows(s.teacher_begin, s.length);
}

int64_t TeacherCache::bytes() const {
  int64_t total = 0;
  auto add = [&](const TeacherRows& r) {
    total += r.logits.numel() * static_cast<int64_t>(r.logits.element_size());
    if (r.indices.defined()) total += r.indices.numel() * static_cast<int64_t>(r.indices.element_size());
  };
  for (const auto& [key, r] : qa_) add(r);
  for (const auto& r : documents_) add(r);
  return total;
}

}  // namespace engram::selfparam
