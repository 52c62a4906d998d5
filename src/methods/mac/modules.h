#pragma once
// MAC's trainable modules (specs/mac.md 1.2-1.5), around a frozen decoder LM:
//
//   document --amortizer--> summary c(doc) [T, d]            (what the memory bank stores)
//   question --question encoder--> z0 [T, d]
//   z0 + bank --aggregator--> z* [T, d]                      (cross-attention over N*T tokens)
//   z* --prefix head--> per-layer prefix keys/values (2 x L x [H, P, hd]) for the frozen LM
//
// The amortizer and the question encoder have the same form (ContextEncoder): a T5
// encoder-decoder whose decoder is driven by T learned query embeddings, then T separate residual
// MLPs from the T5 width to d. The per-token MLPs and the per-slot FFNs are batched (one einsum
// over all tokens or slots), never looped.
#include <cstdint>
#include <string>
#include <vector>

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include "core/enum_names.h"
#include "model/decoder.h"
#include "methods/mac/token_keys.h"
#include "model/t5.h"

namespace engram::mac {

struct MacConfig {
  int64_t T = 8;  // summary tokens per document (num_virtual_tokens)
  int64_t P = 2;  // prefix tokens per layer (layer_num_virtual_tokens)
  model::T5Config amortizer;  // document -> summary
  model::T5Config question;   // question -> initial query
  // The reference lets the T5 decoder cross-attend to padding positions of the encoder (no mask);
  // true masks them (the cleaner port), false keeps the quirk.
  bool mask_encoder_padding = true;
  // Both encoders also read the frozen base LM's hidden states of their text (read_layer; added
  // to their token embeddings). With no pretrained T5 (the small-scale run) the LM is the only
  // module that already reads; its states tell the encoders which token answers what.
  bool read_with_lm = false;
  int64_t read_layer = 1;  // which LM state: 0 = token embeddings, l = after block l (l <= L)
  // How the slots become the LM's prefix: Direct (the reference: the slots are the keys and
  // values, 2PL of them) or Lm (PL slots are virtual-token states, one per layer and prefix
  // position, and each layer makes its keys and values with its own projections).
  enum class PrefixVia { Direct, Lm };
  PrefixVia prefix_via = PrefixVia::Direct;
  int64_t aggregator_blocks = 4;
  int64_t aggregator_heads = 8;
  int64_t aggregator_head_dim = 96;
  int64_t aggregator_ff = 0;   // FF hidden of the aggregator blocks; 0 = d > 768 ? 768 : d
  int64_t slot_hidden = 768;   // hidden size of the per-slot FFNs of the prefix head
  double slot_dropout = 0.0;
  // Multiplies the prefix keys and values (1 = the reference). A small LM trained from scratch has
  // keys and values far smaller than the prefix head's initial output; matching them keeps the
  // untrained prefix from drowning the LM's own attention at the start of meta-training.
  double prefix_scale = 1.0;
  // Width of the retrieval keys (Retriever); 0 = no retriever (the reference).
  int64_t retrieval_dim = 0;
  // What answering retrieves with: "summary" (Retriever, keys from the summaries) or "tokens"
  // (TokenKeys, keys from the texts' tokens, stored in the bank; the Retriever still trains).
  std::string retrieval_keys = "summary";
  int64_t retrieval_vocab = 0;  // the token table's size with "tokens" (the MAC tokenizer's vocabulary)
  // The frozen LM's shape (filled from its DecoderConfig).
  int64_t d = 0, L = 0, H = 0;

  int64_t slots() const { return (prefix_via == PrefixVia::Lm ? 1 : 2) * P * L; }  // n = 2PL (direct) or PL (lm)
  // core::UserError naming the mac.* option.
  void validate() const;
};

// T residual MLPs, one per token: y_t = skip_t(x_t) + W2_t tanh(W1_t LN_t(x_t) + b1_t) + b2_t.
// skip_t is the identity when d_in == d_out, else a linear map with bias (specs/mac.md 1.2).
class TokenMlpsImpl : public torch::nn::Module {
 public:
  TokenMlpsImpl(int64_t tokens, int64_t d_in, int64_t d_out);
  at::Tensor forward(const at::Tensor& x);  // [B, tokens, d_in] -> [B, tokens, d_out]

