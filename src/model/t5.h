#pragma once
// T5 encoder-decoder (t5 v1.0 "relu" and v1.1 "gated-gelu"), as HF's T5ForConditionalGeneration,
// used by MAC as the amortization network and the question encoder (specs/mac.md 1.2, 1.3): the
// encoder reads the document, the decoder is driven by T learned query embeddings (no token ids)
// and its final hidden states [B, T, d] are the output.
//
// T5 specifics: layer norm = RMS norm without mean subtraction and without bias (variance in
// float32); no 1/sqrt(d_kv) scaling of attention scores; a relative position bias computed by the
// first block's self-attention (bidirectional buckets in the encoder, causal buckets in the decoder)
// and added to the scores of every block of that stack; cross-attention has no position bias.
// Attention uses batched matmuls over [B, H, T, d_kv]; no per-head or per-token loops.
//
// Parameter names (checkpoints and the HF name map; Linear weights are [out, in], no biases):
//   ours                                              HF T5ForConditionalGeneration
//   shared.weight                           [V, d]    shared.weight (= encoder.embed_tokens.weight,
//                                                                      decoder.embed_tokens.weight)
//   encoder.blocks.{i}.ln_attn.weight       [d]       encoder.block.{i}.layer.0.layer_norm.weight
//   encoder.blocks.{i}.attn.{q,k,v}.weight  [H*dkv,d] encoder.block.{i}.layer.0.SelfAttention.{q,k,v}.weight
//   encoder.blocks.{i}.attn.o.weight        [d,H*dkv] encoder.block.{i}.layer.0.SelfAttention.o.weight
//   encoder.blocks.0.attn.relative_attention_bias.weight [num_buckets, H]
//                                                     encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight
//   encoder.blocks.{i}.ln_ff.weight         [d]       encoder.block.{i}.layer.1.layer_norm.weight
//   encoder.blocks.{i}.ff.wi.weight         [dff, d]  encoder.block.{i}.layer.1.DenseReluDense.wi.weight     (relu)
//   encoder.blocks.{i}.ff.wi_0.weight       [dff, d]  encoder.block.{i}.layer.1.DenseReluDense.wi_0.weight   (gated-gelu)
//   encoder.blocks.{i}.ff.wi_1.weight       [dff, d]  encoder.block.{i}.layer.1.DenseReluDense.wi_1.weight   (gated-gelu)
//   encoder.blocks.{i}.ff.wo.weight         [d, dff]  encoder.block.{i}.layer.1.DenseReluDense.wo.weight
//   encoder.final_ln.weight                 [d]       encoder.final_layer_norm.weight
//   decoder.blocks.{i}.ln_self_attn.weight            decoder.block.{i}.layer.0.layer_norm.weight
//   decoder.blocks.{i}.self_attn.{q,k,v,o}.weight     decoder.block.{i}.layer.0.SelfAttention.{q,k,v,o}.weight
//   decoder.blocks.0.self_attn.relative_attention_bias.weight
//                                                     decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight
//   decoder.blocks.{i}.ln_cross_attn.weight           decoder.block.{i}.layer.1.layer_norm.weight
//   decoder.blocks.{i}.cross_attn.{q,k,v,o}.weight    decoder.block.{i}.layer.1.EncDecAttention.{q,k,v,o}.weight
//   decoder.blocks.{i}.ln_ff.weight                   decoder.block.{i}.layer.2.layer_norm.weight
//   decoder.blocks.{i}.ff.{wi | wi_0, wi_1, wo}.weight decoder.block.{i}.layer.2.DenseReluDense.{...}.weight
//   decoder.final_ln.weight                 [d]       decoder.final_layer_norm.weight
//   lm_head.weight                          [V, d]    lm_head.weight   (only when tie_word_embeddings is false)
// Only block 0 of each stack has relative_attention_bias. HF checkpoints may also hold
// encoder.embed_tokens.weight / decoder.embed_tokens.weight (copies of shared.weight): map them to
// shared.weight or skip them. MAC deletes lm_head; a tied model has none anyway.
#include <cstdint>
#include <memory>
#include <string>

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

