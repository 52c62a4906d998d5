#include "methods/longmem/memory.h"

#include <cstring>
#include <limits>
#include <vector>

#include <faiss/IndexFlat.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/impl/IDSelector.h>
#include <torch/torch.h>

#include "core/error.h"
#include "io/h5file.h"

namespace engram::longmem {

// One exact inner-product index per head; vector s of head h is the mean key of slot s. With IVF,
// once trained: per head an IndexIVFFlat (over its own quantizer) holding the same vectors, id = slot.
struct ChunkMemory::Index {
  std::vector<faiss::IndexFlatIP> heads;
  std::vector<std::unique_ptr<faiss::IndexFlatIP>> quantizers;
  std::vector<std::unique_ptr<faiss::IndexIVFFlat>> ivf;  // empty until trained
};

ChunkMemory::ChunkMemory(MemoryShape shape, MemorySearch search)
    : shape_(shape), search_(search), index_(std::make_unique<Index>()) {
  if (search.ivf_lists < 0 || (search.ivf_lists > 0 && (search.ivf_probe < 1 || search.ivf_probe > search.ivf_lists)))
    core::fail("longmem.ivf_lists {} and longmem.ivf_probe {}: expected lists >= 0 and 1 <= probe <= lists",
               search.ivf_lists, search.ivf_probe);
  if (shape.heads < 1 || shape.head_dim < 1 || shape.chunk < 1)
    core::fail("longmem memory: heads {}, head_dim {} and chunk {} must be at least 1", shape.heads, shape.head_dim,
               shape.chunk);
  if (shape.capacity_tokens < shape.chunk || shape.capacity_tokens % shape.chunk != 0)
    core::fail("longmem.memory_tokens {} must be a positive multiple of longmem.chunk {}", shape.capacity_tokens,
               shape.chunk);
  const int64_t c = capacity_chunks();
  keys_ = torch::zeros({shape.heads, c, shape.chunk, shape.head_dim});
  values_ = torch::zeros_like(keys_);
  chunk_ids_ = torch::full({c}, -1, torch::kLong);
  for (int64_t h = 0; h < shape.heads; ++h) index_->heads.emplace_back(shape.head_dim);
}

ChunkMemory::~ChunkMemory() = default;
ChunkMemory::ChunkMemory(ChunkMemory&&) noexcept = default;
ChunkMemory& ChunkMemory::operator=(ChunkMemory&&) noexcept = default;

int64_t ChunkMemory::size() const { return std::min(written_, capacity_chunks()); }

bool ChunkMemory::approximate() const { return !index_->ivf.empty(); }

void ChunkMemory::train_ivf_when_ready() {
  const int64_t lists = search_.ivf_lists, d = shape_.head_dim;
  if (lists == 0 || approximate() || size() < 39 * lists) return;
  std::vector<faiss::Index::idx_t> ids(static_cast<size_t>(size()));
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<faiss::Index::idx_t>(i);
  for (auto& flat : index_->heads) {
    index_->quantizers.push_back(std::make_unique<faiss::IndexFlatIP>(d));
    auto ivf = std::make_unique<faiss::IndexIVFFlat>(index_->quantizers.back().get(), d, lists,
                                                     faiss::METRIC_INNER_PRODUCT);
    ivf->verbose = false;
    ivf->train(size(), flat.get_xb());
    ivf->add_with_ids(size(), flat.get_xb(), ids.data());
    ivf->nprobe = search_.ivf_probe;
    index_->ivf.push_back(std::move(ivf));
  }
}

void ChunkMemory::index_chunks(const at::Tensor& means, int64_t first_slot) {
  // means [H, n, d] contiguous for slots first_slot .. first_slot + n - 1 (no wrap).
  const int64_t n = means.size(1), d = shape_.head_dim;
  for (int64_t h = 0; h < shape_.heads; ++h) {
    auto& index = index_->heads[static_cast<size_t>(h)];
    const float* src = means[h].data_ptr<float>();
    if (index.ntotal < first_slot) {  // a write longer than the ring starts past the end: zeros until filled
      const std::vector<float> zeros(static_cast<size_t>((first_slot - index.ntotal) * d), 0.0f);
      index.add(first_slot - index.ntotal, zeros.data());
    }
    const int64_t overwrite = std::clamp<int64_t>(index.ntotal - first_slot, 0, n);
    if (overwrite > 0) std::memcpy(index.get_xb() + first_slot * d, src, sizeof(float) * overwrite * d);
    if (n > overwrite) index.add(n - overwrite, src + overwrite * d);
    if (!approximate()) continue;
    // The slots' old vectors leave the inverted lists, the new ones join them.
    auto& ivf = *index_->ivf[static_cast<size_t>(h)];
    ivf.remove_ids(faiss::IDSelectorRange(first_slot, first_slot + n));
    std::vector<faiss::Index::idx_t> ids(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) ids[static_cast<size_t>(i)] = first_slot + i;
    ivf.add_with_ids(n, src, ids.data());
  }
}

void ChunkMemory::write(const at::Tensor& keys, const at::Tensor& values) {
  ENGRAM_CHECK(keys.dim() == 3 && keys.size(1) == shape_.heads && keys.size(2) == shape_.head_dim &&
                   values.sizes() == keys.sizes(),
               "ChunkMemory::write: keys/values must be [N, {}, {}]", shape_.heads, shape_.head_dim);
  const int64_t c = capacity_chunks(), n = keys.size(0) / shape_.chunk;
  if (n == 0) return;
  torch::NoGradGuard no_grad;
  // [n chunk, H, d] -> [H, n, chunk, d]
  auto by_head = [&](const at::Tensor& t) {
    return t.narrow(0, 0, n * shape_.chunk).to(torch::kFloat).reshape({n, shape_.chunk, shape_.heads, shape_.head_dim})
        .permute({2, 0, 1, 3});
  };
  at::Tensor k = by_head(keys), v = by_head(values);
  int64_t first = 0;
  if (n > c) first = n - c, written_ += n - c;  // the earlier ones would be overwritten in this call
  while (first < n) {
    const int64_t slot = written_ % c, run = std::min(n - first, c - slot);  // up to the ring's end
    keys_.narrow(1, slot, run).copy_(k.narrow(1, first, run));
    values_.narrow(1, slot, run).copy_(v.narrow(1, first, run));
    chunk_ids_.narrow(0, slot, run).copy_(torch::arange(written_, written_ + run, torch::kLong));
    index_chunks(k.narrow(1, first, run).mean(2).contiguous(), slot);
    written_ += run, first += run;
  }
  train_ivf_when_ready();
}

ChunkMemory::Retrieved ChunkMemory::retrieve(const at::Tensor& queries, int64_t chunks) const {
  ENGRAM_CHECK(queries.dim() == 3 && queries.size(1) == shape_.heads && queries.size(2) == shape_.head_dim,
               "ChunkMemory::retrieve: queries must be [Q, {}, {}]", shape_.heads, shape_.head_dim);
  ENGRAM_CHECK(chunks >= 1, "ChunkMemory::retrieve: chunks {} < 1", chunks);
  torch::NoGradGuard no_grad;
  const int64_t q = queries.size(0), h_count = shape_.heads, d = shape_.head_dim, t = chunks * shape_.chunk;
  at::Tensor by_head = queries.to(torch::kFloat).permute({1, 0, 2}).contiguous();  // [H, Q, d]
  at::Tensor labels = torch::empty({h_count, q, chunks}, torch::kLong);
  at::Tensor scores = torch::empty({h_count, q, chunks}, torch::kFloat);
  std::vector<faiss::Index::idx_t> found(static_cast<size_t>(q * chunks));
  for (int64_t h = 0; h < h_count; ++h) {
    const faiss::Index& index = approximate() ? static_cast<const faiss::Index&>(*index_->ivf[static_cast<size_t>(h)])
                                              : index_->heads[static_cast<size_t>(h)];
    index.search(q, by_head[h].data_ptr<float>(), chunks, scores[h].data_ptr<float>(), found.data());
    auto out = labels[h].data_ptr<int64_t>();
    for (size_t i = 0; i < found.size(); ++i) out[i] = static_cast<int64_t>(found[i]);
  }
  const at::Tensor none = labels.lt(0);  // fewer chunks held than asked for
  const at::Tensor slots = labels.clamp_min(0);
  Retrieved r;
  r.scores = scores.masked_fill(none, -std::numeric_limits<float>::infinity()).permute({1, 0, 2}).contiguous();
  r.chunk_ids = chunk_ids_.index({slots}).masked_fill(none, -1).permute({1, 0, 2}).contiguous();
  std::vector<at::Tensor> keys, values;
  for (int64_t h = 0; h < h_count; ++h) {
    keys.push_back(keys_[h].index_select(0, slots[h].reshape(-1)).view({q, t, d}));
    values.push_back(values_[h].index_select(0, slots[h].reshape(-1)).view({q, t, d}));
  }
  r.valid = none.logical_not().unsqueeze(-1).expand({h_count, q, chunks, shape_.chunk}).reshape({h_count, q, t})
                .permute({1, 0, 2}).contiguous();
  const at::Tensor keep = r.valid.unsqueeze(-1).to(torch::kFloat);
  r.keys = torch::stack(keys, 1) * keep;  // [Q, H, T, d]
  r.values = torch::stack(values, 1) * keep;
  return r;
}

void ChunkMemory::clear() {
  keys_.zero_();
  values_.zero_();
  chunk_ids_.fill_(-1);
  written_ = 0;
  for (auto& index : index_->heads) index.reset();
  index_->ivf.clear();  // trained again once the memory holds enough chunks
  index_->quantizers.clear();
}

at::Tensor ChunkMemory::state() const {
  const at::Tensor written = torch::full({1}, static_cast<double>(written_), torch::kDouble);
  return torch::cat({written, keys_.flatten().to(torch::kDouble), values_.flatten().to(torch::kDouble)});
}

void ChunkMemory::restore(const at::Tensor& state) {
  const int64_t n = keys_.numel();
  if (state.dim() != 1 || state.numel() != 1 + 2 * n)
    core::fail("LongMem memory state of {} values, expected {} for this memory's shape", state.numel(), 1 + 2 * n);
  clear();
  const at::Tensor s = state.to(torch::kDouble);
  written_ = static_cast<int64_t>(s[0].item<double>());
  keys_.copy_(s.narrow(0, 1, n).view(keys_.sizes()));
  values_.copy_(s.narrow(0, 1 + n, n).view(values_.sizes()));
  const int64_t c = capacity_chunks();
  // Slot s holds the newest chunk id congruent to s modulo the capacity.
  for (int64_t slot = 0; slot < size(); ++slot)
    chunk_ids_[slot] = slot + (written_ - 1 - slot) / c * c;
  if (size() > 0) index_chunks(keys_.narrow(1, 0, size()).mean(2).contiguous(), 0);
  train_ivf_when_ready();
}

void ChunkMemory::save(io::H5File& file, const std::string& group) const {
  file.create_group(group);
  file.set_attr(group, "heads", shape_.heads);
  file.set_attr(group, "head_dim", shape_.head_dim);
  file.set_attr(group, "chunk", shape_.chunk);
  file.set_attr(group, "capacity_tokens", shape_.capacity_tokens);
  file.set_attr(group, "written", written_);
  file.write_tensor(group + "/keys", keys_);
  file.write_tensor(group + "/values", values_);
  file.write_tensor(group + "/chunk_ids", chunk_ids_);
}

ChunkMemory ChunkMemory::load(const io::H5File& file, const std::string& group, MemorySearch search) {
  if (!file.exists(group + "/keys")) core::fail("{}: no LongMem memory under '{}'", file.path(), group);
  MemoryShape shape{file.attr_int(group, "heads"), file.attr_int(group, "head_dim"), file.attr_int(group, "chunk"),
                    file.attr_int(group, "capacity_tokens")};
  ChunkMemory m(shape, search);
  const at::Tensor keys = file.read_tensor(group + "/keys"), values = file.read_tensor(group + "/values");
  if (!keys.sizes().equals(m.keys_.sizes()) || !values.sizes().equals(m.values_.sizes()))
    core::fail("{}: LongMem memory '{}' has keys of another shape than its attributes say", file.path(), group);
  m.keys_.copy_(keys);
  m.values_.copy_(values);
  m.chunk_ids_.copy_(file.read_tensor(group + "/chunk_ids"));
  m.written_ = file.attr_int(group, "written");
  // The indexes again, slot by slot (the slots held are 0 .. size - 1).
  if (m.size() > 0) m.index_chunks(m.keys_.narrow(1, 0, m.size()).mean(2).contiguous(), 0);
  m.train_ivf_when_ready();
  return m;
}

}  // namespace engram::longmem
