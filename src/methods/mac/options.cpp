// mac.* options: the module sizes (MacConfig), where the base LM and data come from, and how
// MAC trains, memorizes and answers.
#include "methods/mac/options.h"

#include <nlohmann/json.hpp>

#include "config/config.h"
#include "core/error.h"

namespace engram::mac {
namespace {

void declare_t5_options(config::Schema& schema, const std::string& part, const std::string& what) {
  const std::string p = "mac." + part + ".";
  schema.add_string(p + "preset", "custom",
                    what + ": custom (sizes below, vocabulary of mac.tokenizer) or a T5 preset (t5-small, "
                           "t5-base, t5-large) whose sizes the keys below override when set",
                    {"custom", "t5-small", "t5-base", "t5-large"});
  schema.add_string(p + "hf", "", "Hugging Face T5 folder to initialise " + part + " from (\"\" = random init)");
  schema.add_int(p + "d_model", 128, "T5 width", config::Range::at_least(1));
  schema.add_int(p + "d_kv", 32, "T5 per-head size", config::Range::at_least(1));
  schema.add_int(p + "d_ff", 256, "T5 feed-forward size", config::Range::at_least(1));
  schema.add_int(p + "layers", 2, "T5 encoder blocks", config::Range::at_least(1));
  schema.add_int(p + "decoder_layers", 2, "T5 decoder blocks (driven by the learned queries)", config::Range::at_least(1));
  schema.add_int(p + "heads", 4, "T5 attention heads", config::Range::at_least(1));
  schema.add_float(p + "dropout", 0.0, "T5 dropout (training only)", config::Range::below(0, 1));
}

model::T5Config t5_config_from(const config::Config& cfg, const std::string& part, int64_t vocab) {
  const std::string p = "mac." + part + ".";
  auto is_set = [&](const std::string& key) { return cfg.source_of(p + key) != "default"; };
  const std::string preset = cfg.get_string(p + "preset");
  model::T5Config c = preset == "custom" ? model::T5Config::preset("tiny") : model::T5Config::preset(preset);
  const bool custom = preset == "custom";
  if (custom) c.vocab_size = vocab, c.relative_attention_num_buckets = 32, c.relative_attention_max_distance = 128;
  if (custom || is_set("d_model")) c.d_model = cfg.get_int(p + "d_model");
  if (custom || is_set("d_kv")) c.d_kv = cfg.get_int(p + "d_kv");
  if (custom || is_set("d_ff")) c.d_ff = cfg.get_int(p + "d_ff");
  if (custom || is_set("layers")) c.n_layers = cfg.get_int(p + "layers");
  if (custom || is_set("decoder_layers")) c.n_decoder_layers = cfg.get_int(p + "decoder_layers");
  if (custom || is_set("heads")) c.n_heads = cfg.get_int(p + "heads");
  if (custom || is_set("dropout")) c.dropout = cfg.get_float(p + "dropout");
  if (c.vocab_size < vocab)
    core::fail("{}preset: {} has a vocabulary of {}, smaller than the tokenizer's {} (mac.tokenizer)", p, preset,
               c.vocab_size, vocab);
  return c;
}

nlohmann::json t5_to_json(const model::T5Config& c) {
  return {{"vocab_size", c.vocab_size}, {"d_model", c.d_model}, {"d_kv", c.d_kv}, {"d_ff", c.d_ff},
          {"n_layers", c.n_layers}, {"n_decoder_layers", c.n_decoder_layers}, {"n_heads", c.n_heads},
          {"buckets", c.relative_attention_num_buckets}, {"max_distance", c.relative_attention_max_distance},
          {"dropout", c.dropout}, {"layer_norm_eps", c.layer_norm_eps}, {"feed_forward", c.feed_forward},
          {"tie_word_embeddings", c.tie_word_embeddings}};
}

model::T5Config t5_from_json(const nlohmann::json& j) {
  model::T5Config c;
  c.vocab_size = j.at("vocab_size");
  c.d_model = j.at("d_model");
  c.d_kv = j.at("d_kv");
  c.d_ff = j.at("d_ff");
  c.n_layers = j.at("n_layers");
  c.n_decoder_layers = j.at("n_decoder_layers");
  c.n_heads = j.at("n_heads");
  c.relative_attention_num_buckets = j.at("buckets");
  c.relative_attention_max_distance = j.at("max_distance");
  c.dropout = j.at("dropout");
  c.layer_norm_eps = j.at("layer_norm_eps");
  c.feed_forward = j.at("feed_forward").get<std::string>();
  c.tie_word_embeddings = j.at("tie_word_embeddings");
  return c;
}

}  // namespace

std::string mac_config_to_json(const MacConfig& c) {
  nlohmann::json j{{"T", c.T},
                   {"P", c.P},
                   {"amortizer", t5_to_json(c.amortizer)},
                   {"question", t5_to_json(c.question)},
                   {"mask_encoder_padding", c.mask_encoder_padding},
                   {"read_with_lm", c.read_with_lm},
                   {"read_layer", c.read_layer},
                   {"prefix_via", core::name_of(c.prefix_via)},
                   {"aggregator_blocks", c.aggregator_blocks},
                   {"aggregator_heads", c.aggregator_heads},
                   {"aggregator_head_dim", c.aggregator_head_dim},
                   {"aggregator_ff", c.aggregator_ff},
                   {"slot_hidden", c.slot_hidden},
                   {"slot_dropout", c.slot_dropout},
                   {"prefix_scale", c.prefix_scale},
                   {"retrieval_dim", c.retrieval_dim},
                   {"retrieval_keys", c.retrieval_keys},
                   {"retrieval_vocab", c.retrieval_vocab},
                   {"d", c.d},
                   {"L", c.L},
                   {"H", c.H}};
  return j.dump();
}

MacConfig mac_config_from_json(const std::string& text, const std::string& origin) {
  MacConfig c;
  try {
    const nlohmann::json j = nlohmann::json::parse(text);
    c.T = j.at("T");
    c.P = j.at("P");
    c.amortizer = t5_from_json(j.at("amortizer"));
    c.question = t5_from_json(j.at("question"));
    c.mask_encoder_padding = j.at("mask_encoder_padding");
    c.read_with_lm = j.value("read_with_lm", false);
    c.read_layer = j.value("read_layer", int64_t{1});
    c.prefix_via = core::parse_enum<MacConfig::PrefixVia>(j.value("prefix_via", std::string("direct")), origin + ": prefix_via");
    c.aggregator_blocks = j.at("aggregator_blocks");
    c.aggregator_heads = j.at("aggregator_heads");
    c.aggregator_head_dim = j.at("aggregator_head_dim");
    c.aggregator_ff = j.at("aggregator_ff");
    c.slot_hidden = j.at("slot_hidden");
    c.slot_dropout = j.at("slot_dropout");
    c.prefix_scale = j.at("prefix_scale");
    c.retrieval_dim = j.value("retrieval_dim", int64_t{0});
    c.retrieval_keys = j.value("retrieval_keys", std::string("summary"));
    c.retrieval_vocab = j.value("retrieval_vocab", int64_t{0});
    c.d = j.at("d");
    c.L = j.at("L");
    c.H = j.at("H");
  } catch (const nlohmann::json::exception& e) {
    core::fail("{}: the MAC architecture is not valid: {}", origin, e.what());
  }
  c.validate();
  return c;
}

namespace {

// mac.retriever.*: not in the reference (docs/mac.md, Retriever and Keys from tokens).
void declare_retriever_options(config::Schema& schema) {
  schema.add_int("mac.retriever.dim", 0,
                 "width of the retriever's keys (a dual encoder on the document summaries and the question's "
                 "first latent); 0 = no retriever (the reference)", config::Range::at_least(0));
  schema.add_string("mac.retriever.keys", "summary",
                    "what answering retrieves with: summary (keys from the document summaries and the question's "
                    "first latent) or tokens (a learned bag of tokens over the texts, trained beside MAC on fresh "
                    "keys of the batch and mac.retriever.token_negatives documents; the bank stores the keys)");
  schema.add_int("mac.retriever.token_negatives", 1024,
                 "meta-training with mac.retriever.keys: tokens: training documents drawn at random each step as "
                 "the token keys' negatives, besides the global batch", config::Range::at_least(0));
  schema.add_float("mac.retriever.weight", 1.0,
                   "meta-training: weight of the retriever's contrastive loss (each question against every "
                   "document of the global batch and the pool, its own the label). "
                   "It also trains the amortizer and question encoder", config::Range::at_least(0));
  schema.add_int("mac.retriever.from_step", 0,
                 "meta-training: the retriever's second phase starts here: before it, its loss has weight "
                 "mac.retriever.early_weight and sees the batch only, while the encoders learn to read; from "
                 "it on, mac.retriever.weight, with the pool and hard distractors", config::Range::at_least(0));
  schema.add_float("mac.retriever.early_weight", 0.1,
                   "meta-training: the retriever's weight before mac.retriever.from_step (on the quickstart "
                   "world, weight 1 from the first step kept the QA loss at the closed-book plateau; 0.1 did not)", config::Range::at_least(0));
  schema.add_int("mac.retriever.pool", 0,
                 "meta-training: the summaries of the last N documents (detached) are kept as more negatives for "
                 "the retriever (each rank's pool is saved with the checkpoints)", config::Range::at_least(0));
  schema.add_int("mac.retriever.hard_negatives", 0,
                 "meta-training after the curriculum: each question's memory also holds this many pool documents "
                 "that its retriever key matches best (as answering with mac.retriever.top_k does)", config::Range::at_least(0));
  schema.add_float("mac.retriever.temperature", 0.05, "temperature of the retriever's contrastive loss", config::Range::at_least(1e-6));
  schema.add_int("mac.retriever.top_k", 0,
                 "answering: each question aggregates only the K documents of the bank whose keys match its key "
                 "best (faiss inner-product search on each rank's shard, then the best K over all ranks); 0 = "
                 "aggregate the whole bank (the reference)", config::Range::at_least(0));
}

}  // namespace

void declare_mac_options(config::Schema& schema) {
  schema.add_string("mac.tokenizer", "",
                    "tokenizer of the amortizer and question encoder (a T5 spiece.model); \"\" = the base LM's");
  schema.add_string("mac.out_dir", "runs/quickstart/mac", "checkpoints, metrics.jsonl and mac.h5 of meta-training");
  schema.add_int("mac.summary_tokens", 8, "T: summary vectors per document (num_virtual_tokens)", config::Range::at_least(1));
  schema.add_int("mac.prefix_tokens", 2, "P: prefix key/value tokens per layer of the base LM", config::Range::at_least(1));
  declare_t5_options(schema, "amortizer", "the amortization network (document -> summary)");
  declare_t5_options(schema, "question", "the question encoder (question -> initial query)");
  schema.add_bool("mac.init_from_lm_embeddings", false,
                  "start the token embeddings of both T5s (without mac.*.hf) from the base LM's, rescaled; needs "
                  "the base LM's tokenizer and width");
  schema.add_bool("mac.mask_encoder_padding", true,
                  "the T5 decoders ignore encoder padding; false keeps the reference's quirk of attending to it");
  schema.add_bool("mac.read_with_lm", false,
                  "both T5 encoders also read the frozen base LM's hidden states of their text (mac.read_layer; "
                  "added to the token embeddings): a reader to start from when no pretrained T5 exists; needs the "
                  "base LM's tokenizer and the T5 width = the LM width");
  schema.add_int("mac.read_layer", 1,
                 "with mac.read_with_lm: the LM state the encoders read, 0 = token embeddings, l = after block l "
                 "(the first block's output carried the most in the quickstart world)", config::Range::at_least(0));
  schema.add_string("mac.prefix_via", "direct",
                    "direct: the 2PL slots are the prefix keys and values (the reference); lm: PL slots are virtual "
                    "token states that each layer of the frozen LM projects to its own keys and values",
                    core::enum_choices<MacConfig::PrefixVia>());
  schema.add_int("mac.aggregator.blocks", 4, "cross-attention blocks of the aggregation network", config::Range::at_least(1));
  schema.add_int("mac.aggregator.heads", 8, "attention heads of the aggregator", config::Range::at_least(1));
  schema.add_int("mac.aggregator.head_dim", 96, "per-head size of the aggregator", config::Range::at_least(1));
  schema.add_int("mac.aggregator.ff", 0, "aggregator feed-forward size; 0 = d_model if <= 768, else 768", config::Range::at_least(0));
  schema.add_int("mac.slot_hidden", 768, "hidden size of the per-slot FFNs that make the prefix", config::Range::at_least(1));
  schema.add_float("mac.prefix_scale", 1.0,
                   "multiplies the prefix keys/values (1 = reference); below 1 keeps an untrained prefix from "
                   "swamping a small LM's own attention", config::Range::at_least(0));
  schema.add_float("mac.slot_dropout", 0.0, "dropout inside the per-slot FFNs (training only)", config::Range::below(0, 1));
  schema.add_int("mac.doc_tokens", 1022, "document tokens the amortizer reads (longer documents are cut)", config::Range::at_least(1));
  schema.add_int("mac.question_tokens", 104, "question tokens the question encoder reads (the last ones are kept)", config::Range::at_least(1));
  schema.add_string("mac.answer_end", "eos",
                    "what ends a trained answer: eos (Hugging Face LMs, the reference) or newline (the reading "
                    "format of engram pretrain, \"Answer: <a>\\n\")",
                    {"eos", "newline"});
  schema.add_int("mac.qa_tokens", 128, "question + answer tokens through the base LM", config::Range::at_least(2));
  schema.add_float("mac.backprop_ratio", 1.0,
                   "backpropagation dropout r: per bank of B documents only the first floor(B r) get gradients "
                   "(their questions are trained); the rest are distractors under no-grad", config::Range::between(0, 1));
  schema.add_bool("mac.global_bank", false,
                  "during meta-training each question sees the summaries of every rank's batch as its memory "
                  "(all-gathered; gradient through the local part)");
  schema.add_int("mac.memory_group", 0,
                 "meta-training: at most this many documents of its batch in each question's memory, its own among "
                 "them (0 = the whole bank after mac.curriculum_steps, the reference; 1 = its own document alone, "
                 "what answering with mac.retriever.top_k 1 reads)", config::Range::at_least(0));
  schema.add_int("mac.eval_every", 0,
                 "meta-training: every N steps, F1 over a bank of the last mac.val_bank training documents (held "
                 "out of training), answered by MAC itself (mac.select, no retriever); the best model so far is "
                 "kept as best.h5 and used by the commands that read the trained MAC; 0 = no validation", config::Range::at_least(0));
  schema.add_int("mac.val_bank", 200, "with mac.eval_every: documents held out of the training stream for validation", config::Range::at_least(1));
  schema.add_int("mac.val_questions", 200, "with mac.eval_every: questions asked of them at most", config::Range::at_least(1));
  schema.add_int("mac.curriculum_steps", 0,
                 "meta-training: during the first N steps each question's memory is a group of its batch's "
                 "documents (its own among them) that doubles in equal stages from 1 (encode and read first, "
                 "then search among ever more distractors)", config::Range::at_least(0));
  schema.add_float("mac.selection_weight", 0.0,
                   "meta-training: adds this times a contrastive loss on the aggregator's selection scores (its "
                   "first block's attention logits) of each question over every document of the global batch, its "
                   "own the label; 0 = the reference (the QA loss alone, no selection label)", config::Range::at_least(0));
  schema.add_int("mac.selection_from_step", 0,
                 "meta-training: the selection loss trains from this step on (before it, it is only logged), so "
                 "the encoders first learn to read", config::Range::at_least(0));
  schema.add_float("mac.selection_temperature", 1.0, "temperature of the selection loss (mac.selection_weight)", config::Range::at_least(1e-6));
  schema.add_float("mac.selection_vote", 0.25,
                   "answering with mac.select among the retriever's top_k: the weight of the aggregator's selection "
                   "scores against the retriever's (1 = the plain product of the two trained softmaxes; 0 = the "
                   "retriever's order alone). 0.25: best on the validation split (docs/mac.md)",
                   config::Range::at_least(0));
  schema.add_int("mac.select", 0,
                 "answering: the aggregator first scores every document (its first block's attention logits, "
                 "group by group) and reads only its best K; 0 = it attends over the whole bank (the reference)", config::Range::at_least(0));
  schema.add_float("mac.distill_weight", 0.0,
                   "meta-training: adds this times a context-distillation loss: the frozen LM's states (every "
                   "layer) where it predicts the answer behind MAC's prefix against its states there when it "
                   "reads the question right after the document itself (README: MAC); 0 = the reference (the "
                   "QA loss alone)", config::Range::at_least(0));
  declare_retriever_options(schema);
  schema.add_bool("mac.lm_dropout", true, "the frozen base LM runs in train mode (dropout on) for the QA loss");
  schema.add_string("mac.aggregation", "hierarchical",
                    "answering: hierarchical (groups of mac.group_size, O(M T) memory per call) or flat (one call "
                    "over the whole bank)",
                    {"hierarchical", "flat"});
  schema.add_int("mac.group_size", 16, "M: documents per aggregator call in hierarchical aggregation", config::Range::at_least(2));
  schema.add_string("mac.hierarchy_carries", "latent",
                    "what each group of a hierarchical level becomes: latent (the aggregator's output for the "
                    "group, the spec's algorithm) or summary (the group's documents mixed by the aggregator's "
                    "attention on each, so every level reads summaries, as in training)",
                    {"latent", "summary"});
  schema.add_int("mac.answer_batch", 64, "questions answered together", config::Range::at_least(1));
}

MacConfig mac_config_from(const config::Config& cfg, const model::DecoderConfig& lm, int64_t vocab) {
  MacConfig c;
  c.T = cfg.get_int("mac.summary_tokens");
  c.P = cfg.get_int("mac.prefix_tokens");
  c.amortizer = t5_config_from(cfg, "amortizer", vocab);
  c.question = t5_config_from(cfg, "question", vocab);
  c.mask_encoder_padding = cfg.get_bool("mac.mask_encoder_padding");
  c.read_with_lm = cfg.get_bool("mac.read_with_lm");
  c.read_layer = cfg.get_int("mac.read_layer");
  c.prefix_via = core::parse_enum<MacConfig::PrefixVia>(cfg.get_string("mac.prefix_via"), "mac.prefix_via");
  c.aggregator_blocks = cfg.get_int("mac.aggregator.blocks");
  c.aggregator_heads = cfg.get_int("mac.aggregator.heads");
  c.aggregator_head_dim = cfg.get_int("mac.aggregator.head_dim");
  c.aggregator_ff = cfg.get_int("mac.aggregator.ff");
  c.slot_hidden = cfg.get_int("mac.slot_hidden");
  c.slot_dropout = cfg.get_float("mac.slot_dropout");
  c.prefix_scale = cfg.get_float("mac.prefix_scale");
  c.retrieval_dim = cfg.get_int("mac.retriever.dim");
  c.retrieval_keys = cfg.get_string("mac.retriever.keys");
  if (c.retrieval_keys == "tokens") c.retrieval_vocab = vocab;
  c.d = lm.d_model;
  c.L = lm.n_layers;
  c.H = lm.n_heads;
  c.validate();
  return c;
}

}  // namespace engram::mac
