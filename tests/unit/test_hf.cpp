// model/hf: Hugging Face name maps and folders, both directions, for gpt2, llama and t5, with the
// error messages of broken folders.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "core/error.h"
#include "io/safetensors.h"
#include "model/decoder.h"
#include "model/hf.h"
#include "model/t5.h"

namespace fs = std::filesystem;
using engram::core::UserError;
using namespace engram::model;
using namespace engram::io;

namespace {

class HfTempDir {
 public:
  HfTempDir() {
    std::random_device rd;
    path_ = fs::temp_directory_path() / ("engram_hf_" + std::to_string(::getpid()) + "_" + std::to_string(rd()));
    fs::create_directories(path_);
  }
  ~HfTempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string str() const { return path_.string(); }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

void write_text(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

// Every parameter random (biases and norms too, so a swapped or mis-split tensor shows).
template <typename M>
void randomize(M& model, uint64_t seed) {
  torch::manual_seed(seed);
  torch::NoGradGuard no_grad;
  for (auto& p : model->parameters()) p.copy_(torch::randn_like(p) * 0.2);
}

DecoderConfig tiny(const std::string& preset) {
  DecoderConfig sizes;
  sizes.vocab_size = 50;
  sizes.d_model = 32;
  sizes.n_layers = 2;
  sizes.n_heads = 4;
  sizes.d_ff = 64;
  sizes.max_positions = 16;
  return DecoderConfig::preset(preset, sizes);
}

at::Tensor logits_of(Decoder& model, const at::Tensor& ids) {
  model->eval();
  torch::NoGradGuard no_grad;
  return model->forward(ids).logits;
}

at::Tensor random_ids(int64_t vocab) {
  torch::manual_seed(99);
  return torch::randint(0, vocab, {2, 11}, torch::kLong);
}

double max_abs_diff(const at::Tensor& a, const at::Tensor& b) { return (a - b).abs().max().item<double>(); }

void expect_user_error(const std::function<void()>& f, const std::vector<std::string>& fragments) {
  try {
    f();
    ADD_FAILURE() << "no UserError; expected: " << fragments.front();
  } catch (const UserError& e) {
    for (const auto& fragment : fragments)
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos)
          << "message: " << e.what() << "\nexpected: " << fragment;
  }
}

std::map<std::string, at::Tensor> read_all(const std::string& path) { return read_safetensors(path).tensors; }

}  // namespace

TEST(Hf, Gpt2RoundTripNamesShapesAndLogits) {
  HfTempDir dir, tok;
  DecoderConfig cfg = tiny("gpt2");
  Decoder model(cfg);
  randomize(model, 1);
  write_text(tok.file("vocab.json"), "{}");
  write_text(tok.file("merges.txt"), "#version: 0.2\n");
  save_hf_decoder(model, "gpt2", dir.str(), tok.str());

  auto t = read_all(dir.file("model.safetensors"));
  EXPECT_EQ(read_safetensors(dir.file("model.safetensors")).metadata.at("format"), "pt");
  ASSERT_TRUE(t.count("transformer.wte.weight"));
  EXPECT_EQ(t.at("transformer.wte.weight").sizes(), (std::vector<int64_t>{50, 32}));
  EXPECT_EQ(t.at("transformer.wpe.weight").sizes(), (std::vector<int64_t>{16, 32}));
  EXPECT_FALSE(t.count("lm_head.weight"));  // tied
  for (int i = 0; i < 2; ++i) {
    const std::string h = "transformer.h." + std::to_string(i) + ".";
    EXPECT_EQ(t.at(h + "attn.c_attn.weight").sizes(), (std::vector<int64_t>{32, 96}));  // Conv1D [in, 3 out]
    EXPECT_EQ(t.at(h + "attn.c_attn.bias").sizes(), (std::vector<int64_t>{96}));
    EXPECT_EQ(t.at(h + "attn.c_proj.weight").sizes(), (std::vector<int64_t>{32, 32}));
    EXPECT_EQ(t.at(h + "mlp.c_fc.weight").sizes(), (std::vector<int64_t>{32, 64}));
    EXPECT_EQ(t.at(h + "mlp.c_proj.weight").sizes(), (std::vector<int64_t>{64, 32}));
    for (const char* n : {"ln_1.weight", "ln_1.bias", "ln_2.weight", "ln_2.bias", "mlp.c_fc.bias", "mlp.c_proj.bias",
                          "attn.c_proj.bias"})
      EXPECT_TRUE(t.count(h + n)) << h + n;
  }
  EXPECT_TRUE(t.count("transformer.ln_f.weight"));
  EXPECT_EQ(t.size(), 4u + 2u * 12u);  // wte, wpe, ln_f.{weight,bias}; 12 per block
  // The fused c_attn holds q, k, v transposed, in that order.
  auto params = model->named_parameters();
  at::Tensor c_attn = t.at("transformer.h.1.attn.c_attn.weight");
  EXPECT_TRUE(c_attn.narrow(1, 0, 32).equal(params["blocks.1.attn.q.weight"].t()));
  EXPECT_TRUE(c_attn.narrow(1, 32, 32).equal(params["blocks.1.attn.k.weight"].t()));
  EXPECT_TRUE(c_attn.narrow(1, 64, 32).equal(params["blocks.1.attn.v.weight"].t()));
  EXPECT_TRUE(t.at("transformer.h.1.attn.c_attn.bias").narrow(0, 32, 32).equal(params["blocks.1.attn.k.bias"]));
  EXPECT_TRUE(t.at("transformer.h.0.mlp.c_fc.weight").equal(params["blocks.0.mlp.up.weight"].t()));

  auto config = nlohmann::json::parse(std::ifstream(dir.file("config.json")));
  EXPECT_EQ(config["model_type"], "gpt2");
  EXPECT_EQ(config["n_embd"], 32);
  EXPECT_EQ(config["n_inner"], 64);
  EXPECT_TRUE(fs::exists(dir.file("vocab.json")));
  EXPECT_TRUE(fs::exists(dir.file("merges.txt")));

  HfCheckpoint info;
  Decoder loaded = load_hf_decoder(dir.str(), &info);
  EXPECT_EQ(info.model_type, "gpt2");
  EXPECT_EQ(info.tokenizer_path, dir.str());
  EXPECT_EQ(info.config.d_ff, 64);
  EXPECT_EQ(info.config.max_positions, 16);
  EXPECT_TRUE(info.config.tied_head);
  at::Tensor ids = random_ids(50);
  EXPECT_EQ(max_abs_diff(logits_of(model, ids), logits_of(loaded, ids)), 0.0);
}

TEST(Hf, Gpt2FileVariants) {
  HfTempDir dir;
  Decoder model(tiny("gpt2"));
  randomize(model, 2);
  save_hf_decoder(model, "gpt2", dir.str());
  at::Tensor ids = random_ids(50);
  at::Tensor want = logits_of(model, ids);
  const std::string st = dir.file("model.safetensors");
  auto original = read_all(st);

  // GPT2Model style: no "transformer." prefix, attention buffers, a tied lm_head copy, n_inner null.
  std::map<std::string, at::Tensor> plain;
  for (auto& [name, t] : original) plain[name.substr(12)] = t;
  plain["h.0.attn.bias"] = torch::ones({1, 1, 16, 16}).tril();
  plain["h.1.attn.masked_bias"] = torch::tensor(-1e4);
  plain["lm_head.weight"] = original.at("transformer.wte.weight");
  write_safetensors(st, plain);
  {
    auto cfg = nlohmann::json::parse(std::ifstream(dir.file("config.json")));
    cfg["n_inner"] = nullptr;  // -> 4 * n_embd = 128: the c_fc shapes no longer fit
    write_text(dir.file("config.json"), cfg.dump());
    expect_user_error([&] { load_hf_decoder(dir.str()); },
                      {st, "tensor 'h.0.mlp.c_fc.weight' has shape [32, 64], expected [32, 128]"});
    cfg["n_inner"] = 64;
    write_text(dir.file("config.json"), cfg.dump());
  }
  Decoder loaded = load_hf_decoder(dir.str());
  EXPECT_EQ(max_abs_diff(want, logits_of(loaded, ids)), 0.0);

  // A tied head that differs from wte.
  plain["lm_head.weight"] = original.at("transformer.wte.weight") + 1;
  write_safetensors(st, plain);
  expect_user_error([&] { load_hf_decoder(dir.str()); }, {"'lm_head.weight' differs from 'wte.weight'"});
}

TEST(Hf, LlamaRoundTrip) {
  for (bool tied : {false, true}) {
    SCOPED_TRACE(tied ? "tied" : "untied");
    HfTempDir dir;
    DecoderConfig cfg = tiny("llama");
    cfg.tied_head = tied;
    cfg.norm_eps = 1e-6;
    cfg.rope_theta = 500.0;
    Decoder model(cfg);
    randomize(model, 3);
    save_hf_decoder(model, "llama", dir.str());
    auto t = read_all(dir.file("model.safetensors"));
    EXPECT_EQ(t.at("model.embed_tokens.weight").sizes(), (std::vector<int64_t>{50, 32}));
    EXPECT_EQ(t.at("model.layers.1.self_attn.q_proj.weight").sizes(), (std::vector<int64_t>{32, 32}));
    EXPECT_EQ(t.at("model.layers.1.mlp.gate_proj.weight").sizes(), (std::vector<int64_t>{64, 32}));
    EXPECT_EQ(t.at("model.layers.1.mlp.down_proj.weight").sizes(), (std::vector<int64_t>{32, 64}));
    EXPECT_TRUE(t.count("model.layers.0.input_layernorm.weight"));
    EXPECT_TRUE(t.count("model.layers.0.post_attention_layernorm.weight"));
    EXPECT_TRUE(t.count("model.norm.weight"));
    EXPECT_EQ(t.count("lm_head.weight"), tied ? 0u : 1u);
    EXPECT_EQ(t.size(), 2u + (tied ? 0u : 1u) + 2u * 9u);
    EXPECT_TRUE(t.at("model.layers.0.self_attn.v_proj.weight").equal(model->named_parameters()["blocks.0.attn.v.weight"]));

    HfCheckpoint info;
    Decoder loaded = load_hf_decoder(dir.str(), &info);
    EXPECT_EQ(info.model_type, "llama");
    EXPECT_EQ(info.config.tied_head, tied);
    EXPECT_EQ(info.config.norm_eps, 1e-6);
    EXPECT_EQ(info.config.rope_theta, 500.0);
    at::Tensor ids = random_ids(50);
    EXPECT_EQ(max_abs_diff(logits_of(model, ids), logits_of(loaded, ids)), 0.0);
  }
}

TEST(Hf, ShardedFolderLoads) {
  HfTempDir dir;
  Decoder model(tiny("llama"));
  randomize(model, 4);
  save_hf_decoder(model, "llama", dir.str());
  write_text(dir.file("tokenizer.model"), "not really a model");
  auto all = read_all(dir.file("model.safetensors"));
  fs::remove(dir.file("model.safetensors"));
  std::map<std::string, at::Tensor> shard1, shard2;
  nlohmann::json weight_map;
  for (auto& [name, t] : all) {
    const bool first = name.find("layers.1.") == std::string::npos;
    (first ? shard1 : shard2)[name] = t;
    weight_map[name] = first ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
  }
  write_safetensors(dir.file("model-00001-of-00002.safetensors"), shard1);
  write_safetensors(dir.file("model-00002-of-00002.safetensors"), shard2);
  write_text(dir.file("model.safetensors.index.json"),
             nlohmann::json{{"metadata", {{"total_size", 1234}}}, {"weight_map", weight_map}}.dump());
  HfCheckpoint info;
  Decoder loaded = load_hf_decoder(dir.str(), &info);
  EXPECT_EQ(info.tokenizer_path, dir.file("tokenizer.model"));
  at::Tensor ids = random_ids(50);
  EXPECT_EQ(max_abs_diff(logits_of(model, ids), logits_of(loaded, ids)), 0.0);
}

TEST(Hf, BrokenFoldersNameTheProblem) {
  HfTempDir dir;
  Decoder model(tiny("llama"));
  save_hf_decoder(model, "llama", dir.str());
  const std::string st = dir.file("model.safetensors");
  const auto good = read_all(st);

  auto without = good;
  without.erase("model.layers.1.mlp.up_proj.weight");
  write_safetensors(st, without);
  expect_user_error([&] { load_hf_decoder(dir.str()); }, {st, "missing tensors", "model.layers.1.mlp.up_proj.weight"});

  auto wrong = good;
  wrong["model.layers.0.self_attn.k_proj.weight"] = torch::zeros({32, 16});
  write_safetensors(st, wrong);
  expect_user_error([&] { load_hf_decoder(dir.str()); },
                    {st, "tensor 'model.layers.0.self_attn.k_proj.weight' has shape [32, 16], expected [32, 32]"});

  auto extra = good;
  extra["model.layers.2.self_attn.q_proj.weight"] = torch::zeros({32, 32});
  write_safetensors(st, extra);
  expect_user_error([&] { load_hf_decoder(dir.str()); }, {"unexpected tensors", "model.layers.2.self_attn.q_proj.weight"});

  write_safetensors(st, good);
  EXPECT_NO_THROW(load_hf_decoder(dir.str()));

  // Corrupt weights file: the safetensors reader's message.
  std::ofstream(st, std::ios::binary | std::ios::trunc) << "garbage";
  expect_user_error([&] { load_hf_decoder(dir.str()); }, {st, "shorter than the 8-byte"});
  fs::remove(st);
  expect_user_error([&] { load_hf_decoder(dir.str()); }, {"no model.safetensors"});

  // Config problems.
  auto config = nlohmann::json::parse(std::ifstream(dir.file("config.json")));
  const std::string cfg_path = dir.file("config.json");
  auto with = [&](const std::string& key, const nlohmann::json& value) {
    auto c = config;
    c[key] = value;
    if (key == "num_attention_heads") c["num_key_value_heads"] = value;
    write_text(cfg_path, c.dump());
  };
  with("num_key_value_heads", 2);
  expect_user_error([&] { read_hf_config(dir.str()); }, {cfg_path, "grouped-query attention is not supported"});
  with("model_type", "bert");
  expect_user_error([&] { read_hf_config(dir.str()); }, {cfg_path, "model_type 'bert' is not supported", "gpt2, llama"});
  with("hidden_size", "big");
  expect_user_error([&] { read_hf_config(dir.str()); }, {"\"hidden_size\" must be an integer"});
  with("num_attention_heads", 5);
  expect_user_error([&] { read_hf_config(dir.str()); }, {cfg_path, "unsupported configuration"});
  with("rope_scaling", {{"type", "linear"}, {"factor", 2.0}});
  expect_user_error([&] { read_hf_config(dir.str()); }, {"rope_scaling"});
  write_text(cfg_path, "{not json");
  expect_user_error([&] { read_hf_config(dir.str()); }, {cfg_path, "invalid JSON"});
  write_text(cfg_path, "{\"model_type\": \"gpt2\", \"n_embd\": 1e400}");  // overflows a double
  expect_user_error([&] { read_hf_config(dir.str()); }, {cfg_path, "invalid JSON", "number overflow"});
  fs::remove(cfg_path);
  expect_user_error([&] { read_hf_config(dir.str()); }, {cfg_path, "missing"});
  expect_user_error([&] { read_hf_config(dir.file("nope")); }, {"not a folder"});
}

TEST(Hf, ExportRejectsWhatTheTypeCannotExpress) {
  HfTempDir dir;
  Decoder llama(tiny("llama"));
  expect_user_error([&] { save_hf_decoder(llama, "gpt2", dir.str()); }, {"cannot export", "gpt2", "learned positions"});
  Decoder gpt2(tiny("gpt2"));
  expect_user_error([&] { save_hf_decoder(gpt2, "llama", dir.str()); }, {"cannot export", "llama"});
  expect_user_error([&] { save_hf_decoder(gpt2, "bloom", dir.str()); }, {"'bloom'", "gpt2, llama"});
  Decoder alibi(DecoderConfig::preset("alibi-parallel", tiny("gpt2")));
  expect_user_error([&] { save_hf_decoder(alibi, "gpt2", dir.str()); }, {"cannot export"});
  EXPECT_FALSE(fs::exists(dir.file("model.safetensors")));
}

TEST(Hf, T5RoundTrip) {
  for (const std::string ff : {"relu", "gated-gelu"}) {
    SCOPED_TRACE(ff);
    HfTempDir dir;
    T5Config cfg = T5Config::preset("tiny");
    cfg.feed_forward = ff;
    cfg.tie_word_embeddings = ff == "relu";
    cfg.dropout = 0.0;
    T5 model(cfg);
    randomize(model, 5);
    save_hf_t5(model, dir.str());
    auto t = read_all(dir.file("model.safetensors"));
    const int64_t inner = cfg.n_heads * cfg.d_kv;
    EXPECT_EQ(t.at("shared.weight").sizes(), (std::vector<int64_t>{cfg.vocab_size, cfg.d_model}));
    EXPECT_EQ(t.at("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight").sizes(),
              (std::vector<int64_t>{cfg.relative_attention_num_buckets, cfg.n_heads}));
    EXPECT_TRUE(t.count("decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"));
    EXPECT_FALSE(t.count("encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight"));
    EXPECT_EQ(t.at("encoder.block.1.layer.0.SelfAttention.q.weight").sizes(), (std::vector<int64_t>{inner, cfg.d_model}));
    EXPECT_EQ(t.at("decoder.block.1.layer.1.EncDecAttention.o.weight").sizes(), (std::vector<int64_t>{cfg.d_model, inner}));
    EXPECT_TRUE(t.count("decoder.block.1.layer.2.layer_norm.weight"));
    EXPECT_TRUE(t.count("encoder.final_layer_norm.weight"));
    EXPECT_TRUE(t.count("decoder.final_layer_norm.weight"));
    if (ff == "relu") {
      EXPECT_TRUE(t.count("encoder.block.0.layer.1.DenseReluDense.wi.weight"));
      EXPECT_FALSE(t.count("lm_head.weight"));
    } else {
      EXPECT_TRUE(t.count("decoder.block.0.layer.2.DenseReluDense.wi_1.weight"));
      EXPECT_TRUE(t.count("lm_head.weight"));
    }

    // HF files may also carry the embedding copies and the unused cross-attention bias.
    t["encoder.embed_tokens.weight"] = t.at("shared.weight");
    t["decoder.embed_tokens.weight"] = t.at("shared.weight");
    t["decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight"] =
        torch::zeros({cfg.relative_attention_num_buckets, cfg.n_heads});
    write_safetensors(dir.file("model.safetensors"), t);

    HfT5Checkpoint info;
    T5 loaded = load_hf_t5(dir.str(), &info);
    EXPECT_EQ(info.config.feed_forward, ff);
    EXPECT_EQ(info.config.tie_word_embeddings, ff == "relu");
    torch::manual_seed(6);
    at::Tensor ids = torch::randint(0, cfg.vocab_size, {2, 9}, torch::kLong);
    at::Tensor dec = torch::randint(0, cfg.vocab_size, {2, 5}, torch::kLong);
    at::Tensor mask = torch::ones({2, 9}, torch::kLong);
    model->eval();
    loaded->eval();
    torch::NoGradGuard no_grad;
    EXPECT_EQ(max_abs_diff(model->forward(ids, mask, dec), loaded->forward(ids, mask, dec)), 0.0);

    t.erase("decoder.block.1.layer.1.EncDecAttention.k.weight");
    write_safetensors(dir.file("model.safetensors"), t);
    expect_user_error([&] { load_hf_t5(dir.str()); }, {"missing tensors", "decoder.block.1.layer.1.EncDecAttention.k.weight"});
    expect_user_error([&] { load_hf_decoder(dir.str()); }, {"model_type 't5' is not supported", "load_hf_t5"});
  }
}
