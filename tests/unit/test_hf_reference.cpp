// HF import against Hugging Face's own numbers. tests/fixtures/hf holds tiny gpt2, llama and t5
// models saved by transformers' save_pretrained, with the logits, token ids and generations HF
// computed for them (tools/hf_reference/make_fixtures.py wrote them; the versions are in each
// reference.json). Our round-trip tests (test_hf.cpp) only show that our writer and reader agree;
// these show that we read HF's layout and compute what HF computes.
#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "io/safetensors.h"
#include "model/decoder.h"
#include "model/generate.h"
#include "model/hf.h"
#include "model/t5.h"
#include "text/tokenizer.h"

using namespace engram::model;
using nlohmann::json;

namespace {

const std::string kHf = ENGRAM_FIXTURES "/hf/";

// Float32 through different kernels and summation orders: measured 1e-7..1.2e-5 of the logits'
// scale. A wrong map or formula is far above: even gelu for gelu_new gives 1.6e-4, a wrong T5
// relative_attention_max_distance 7e-2.
constexpr double kRelativeTolerance = 3e-5;

// max |ours - HF| relative to max |HF| (the scale of what is compared, so the tolerance means
// something), printed by the assertions below.
double relative_diff(const at::Tensor& ours, const at::Tensor& hf) {
  return (ours - hf).abs().max().item<double>() / hf.abs().max().item<double>();
}

json reference_json(const std::string& model) {
  std::ifstream in(kHf + model + "/reference.json");
  return json::parse(in);
}

at::Tensor reference_tensor(const std::string& model, const std::string& name) {
  auto contents = engram::io::read_safetensors(kHf + model + "/reference.safetensors");
  return contents.tensors.at(name);
}

at::Tensor ids_tensor(const std::vector<int64_t>& ids) {
  return torch::tensor(ids, torch::kLong).unsqueeze(0);
}

void expect_decoder_logits_match(const std::string& model_name) {
  Decoder model = load_hf_decoder(kHf + model_name);
  model->eval();
  torch::NoGradGuard no_grad;
  const json ref = reference_json(model_name);
  for (size_t i = 0; i < ref["ids"].size(); ++i) {
    const auto ids = ref["ids"][i].get<std::vector<int64_t>>();
    const at::Tensor expected = reference_tensor(model_name, "logits_" + std::to_string(i));
    const at::Tensor ours = model->forward(ids_tensor(ids)).logits[0];
    ASSERT_EQ(ours.sizes(), expected.sizes()) << model_name << " sequence " << i;
    EXPECT_LT(relative_diff(ours, expected), kRelativeTolerance) << model_name << " sequence " << i;
  }
}

using Rows = std::vector<std::vector<int32_t>>;

void expect_generations_match(const std::string& model_name) {
  Decoder model = load_hf_decoder(kHf + model_name);
  const json ref = reference_json(model_name);
  const auto prompts = ref["prompt_ids"].get<Rows>();
  const json& gens = ref["generations"];

  GenerateOptions options;
  options.max_new_tokens = 6;
  options.eos_id = ref["eos_id"].get<int32_t>();
  options.pad_id = 0;
  // Each prompt alone for the three strategies (HF's settings in make_fixtures.py).
  for (const std::string strategy : {"greedy", "beam", "diverse_beam"}) {
    GenerateOptions o = options;
    o.strategy = engram::core::parse_enum<GenerateOptions::Strategy>(strategy, "strategy");
    if (strategy == "beam") o.num_beams = 3;
    if (strategy == "diverse_beam") {
      o.num_beams = 4;
      o.num_beam_groups = 2;
      o.diversity_penalty = 0.5;
    }
    const auto expected = gens[strategy].get<Rows>();
    for (size_t p = 0; p < prompts.size(); ++p)
      EXPECT_EQ(generate(model, {prompts[p]}, o)[0], expected[p]) << model_name << " " << strategy << " prompt " << p;
  }
  // Both prompts in one batch (different lengths, left-padded): the same greedy continuations.
  GenerateOptions greedy = options;
  EXPECT_EQ(generate(model, prompts, greedy), gens["greedy_batched"].get<Rows>()) << model_name;
}

}  // namespace

TEST(HfReference, Gpt2LogitsEqualHfs) { expect_decoder_logits_match("gpt2"); }

TEST(HfReference, LlamaLogitsEqualHfs) { expect_decoder_logits_match("llama"); }

TEST(HfReference, Gpt2GenerationsEqualHfs) { expect_generations_match("gpt2"); }

TEST(HfReference, LlamaGenerationsEqualHfs) { expect_generations_match("llama"); }

TEST(HfReference, Gpt2ByteLevelBpeEncodesAsHfsTokenizer) {
  // The folder's vocab.json + merges.txt were trained and saved by HF tokenizers; the ids are
  // GPT2TokenizerFast's, including spaces, tabs, digits and multi-byte characters.
  const json ref = reference_json("gpt2");
  HfCheckpoint info;
  load_hf_decoder(kHf + "gpt2", &info);
  ASSERT_FALSE(info.tokenizer_path.empty());
  auto tokenizer = engram::text::load_tokenizer(info.tokenizer_path);
  for (size_t i = 0; i < ref["texts"].size(); ++i) {
    const std::string text = ref["texts"][i].get<std::string>();
    const auto expected = ref["ids"][i].get<std::vector<int32_t>>();
    EXPECT_EQ(tokenizer->encode(text), expected) << text;
    EXPECT_EQ(tokenizer->decode(expected), text);
  }
  EXPECT_EQ(tokenizer->eos_id(), ref["eos_id"].get<int32_t>());
}

TEST(HfReference, T5LogitsEqualHfsForBothFeedForwards) {
  // "t5": v1.0, relu, tied head (output scaled by d_model^-0.5); "t5_v11": gated-gelu, untied.
  // The encoder input is right-padded and longer than relative_attention_max_distance.
  for (const std::string name : {"t5", "t5_v11"}) {
    T5 model = load_hf_t5(kHf + name);
    model->eval();
    torch::NoGradGuard no_grad;
    const json ref = reference_json(name);
    auto as_tensor = [](const json& rows) {
      std::vector<at::Tensor> out;
      for (const auto& row : rows) out.push_back(torch::tensor(row.get<std::vector<int64_t>>(), torch::kLong));
      return torch::stack(out);
    };
    const at::Tensor logits = model->forward(as_tensor(ref["input_ids"]), as_tensor(ref["attention_mask"]),
                                             as_tensor(ref["decoder_input_ids"]));
    const at::Tensor expected = reference_tensor(name, "logits");
    ASSERT_EQ(logits.sizes(), expected.sizes()) << name;
    EXPECT_LT(relative_diff(logits, expected), kRelativeTolerance) << name;
  }
}