namespace engram::model {

struct T5Config {
  int64_t vocab_size = 32128;
  int64_t d_model = 512;
  int64_t d_kv = 64;                  // per-head size; inner attention size = n_heads * d_kv
  int64_t d_ff = 2048;
  int64_t n_layers = 6;               // encoder blocks
  int64_t n_decoder_layers = 6;       // decoder blocks
  int64_t n_heads = 8;
  int64_t relative_attention_num_buckets = 32;
  int64_t relative_attention_max_distance = 128;
  double dropout = 0.1;               // HF dropout_rate: embeddings, attention probs, FF hidden,
                                      // sublayer outputs, final norm output (train mode only)
  double layer_norm_eps = 1e-6;
  std::string feed_forward = "relu";  // relu: wo(relu(wi x)) (t5 v1.0)
                                      // gated-gelu: wo(gelu_tanh(wi_0 x) * wi_1 x) (t5 v1.1)
  bool tie_word_embeddings = true;    // LM head = shared, hidden scaled by d_model^-0.5 (HF);
                                      // false: separate lm_head.weight, no scaling (v1.1)
  double initializer_factor = 1.0;    // HF init: shared N(0, f), q N(0, f (d d_kv)^-1/2), k, v, wi
                                      // N(0, f d^-1/2), o N(0, f (H d_kv)^-1/2), wo N(0, f d_ff^-1/2),
                                      // relative bias N(0, f d^-1/2), norms f

  int64_t inner_dim() const { return n_heads * d_kv; }
  // t5-small (d 512, d_kv 64, d_ff 2048, 6+6 layers, 8 heads), t5-base (768, 64, 3072, 12+12, 12),
  // t5-large (1024, 64, 4096, 24+24, 16): vocab 32128, relu, tied. tiny: vocab 64, d 32, d_kv 8,
  // d_ff 64, 2+2 layers, 4 heads, 8 buckets, max distance 16, dropout 0 (tests).
  // Unknown names -> core::UserError.
  static T5Config preset(const std::string& name);
  void validate() const;  // core::UserError on bad values
};

// HF's T5Attention._relative_position_bucket, elementwise on an int64 tensor of
// relative positions (key position - query position). Returns int64 buckets in [0, num_buckets).
at::Tensor relative_position_bucket(const at::Tensor& relative_position, bool bidirectional,
                                    int64_t num_buckets, int64_t max_distance);

class T5Impl : public torch::nn::Module {
 public:
  explicit T5Impl(T5Config config);

  // ids [B, S] int64, mask [B, S] 1 real / 0 pad (undefined: all real) -> final encoder states
  // [B, S, d] (after encoder.final_ln and dropout).
  // added_embeds [B, S, d] (optional) is added to the token embeddings (MAC: the frozen LM's
  // hidden states of the same tokens, mac.read_with_lm).
  at::Tensor encode(const at::Tensor& input_ids, const at::Tensor& attention_mask = {},
                    const at::Tensor& added_embeds = {});

  // Decoder from input embeddings [B, T, d] (MAC: the learned queries tiled over the batch).
  // encoder_states [B, S, d]. encoder_mask [B, S] (1 real / 0 pad): undefined = attend to every
  // encoder position, pads included (the MAC quirk). decoder_mask [B, T]: optional padding mask of
  // the decoder inputs (causal masking always applies). Returns final hidden states [B, T, d]
  // (after decoder.final_ln and dropout, before any LM-head scaling).
  at::Tensor decode(const at::Tensor& decoder_inputs_embeds, const at::Tensor& encoder_states,
                    const at::Tensor& encoder_mask = {}, const at::Tensor& decoder_mask = {});
  // The same from decoder token ids [B, T] (embedded with shared.weight).
  at::Tensor decode_ids(const at::Tensor& decoder_input_ids, const at::Tensor& encoder_states,
                        const at::Tensor& encoder_mask = {}, const at::Tensor& decoder_mask = {});

  // LM head on decoder hidden states [B, T, d] -> logits [B, T, V]. Tied: (h * d_model^-0.5) shared^T.
  at::Tensor lm_logits(const at::Tensor& decoder_hidden);

  // Ids-driven seq2seq forward (teacher forcing): logits [B, T, V]. The encoder mask is used for
  // both the encoder and the cross-attention.
  at::Tensor forward(const at::Tensor& input_ids, const at::Tensor& attention_mask,
                     const at::Tensor& decoder_input_ids, const at::Tensor& decoder_mask = {});

  const T5Config& config() const { return config_; }
  int64_t num_parameters(bool trainable_only = false) const;

 private:
  struct Parts;  // defined in t5.cpp
  T5Config config_;
  std::shared_ptr<Parts> parts_;
};
TORCH_MODULE(T5);

}  // namespace engram::model