 private:
  int64_t tokens_, d_in_, d_out_;
  at::Tensor ln_weight_, ln_bias_, w1_, b1_, w2_, b2_, skip_weight_, skip_bias_;
};
TORCH_MODULE(TokenMlps);

// T5 + T learned queries + T token MLPs: text [B, S] -> [B, T, d].
class ContextEncoderImpl : public torch::nn::Module {
 public:
  ContextEncoderImpl(const model::T5Config& t5, int64_t T, int64_t d, bool mask_encoder_padding);
  // ids [B, S] int64, mask [B, S] 1 real / 0 padding.
  // features [B, S, d_t5]: optional, added to the token embeddings (MacConfig::read_with_lm).
  at::Tensor forward(const at::Tensor& ids, const at::Tensor& mask, const at::Tensor& features = {});
  model::T5& t5() { return t5_; }

 private:
  model::T5 t5_{nullptr};
  at::Tensor queries_;  // [T, d_t5], N(0, 0.02)
  TokenMlps mlps_{nullptr};
  bool mask_encoder_padding_;
};
TORCH_MODULE(ContextEncoder);

// The aggregation network h_psi: pre-LN cross-attention blocks
//   z <- z + Wo MHA(q = LN1(z), k = v = LNc(C));  z <- z + FF(LN2(z))
// where every block reads the original memory C (never updated) through its own LayerNorm.
// Softmax over all memory tokens jointly; masked memory rows (padding, excluded documents) get
// no weight.
class AggregatorImpl : public torch::nn::Module {
 public:
  explicit AggregatorImpl(const MacConfig& config);
  // z [..., T, d] queries; memory [..., S, d] with leading dimensions that broadcast against
  // z's (a bank shared by every question has leading size 1); memory_mask [..., S] (1 attend,
  // 0 ignore), broadcasting like memory; undefined = attend to all. Returns [..., T, d] with z's
  // leading dimensions. A query whose memory is entirely masked gets a finite (meaningless) value;
  // callers drop such results.
  // attention: when given, receives each block's attention weights [Bq, .., heads, T, S] (the
  // leading dimensions of z and memory broadcast), first block first.
  at::Tensor forward(const at::Tensor& z, const at::Tensor& memory, const at::Tensor& memory_mask = {},
                     std::vector<at::Tensor>* attention = nullptr);
  // How much the first block would attend to each entry (mac.select): z [Bq, T, d] queries,
  // entries [Bm, N, S, d] with Bm = 1 (shared) or Bq -> [Bq, N], the first block's logits
  // log-sum-exp'ed over the entry's S tokens and averaged over heads and query tokens. A softmax
  // over entries of one head and query token's logits is that block's attention share on each
  // entry, so these scores rank entries as the aggregator's own first look at the memory does.
  at::Tensor selection_scores(const at::Tensor& z, const at::Tensor& entries);

 private:
  struct Block;
  std::vector<std::shared_ptr<Block>> blocks_;
  int64_t heads_, head_dim_;
};
TORCH_MODULE(Aggregator);

// Latent [B, T, d] -> per-layer prefix: expand T tokens to n = 2PL slots (the first n mod T
// tokens n div T + 1 times, the rest n div T times, consecutively), a residual FFN per slot
//   y_j = x_j + Lin2_j(Dropout(GELU(Lin1_j(LN_j(x_j))))),
// then PEFT's prefix layout: (B, n, d) -> (B, P, 2L, H, hd) -> (2L, B, H, P, hd); layer l takes
// keys = [2l], values = [2l + 1]; slot j = p 2L + 2l + {0 keys, 1 values}.
class PrefixHeadImpl : public torch::nn::Module {
 public:
  explicit PrefixHeadImpl(const MacConfig& config);
  model::Prefix forward(const at::Tensor& latent);
  // [B, T, d] -> [B, n, d] after expansion and the slot FFNs (before the reshape).
  at::Tensor slots(const at::Tensor& latent);

