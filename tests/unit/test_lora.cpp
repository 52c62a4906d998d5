// LoRA on model::Linear and on the decoder (SELF-PARAM).
#include <cmath>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "core/error.h"
#include "model/decoder.h"
#include "model/linear.h"

namespace engram::model {
namespace {

double max_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(torch::kDouble) - b.to(torch::kDouble)).abs().max().item<double>();
}

TEST(Linear, ForwardIsXWtPlusB) {
  torch::manual_seed(0);
  Linear lin(5, 3);
  at::Tensor x = torch::randn({2, 4, 5});
  at::Tensor expected = torch::einsum("bti,oi->bto", {x, lin->weight}) + lin->bias;
  EXPECT_LE(max_diff(lin(x), expected), 1e-6);
  Linear nob(5, 3, false);
  EXPECT_FALSE(nob->bias.defined());
  EXPECT_EQ(nob->named_parameters().size(), 1u);
}

TEST(Linear, LoraShapesInitAndFreezing) {
  torch::manual_seed(0);
  Linear lin(64, 32);
  at::Tensor x = torch::randn({3, 64});
  at::Tensor before = lin(x).detach();
  lin->add_lora(8, 32.0, 0.0);
  EXPECT_EQ(lin->lora_A.sizes(), at::IntArrayRef({8, 64}));
  EXPECT_EQ(lin->lora_B.sizes(), at::IntArrayRef({32, 8}));
  EXPECT_DOUBLE_EQ(lin->lora_scale(), 4.0);
  EXPECT_EQ(lin->lora_B.abs().sum().item<double>(), 0.0);
  // Kaiming-uniform(a = sqrt 5) on [r, in]: U(-1/sqrt(in), 1/sqrt(in)).
  const double bound = 1.0 / std::sqrt(64.0);
  EXPECT_LE(lin->lora_A.abs().max().item<double>(), bound + 1e-7);
  EXPECT_GT(lin->lora_A.abs().max().item<double>(), 0.8 * bound);
  EXPECT_LE(max_diff(lin(x), before), 0.0);  // B = 0: output unchanged
  EXPECT_FALSE(lin->weight.requires_grad());
  EXPECT_FALSE(lin->bias.requires_grad());
  EXPECT_TRUE(lin->lora_A.requires_grad());
  EXPECT_TRUE(lin->lora_B.requires_grad());
  std::set<std::string> names;
  for (auto& item : lin->named_parameters()) names.insert(item.key());
  EXPECT_EQ(names, (std::set<std::string>{"weight", "bias", "lora_A.weight", "lora_B.weight"}));
  lin->remove_lora();
  EXPECT_EQ(lin->named_parameters().size(), 2u);
  EXPECT_TRUE(lin->weight.requires_grad());
  EXPECT_TRUE(lin->bias.requires_grad());
}

TEST(Linear, LoraForwardFormula) {
  torch::manual_seed(1);
  Linear lin(6, 4);
  lin->add_lora(2, 3.0, 0.0);
  {
    torch::NoGradGuard no_grad;
    lin->lora_B.normal_();
  }
  at::Tensor x = torch::randn({5, 6});
  at::Tensor expected = x.matmul(lin->weight.t()) + lin->bias + 1.5 * x.matmul(lin->lora_A.t()).matmul(lin->lora_B.t());
  EXPECT_LE(max_diff(lin(x), expected), 1e-5);
  // Dropout acts on the adapter input only: in eval mode it is off.
  Linear drop(6, 4);
  drop->add_lora(2, 3.0, 0.5);
  {
    torch::NoGradGuard no_grad;
    drop->lora_B.normal_();
  }
  drop->eval();
  EXPECT_LE(max_diff(drop(x), drop(x)), 0.0);
  drop->train();
  EXPECT_GT(max_diff(drop(x), drop(x)), 1e-4);
}

TEST(Linear, MergeUnmerge) {
  torch::manual_seed(2);
  Linear lin(16, 8);
  lin->add_lora(4, 8.0, 0.0);
  {
    torch::NoGradGuard no_grad;
    lin->lora_B.normal_();
  }
  lin->eval();
  at::Tensor x = torch::randn({3, 16});
  at::Tensor w0 = lin->weight.clone();
  at::Tensor unmerged = lin(x).detach();
  lin->merge();
  EXPECT_TRUE(lin->lora_merged());
  EXPECT_LE(max_diff(lin->weight, w0 + 2.0 * lin->lora_B.matmul(lin->lora_A)), 1e-6);
  EXPECT_LE(max_diff(lin(x), unmerged), 1e-5);
  lin->merge();  // no-op
  lin->unmerge();
  EXPECT_LE(max_diff(lin->weight, w0), 1e-6);
  EXPECT_LE(max_diff(lin(x), unmerged), 1e-5);
}

DecoderConfig llama_small() {
  DecoderConfig sizes;
  sizes.vocab_size = 31;
  sizes.d_model = 16;
  sizes.n_layers = 2;
  sizes.n_heads = 2;
  sizes.d_ff = 24;
  return DecoderConfig::preset("llama", sizes);
}

