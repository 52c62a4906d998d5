#include "model/causal_attention.h"

#include <cblas.h>

#include <algorithm>
#include <vector>

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include "core/error.h"
#include "model/attention_kernels.h"

namespace engram::model {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

constexpr int64_t kRowBlock = 64;  // query rows per score block: 64 x S floats stay in L2

// The sizes of one call and where entry (b, h) lives in each buffer.
struct Shape {
  int64_t B, H, T, S, hd, offset;  // offset = S - T: key index of query 0
  int64_t q_at(int64_t e) const { return e * T * hd; }   // q, dq [B, H, T, hd]
  int64_t kv_at(int64_t e) const { return e * S * hd; }  // k, v, dk, dv [B, H, S, hd]
  int64_t p_at(int64_t e) const { return e * T * S; }    // probabilities [B, H, T, S]
  // out, d out [B, T, H, hd]: row t of entry (b, h) at (b T + t) H hd + h hd, rows H hd apart.
  int64_t out_at(int64_t e, int64_t row) const { return ((e / H) * T + row) * H * hd + (e % H) * hd; }
  int64_t out_ld() const { return H * hd; }
  int64_t keys_seen(int64_t row_end) const { return std::min(S, offset + row_end); }  // by rows [0, row_end)
};

Shape shape_of(const at::Tensor& q, const at::Tensor& k) {
  return {q.size(0), q.size(1), q.size(2), k.size(2), q.size(3), k.size(2) - q.size(2)};
}

// Rotary position tables [Bp, 1, T, hd] (float32 contiguous; Bp 1 or B): row t of entry b. They
// rotate the last `roped` rows (T of them; 0 = no rotation) of q and k.
struct RopeTables {
  const float *cos = nullptr, *sin = nullptr;
  int64_t Bp = 0, T = 0, hd = 0, roped = 0;
  const float* row(const float* table, int64_t b, int64_t t) const { return table + ((Bp == 1 ? 0 : b) * T + t) * hd; }
};

// The call's tables, from the cos and sin arguments (empty: none).
RopeTables rope_of(const at::Tensor& cos, const at::Tensor& sin, const Shape& s) {
  if (cos.numel() == 0) return {};
  return {cos.data_ptr<float>(), sin.data_ptr<float>(), cos.size(0), s.T, s.hd, s.T};
}

// One row of hd values, rotated (rotate-half convention, rope_with in decoder_positions.cpp):
// out[j] = x[j] cos[j] - x[j + hd/2] sin[j], out[j + hd/2] = x[j + hd/2] cos[j + hd/2] + x[j] sin[j + hd/2].
inline void rope_row(const float* x, const float* cos, const float* sin, int64_t hd, float* out) {
  const int64_t half = hd / 2;
  for (int64_t j = 0; j < half; ++j) {
    out[j] = x[j] * cos[j] - x[j + half] * sin[j];
    out[j + half] = x[j + half] * cos[j + half] + x[j] * sin[j + half];
  }
}

// Its transpose, in place on a gradient row: the gradient of the rotation's input.
inline void unrope_row(float* g, const float* cos, const float* sin, int64_t hd) {
  const int64_t half = hd / 2;
  for (int64_t j = 0; j < half; ++j) {
    const float lo = g[j], hi = g[j + half];
    g[j] = lo * cos[j] + hi * sin[j + half];
    g[j + half] = hi * cos[j + half] - lo * sin[j];
  }
}

// x [B, H, N, hd] (any strides, float32 or bf16) -> float32 contiguous, the last `roped` rows of
// each entry rotated by rope (whose row t is the t-th of those rows). One pass, no temporaries.
template <typename T>
void pack_rows(const at::Tensor& x, const RopeTables& rope, float* out) {
  const int64_t roped = rope.roped;
  const int64_t B = x.size(0), H = x.size(1), N = x.size(2), hd = x.size(3);
  const int64_t sb = x.stride(0), sh = x.stride(1), sn = x.stride(2), sd = x.stride(3);
  const T* base = x.data_ptr<T>();
  at::parallel_for(0, B * H, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> row(static_cast<size_t>(hd));
    for (int64_t e = begin; e < end; ++e) {
      const int64_t b = e / H, h = e % H;
      for (int64_t n = 0; n < N; ++n) {
        const T* src = base + b * sb + h * sh + n * sn;
        float* dst = out + (e * N + n) * hd;
        const int64_t t = n - (N - roped);
        float* into = t >= 0 ? row.data() : dst;
        for (int64_t j = 0; j < hd; ++j) into[j] = static_cast<float>(src[j * sd]);
        if (t >= 0) rope_row(row.data(), rope.row(rope.cos, b, t), rope.row(rope.sin, b, t), hd, dst);
      }
    }
  });
}