 private:
  int64_t T_, P_, L_, H_, d_, hidden_;
  double scale_;
  at::Tensor slot_source_;  // [n] int64: the latent token each slot reads
  at::Tensor ln_weight_, ln_bias_, w1_, b1_, w2_, b2_;
  double dropout_ = 0;
};
TORCH_MODULE(PrefixHead);

// A dual encoder over what MAC already computes, for finding a question's documents in a large
// bank before aggregating (mac.retriever): key(summary [T, d]) and key(z0 [T, d]), each a
// LayerNorm and a linear map of the flattened T x d tokens to `retrieval_dim`, L2-normalised, so
// the inner product of a question key and a document key is their cosine. Keys come from the
// summaries the bank stores, so a bank needs nothing new.
class RetrieverImpl : public torch::nn::Module {
 public:
  explicit RetrieverImpl(const MacConfig& config);
  at::Tensor document_keys(const at::Tensor& summaries);  // [N, T, d] -> [N, k]
  at::Tensor question_keys(const at::Tensor& z0);         // [B, T, d] -> [B, k]

 private:
  struct Side {  // LayerNorm(T d) then Linear(T d -> k)
    at::Tensor norm_weight, norm_bias, weight, bias;
  };
  Side document_, question_;
  Side make_side(const std::string& name, int64_t in, int64_t out);
  static at::Tensor key(const Side& side, const at::Tensor& x);
};
TORCH_MODULE(Retriever);

// Everything MAC trains. Parameter names: amortizer.*, question_encoder.*, aggregator.*, prefix.*,
// retriever.* when config().retrieval_dim > 0, and token_keys.* with retrieval_keys "tokens"
class MacModelImpl : public torch::nn::Module {
 public:
  explicit MacModelImpl(const MacConfig& config);
  const MacConfig& config() const { return config_; }

  at::Tensor summarize(const at::Tensor& ids, const at::Tensor& mask) { return amortizer_(ids, mask, lm_features(ids, mask)); }
  at::Tensor encode_question(const at::Tensor& ids, const at::Tensor& mask) {
    return question_encoder_(ids, mask, lm_features(ids, mask));
  }
  // The frozen base LM that config().read_with_lm reads with (not a submodule: never trained or
  // saved with MAC). Required before summarize / encode_question when read_with_lm is on.
  void attach_lm(model::Decoder lm) { lm_ = std::move(lm); }
  // Aggregated latent [B, T, d] -> the LM's prefix (through the attached LM with prefix_via lm).
  model::Prefix prefix(const at::Tensor& latent);
  Aggregator& aggregator() { return aggregator_; }
  PrefixHead& prefix_head() { return prefix_head_; }
  bool has_retriever() const { return !retriever_.is_empty(); }
  Retriever& retriever();  // core::UserError when the model has none
  // Keys from tokens (config().retrieval_keys == "tokens"): answering retrieves with these.
  bool has_token_keys() const { return !token_keys_.is_empty(); }
  TokenKeys& token_keys();  // core::UserError when the model has none

  // A hash of the amortizer's configuration and weights (and the attached LM's with
  // read_with_lm, and the token keys' when the model has them): a bank records it, and a model
  // whose summaries or document keys would differ refuses the bank.
  std::string amortizer_fingerprint() const;
  int64_t num_parameters() const;

 private:
  MacConfig config_;
  ContextEncoder amortizer_{nullptr}, question_encoder_{nullptr};
  Aggregator aggregator_{nullptr};
  PrefixHead prefix_head_{nullptr};
  Retriever retriever_{nullptr};
  TokenKeys token_keys_{nullptr};
  model::Decoder lm_{nullptr};
  // The LM's hidden states of ids at read_layer (no grad), or undefined when read_with_lm is off.
  at::Tensor lm_features(const at::Tensor& ids, const at::Tensor& mask);
};
TORCH_MODULE(MacModel);

}  // namespace engram::mac

template <>
struct engram::core::EnumNames<engram::mac::MacConfig::PrefixVia> {
  using PrefixVia = engram::mac::MacConfig::PrefixVia;
  static constexpr std::pair<PrefixVia, const char*> names[] = {{PrefixVia::Direct, "direct"}, {PrefixVia::Lm, "lm"}};
};