TEST(DecoderLora, AdaptedNamesAndTrainableParameters) {
  torch::manual_seed(0);
  Decoder m(llama_small());
  const int64_t total = m->num_parameters();
  std::vector<std::string> names = m->add_lora({"q", "k", "v", "gate", "up", "down"}, 8, 32.0, 0.1);
  std::vector<std::string> expected;
  for (int l = 0; l < 2; ++l) {
    const std::string b = "blocks." + std::to_string(l) + ".";
    for (const char* s : {"attn.q", "attn.k", "attn.v", "mlp.up", "mlp.gate", "mlp.down"}) expected.push_back(b + s);
  }
  EXPECT_EQ(std::set<std::string>(names.begin(), names.end()), std::set<std::string>(expected.begin(), expected.end()));
  EXPECT_EQ(names.size(), expected.size());
  // r (in + out) per adapted linear: q,k,v 8*(16+16); up, gate 8*(16+24); down 8*(24+16).
  const int64_t lora = 2 * (3 * 8 * 32 + 3 * 8 * 40);
  EXPECT_EQ(m->num_parameters(true), lora);
  EXPECT_EQ(m->num_parameters(), total + lora);
  for (auto& item : m->named_parameters()) {
    const bool adapter = item.key().find(".lora_") != std::string::npos;
    EXPECT_EQ(item.value().requires_grad(), adapter) << item.key();
  }
  EXPECT_TRUE(m->named_parameters().contains("blocks.1.mlp.down.lora_B.weight"));
  EXPECT_FALSE(m->named_parameters().contains("blocks.0.attn.o.lora_A.weight"));
  m->remove_lora();
  EXPECT_EQ(m->num_parameters(), total);
  EXPECT_EQ(m->num_parameters(true), total);  // flags restored
  EXPECT_THROW(m->add_lora({"q_proj"}, 8, 32.0, 0.0), core::UserError);
  EXPECT_THROW(m->add_lora({"q"}, 0, 32.0, 0.0), core::UserError);
}

TEST(DecoderLora, TrainingChangesOnlyAdaptersAndMergeMatches) {
  torch::manual_seed(3);
  Decoder m(llama_small());
  m->eval();
  at::Tensor ids = torch::randint(0, 31, {2, 7}, torch::kLong);
  at::Tensor before;
  {
    torch::NoGradGuard no_grad;
    before = m->forward(ids).logits;
  }
  std::map<std::string, at::Tensor> base;
  for (auto& item : m->named_parameters()) base[item.key()] = item.value().detach().clone();
  m->add_lora({"q", "v", "up", "down"}, 4, 8.0, 0.0);
  {
    torch::NoGradGuard no_grad;
    EXPECT_LE(max_diff(m->forward(ids).logits, before), 0.0) << "B = 0 leaves the output unchanged";
  }
  std::vector<at::Tensor> trainable;
  for (auto& t : m->parameters())
    if (t.requires_grad()) trainable.push_back(t);
  torch::optim::SGD opt(trainable, torch::optim::SGDOptions(0.5));
  at::Tensor target = torch::randint(0, 31, {14}, torch::kLong);
  for (int step = 0; step < 5; ++step) {
    opt.zero_grad();
    at::Tensor loss = torch::nn::functional::cross_entropy(m->forward(ids).logits.view({14, 31}), target);
    loss.backward();
    opt.step();
  }
  for (auto& item : m->named_parameters()) {
    if (item.key().find(".lora_") != std::string::npos) continue;
    EXPECT_TRUE(torch::equal(item.value(), base.at(item.key()))) << item.key() << " changed";
  }
  EXPECT_GT(m->named_parameters()["blocks.0.attn.q.lora_B.weight"].abs().max().item<double>(), 0.0);

  torch::NoGradGuard no_grad;
  at::Tensor adapted = m->forward(ids).logits;
  EXPECT_GT(max_diff(adapted, before), 1e-4) << "the adapters changed the output";
  std::map<std::string, at::Tensor> premerge;
  for (auto& item : m->named_parameters()) premerge[item.key()] = item.value().clone();
  m->merge_lora();
  EXPECT_LE(max_diff(m->forward(ids).logits, adapted), 1e-5);
  EXPECT_GT(max_diff(m->named_parameters()["blocks.1.mlp.up.weight"], premerge["blocks.1.mlp.up.weight"]), 0.0);
  m->unmerge_lora();
  for (auto& item : m->named_parameters())
    EXPECT_LE(max_diff(item.value(), premerge.at(item.key())), 1e-6) << item.key();
  EXPECT_LE(max_diff(m->forward(ids).logits, adapted), 1e-5);
  // Merge, drop the adapters: the merged weights keep the adapted behaviour (SELF-PARAM's
  // "merge + fresh LoRA").
  m->merge_lora();
  m->remove_lora();
  EXPECT_LE(max_diff(m->forward(ids).logits, adapted), 1e-5);
  std::vector<std::string> again = m->add_lora({"q"}, 2, 4.0, 0.0);
  EXPECT_EQ(again.size(), 2u);
  EXPECT_LE(max_diff(m->forward(ids).logits, adapted), 1e-5);
}

}  // namespace
}  // namespace engram::model