at::Tensor pack(const at::Tensor& x, const RopeTables& rope) {
  at::Tensor out = at::empty(x.sizes(), x.options().dtype(at::kFloat));
  if (x.scalar_type() == at::kFloat) pack_rows<float>(x, rope, out.data_ptr<float>());
  else if (x.scalar_type() == at::kBFloat16) pack_rows<at::BFloat16>(x, rope, out.data_ptr<float>());
  else return pack(x.to(at::kFloat), rope);
  return out;
}

// The gradient of pack: g [B, H, N, hd] float32 contiguous, its last `roped` rows un-rotated in place.
void unpack_gradient(at::Tensor& g, const RopeTables& rope) {
  const int64_t roped = rope.roped;
  if (roped == 0) return;
  const int64_t BH = g.size(0) * g.size(1), H = g.size(1), N = g.size(2), hd = g.size(3);
  float* p = g.data_ptr<float>();
  at::parallel_for(0, BH, 1, [&](int64_t begin, int64_t end) {
    for (int64_t e = begin; e < end; ++e)
      for (int64_t t = 0; t < roped; ++t)
        unrope_row(p + (e * N + N - roped + t) * hd, rope.row(rope.cos, e / H, t), rope.row(rope.sin, e / H, t), hd);
  });
}

inline void gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                 int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, ta, tb, static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), alpha, a,
              static_cast<int>(lda), b, static_cast<int>(ldb), beta, c, static_cast<int>(ldc));
}

