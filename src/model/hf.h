#pragma once
// Hugging Face weight interchange: config.json + safetensors <-> our models.
//
// Supported model_types: "gpt2" (also distilgpt2, whose model_type is gpt2) and "llama", both
// directions, for the decoder (model/decoder.h). Our parameter names (decoder.h) map to HF's:
//
//   ours                        gpt2 (prefix "transformer." optional)      llama
//   wte.weight                  wte.weight                                  model.embed_tokens.weight
//   wpe.weight                  wpe.weight                                  -
//   blocks.{i}.ln1.*            h.{i}.ln_1.*                                model.layers.{i}.input_layernorm.weight
//   blocks.{i}.attn.{q,k,v}.*   h.{i}.attn.c_attn.* (Conv1D [d, 3d], split) model.layers.{i}.self_attn.{q,k,v}_proj.weight
//   blocks.{i}.attn.o.*         h.{i}.attn.c_proj.* (Conv1D, transposed)    model.layers.{i}.self_attn.o_proj.weight
//   blocks.{i}.ln2.*            h.{i}.ln_2.*                                model.layers.{i}.post_attention_layernorm.weight
//   blocks.{i}.mlp.up.*         h.{i}.mlp.c_fc.* (Conv1D, transposed)       model.layers.{i}.mlp.up_proj.weight
//   blocks.{i}.mlp.down.*       h.{i}.mlp.c_proj.* (Conv1D, transposed)     model.layers.{i}.mlp.down_proj.weight
//   blocks.{i}.mlp.gate.weight  -                                           model.layers.{i}.mlp.gate_proj.weight
//   ln_f.*                      ln_f.*                                      model.norm.weight
//   head.weight                 (tied to wte; lm_head.weight if present      lm_head.weight (absent when
//                                must equal it)                              tie_word_embeddings)
// GPT-2 files' attn.bias / attn.masked_bias buffers and LLaMA's rotary_emb.inv_freq are ignored.
// GPT-2 files are written with the "transformer." prefix and without lm_head (as
// GPT2LMHeadModel.save_pretrained does); LLaMA files as LlamaForCausalLM.save_pretrained does.
// LLaMA q/k weights are used as HF stores them (rotate-half RoPE convention).
//
// Every problem with a folder (missing config.json, unsupported model_type or option, missing,
// unexpected or mis-shaped tensors, a bad safetensors file) is a core::UserError naming the file
// and the key or tensor.
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "model/decoder.h"
#include "model/t5.h"

namespace engram::model {

struct HfCheckpoint {
  DecoderConfig config;
  std::string model_type;      // "gpt2" | "llama"
  std::string tokenizer_path;  // the folder (vocab.json + merges.txt) or FOLDER/tokenizer.model; "" if none
};

// The model types load_hf_decoder accepts, for messages and `--help`.
const std::vector<std::string>& hf_decoder_model_types();

// Reads FOLDER/config.json and maps it onto DecoderConfig::preset(model_type). Unsupported
// model_type -> UserError listing the supported ones; options we cannot represent (grouped-query
// attention, rope_scaling, attention biases in llama, an unknown activation, ...) -> UserError
// naming the key.
HfCheckpoint read_hf_config(const std::string& folder);

// Builds the decoder of FOLDER/config.json and loads FOLDER/model.safetensors (or
// FOLDER/model.safetensors.index.json and its shards) into it, converting F16/BF16 to float32.
// Missing tensors, tensors the model does not have, and shape mismatches -> UserError naming them.
Decoder load_hf_decoder(const std::string& folder, HfCheckpoint* info = nullptr);

// Writes FOLDER/config.json and FOLDER/model.safetensors (float32) for `model` as `model_type`
// ("gpt2" or "llama"); the folder is created if needed. A model whose config the type cannot
// express (e.g. rope positions as gpt2) -> UserError. LoRA adapters are not exported: merge them
// first (merge_lora) if they should be part of the weights. When `tokenizer_source` is given (a
// folder, or a tokenizer.model / vocab.json file in one), its tokenizer files (vocab.json,
// merges.txt, tokenizer.model, tokenizer.json, tokenizer_config.json, special_tokens_map.json)
// are copied into FOLDER.
void save_hf_decoder(Decoder& model, const std::string& model_type, const std::string& folder,
                     const std::string& tokenizer_source = "");

// The name maps on their own (used by the functions above, exposed for tests and tools).
// Our state (name -> tensor, decoder.h names) to HF tensors of `model_type`.
std::vector<std::pair<std::string, at::Tensor>> decoder_state_to_hf(
    const std::vector<std::pair<std::string, at::Tensor>>& ours, const DecoderConfig& config,
    const std::string& model_type);

// --- T5 (model_type "t5" or "mt5"; the name map is documented in model/t5.h) --------------------
// config.json keys: vocab_size, d_model, d_kv, d_ff, num_layers, num_decoder_layers,
// num_heads, relative_attention_num_buckets, relative_attention_max_distance, dropout_rate,
// layer_norm_epsilon, feed_forward_proj ("relu" | "gated-gelu"), tie_word_embeddings,
// initializer_factor. On import, encoder/decoder.embed_tokens.weight (copies of shared.weight) and
// the unused decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight are accepted;
// a tied lm_head.weight must equal shared.weight. Export writes shared.weight (and lm_head.weight
// when untied), as T5ForConditionalGeneration.save_pretrained does.
struct HfT5Checkpoint {
  T5Config config;
  std::string model_type;      // "t5" | "mt5"
  std::string tokenizer_path;  // FOLDER/spiece.model or FOLDER/tokenizer.model when present
};
HfT5Checkpoint read_hf_t5_config(const std::string& folder);
T5 load_hf_t5(const std::string& folder, HfT5Checkpoint* info = nullptr);
void save_hf_t5(T5& model, const std::string& folder, const std::string& tokenizer_source = "");

}  // namespace engram::model
