// Position encodings: ALiBi slopes and rotary embeddings (the tables the attention applies).
#include "model/decoder.h"

#include <cmath>
#include <utility>
#include <vector>

#include <torch/torch.h>

#include "core/error.h"
#include "model/decoder_internal.h"

namespace engram::model {

at::Tensor alibi_slopes(int64_t n_heads) {
  ENGRAM_CHECK(n_heads > 0, "n_heads {}", n_heads);
  auto pow2 = [](int64_t n, std::vector<double>& out) {  // 2^(-8h/n), h = 1..n
    const double start = std::pow(2.0, -8.0 / static_cast<double>(n));
    for (int64_t h = 1; h <= n; ++h) out.push_back(std::pow(start, static_cast<double>(h)));
  };
  std::vector<double> slopes;
  int64_t closest = 1;
  while (closest * 2 <= n_heads) closest *= 2;
  pow2(closest, slopes);
  if (closest != n_heads) {
    std::vector<double> extra;
    pow2(2 * closest, extra);
    for (int64_t i = 0; static_cast<int64_t>(slopes.size()) < n_heads; i += 2)
      slopes.push_back(extra[i]);
  }
  return torch::tensor(slopes, torch::kFloat);
}

namespace detail {
namespace {
at::Tensor rotate_half(const at::Tensor& x) {  // [.., hd] -> [-x2, x1]
  const int64_t half = x.size(-1) / 2;
  return at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}
}  // namespace

// cos, sin [Bp, 1, T, hd] of positions [Bp, T].
std::pair<at::Tensor, at::Tensor> rope_tables(const at::Tensor& positions, int64_t hd, double theta,
                                              const at::TensorOptions& opts) {
  auto f32 = torch::TensorOptions().dtype(torch::kFloat).device(positions.device());
  at::Tensor inv_freq =
      at::pow(theta, -at::arange(0, hd, 2, f32) / static_cast<double>(hd));  // [hd/2]
  at::Tensor freqs = positions.to(torch::kFloat).unsqueeze(-1) * inv_freq;   // [Bp, T, hd/2]
  at::Tensor emb = at::cat({freqs, freqs}, -1).unsqueeze(1);                // [Bp, 1, T, hd]
  return {emb.cos().to(opts.dtype()), emb.sin().to(opts.dtype())};
}

at::Tensor rope_with(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  return x * cos + rotate_half(x) * sin;
}

}  // namespace detail

at::Tensor apply_rope(const at::Tensor& x, const at::Tensor& positions, double theta) {
  ENGRAM_CHECK(x.dim() == 4 && positions.dim() == 2, "apply_rope: x [B,H,T,hd], positions [B,T]");
  auto tables = detail::rope_tables(positions, x.size(-1), theta, x.options());
  return detail::rope_with(x, tables.first, tables.second);
}

}  // namespace engram::model