struct CausalAttention : torch::autograd::Function<CausalAttention> {
  // q [B, H, T, hd], k and v [B, H, S, hd] (float32 or bf16, any strides); keep [B, S] uint8
  // contiguous, or empty: no key hidden; cos and sin: rope tables [Bp, 1, T, hd] float32
  // contiguous for q and the last T keys, or empty: no rotation. (Undefined tensor arguments are
  // not allowed here.)
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& q_in, const at::Tensor& k_in,
                            const at::Tensor& v_in, const at::Tensor& keep, const at::Tensor& cos,
                            const at::Tensor& sin, double scale) {
    const Shape s = shape_of(q_in, k_in);
    const RopeTables rope = rope_of(cos, sin, s);
    const at::Tensor q = pack(q_in, rope), k = pack(k_in, rope), v = pack(v_in, RopeTables{});
    at::Tensor probs = at::empty({s.B, s.H, s.T, s.S}, q.options());
    at::Tensor out = at::empty({s.B, s.T, s.H, s.hd}, q.options());
    const float *pq = q.data_ptr<float>(), *pk = k.data_ptr<float>(), *pv = v.data_ptr<float>();
    const uint8_t* pkeep = keep.numel() > 0 ? keep.data_ptr<uint8_t>() : nullptr;
    float *pp = probs.data_ptr<float>(), *po = out.data_ptr<float>();
    at::parallel_for(0, s.B * s.H, 1, [&](int64_t begin, int64_t end) {
      for (int64_t e = begin; e < end; ++e) {
        const float *qe = pq + s.q_at(e), *ke = pk + s.kv_at(e), *ve = pv + s.kv_at(e);
        const uint8_t* keep_b = pkeep ? pkeep + (e / s.H) * s.S : nullptr;
        float* pe = pp + s.p_at(e);
        for (int64_t r0 = 0; r0 < s.T; r0 += kRowBlock) {
          const int64_t rows = std::min(kRowBlock, s.T - r0), seen = s.keys_seen(r0 + rows);
          float* block = pe + r0 * s.S;
          gemm(CblasNoTrans, CblasTrans, rows, seen, s.hd, static_cast<float>(scale), qe + r0 * s.hd, s.hd, ke, s.hd,
               0.0f, block, s.S);
          for (int64_t i = r0; i < r0 + rows; ++i) {
            const int64_t self = s.offset + i;
            kernels::masked_softmax_row(pe + i * s.S, self + 1, s.S, keep_b, self);
          }
          gemm(CblasNoTrans, CblasNoTrans, rows, s.hd, seen, 1.0f, block, s.S, ve, s.hd, 0.0f, po + s.out_at(e, r0),
               s.out_ld());
        }
      }
    });
    ctx->save_for_backward({q, k, v, probs, cos, sin});
    ctx->saved_data["scale"] = scale;
    ctx->saved_data["dtypes"] = std::vector<int64_t>{static_cast<int64_t>(q_in.scalar_type()),
                                                     static_cast<int64_t>(k_in.scalar_type()),
                                                     static_cast<int64_t>(v_in.scalar_type())};
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor &q = saved[0], &k = saved[1], &v = saved[2], &probs = saved[3];
    const float scale = static_cast<float>(ctx->saved_data["scale"].toDouble());
    const at::Tensor d_out = grads[0].to(at::kFloat).contiguous();  // [B, T, H, hd]
    const Shape s = shape_of(q, k);
    at::Tensor dq = at::empty_like(q), dk = at::zeros_like(k), dv = at::zeros_like(v);
    const float *pq = q.data_ptr<float>(), *pk = k.data_ptr<float>(), *pv = v.data_ptr<float>();
    const float *pp = probs.data_ptr<float>(), *pdo = d_out.data_ptr<float>();
    float *pdq = dq.data_ptr<float>(), *pdk = dk.data_ptr<float>(), *pdv = dv.data_ptr<float>();
    at::parallel_for(0, s.B * s.H, 1, [&](int64_t begin, int64_t end) {
      std::vector<float> ds(static_cast<size_t>(kRowBlock * s.S));  // d scores of one block
      for (int64_t e = begin; e < end; ++e) {
        const float *qe = pq + s.q_at(e), *ke = pk + s.kv_at(e), *ve = pv + s.kv_at(e), *pe = pp + s.p_at(e);
        float *dke = pdk + s.kv_at(e), *dve = pdv + s.kv_at(e);
        for (int64_t r0 = 0; r0 < s.T; r0 += kRowBlock) {
          const int64_t rows = std::min(kRowBlock, s.T - r0), seen = s.keys_seen(r0 + rows);
          const float *block = pe + r0 * s.S, *dout = pdo + s.out_at(e, r0);
          // d probs = d out v^T; d v += probs^T d out.
          gemm(CblasNoTrans, CblasTrans, rows, seen, s.hd, 1.0f, dout, s.out_ld(), ve, s.hd, 0.0f, ds.data(), seen);
          gemm(CblasTrans, CblasNoTrans, seen, s.hd, rows, 1.0f, block, s.S, dout, s.out_ld(), 1.0f, dve, s.hd);
          // d scores (probs are 0 where masked, so are these).
          for (int64_t i = 0; i < rows; ++i) kernels::softmax_backward_row(block + i * s.S, ds.data() + i * seen, seen);
          // d q = scale d scores k; d k += scale d scores^T q.
          gemm(CblasNoTrans, CblasNoTrans, rows, s.hd, seen, scale, ds.data(), seen, ke, s.hd, 0.0f,
               pdq + s.q_at(e) + r0 * s.hd, s.hd);
          gemm(CblasTrans, CblasNoTrans, seen, s.hd, rows, scale, ds.data(), seen, qe + r0 * s.hd, s.hd, 1.0f, dke,
               s.hd);
        }
      }
    });
    const RopeTables rope = rope_of(saved[4], saved[5], s);
    unpack_gradient(dq, rope);
    unpack_gradient(dk, rope);
    const auto dtypes = ctx->saved_data["dtypes"].toIntVector();
    auto as = [&](const at::Tensor& g, size_t i) { return g.to(static_cast<at::ScalarType>(dtypes[i])); };
    return {as(dq, 0), as(dk, 1), as(dv, 2), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor causal_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& key_real,
                            double scale, const at::Tensor& cos, const at::Tensor& sin) {
  ENGRAM_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4 && k.sizes() == v.sizes() && q.size(0) == k.size(0) &&
                   q.size(1) == k.size(1) && q.size(3) == k.size(3) && k.size(2) >= q.size(2) && q.size(2) > 0,
               "causal_attention: q [B, H, T, hd] and k, v [B, H, S >= T, hd] expected");
  ENGRAM_CHECK(q.device().is_cpu(), "causal_attention runs on the CPU");
  at::Tensor keep = at::empty({0}, q.options().dtype(at::kByte));
  if (key_real.defined()) {
    ENGRAM_CHECK(key_real.dim() == 2 && key_real.size(0) == k.size(0) && key_real.size(1) == k.size(2),
                 "causal_attention: key_real must be [B, S]");
    keep = key_real.ne(0).to(at::kByte).contiguous();
  }
  at::Tensor cos32 = at::empty({0}, q.options().dtype(at::kFloat)), sin32 = cos32;
  if (cos.defined()) {
    ENGRAM_CHECK(cos.dim() == 4 && cos.sizes() == sin.sizes() && (cos.size(0) == 1 || cos.size(0) == q.size(0)) &&
                     cos.size(1) == 1 && cos.size(2) == q.size(2) && cos.size(3) == q.size(3) && q.size(3) % 2 == 0,
                 "causal_attention: rope tables must be [1 or B, 1, T, hd] with hd even");
    cos32 = cos.to(at::kFloat).contiguous();
    sin32 = sin.to(at::kFloat).contiguous();
  }
  return CausalAttention::apply(q, k, v, keep, cos32, sin32, scale);
}

}  // namespace engram::model
