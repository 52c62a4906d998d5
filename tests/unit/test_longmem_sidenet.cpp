// LongMem's SideNet and the assembled system (specs/longmem.md 1.2, 1.4, 1.5, 5): side layers start
// as the backbone's blocks r i + r - 1, the cross-network residuals add up to the backbone's last
// state, an empty memory leaves the SideNet as without one, a segment never reads itself (retrieve
// before write), only the SideNet and its gate learn, the memory's state and the SideNet's file
// round-trip.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <map>

#include "core/error.h"
#include "io/h5file.h"
#include "methods/longmem/sidenet.h"
#include "methods/longmem/system.h"
#include "model/copy.h"

namespace engram::longmem {
namespace {

model::Decoder tiny_backbone(const std::string& preset, int64_t layers, uint64_t seed = 3) {
  model::DecoderConfig sizes;
  sizes.vocab_size = 50;
  sizes.d_model = 16;
  sizes.n_layers = layers;
  sizes.n_heads = 2;
  sizes.d_ff = 32;
  sizes.max_positions = 64;
  torch::manual_seed(seed);
  model::Decoder d(model::DecoderConfig::preset(preset, sizes));
  d->eval();
  return d;
}

at::Tensor ids(int64_t batch, int64_t length, uint64_t seed) {
  torch::manual_seed(seed);
  return torch::randint(0, 50, {batch, length}, torch::kLong);
}

std::map<std::string, at::Tensor> by_name(const std::vector<std::pair<std::string, at::Tensor>>& named) {
  return {named.begin(), named.end()};
}

TEST(LongMemSideNet, MemoryLayerDefaultsFollowTheReference) {
  SideNetConfig c;
  model::DecoderConfig backbone;
  backbone.n_layers = 24;
  EXPECT_EQ(c.resolved(backbone).memory_layer, 17);  // the reference: block 17, side layer 8
  EXPECT_EQ(c.resolved(backbone).memory_side_layer(), 8);
  backbone.n_layers = 8;
  EXPECT_EQ(c.resolved(backbone).memory_layer, 5);  // spec 5's small model
  backbone.n_layers = 2;
  c.reduction = 1;
  EXPECT_EQ(c.resolved(backbone).memory_layer, 1);
  c.memory_layer = 2;
  EXPECT_THROW(c.resolved(backbone), core::UserError);
  c.memory_layer = -1;
  c.reduction = 3;
  EXPECT_THROW(c.resolved(backbone), core::UserError);
}

TEST(LongMemSideNet, SideLayersStartAsEveryOtherBackboneBlockAndTheGateAtZero) {
  model::Decoder backbone = tiny_backbone("alibi-parallel", 4);
  SideNetConfig config;  // reduction 2: side layers 0, 1 from blocks 1, 3
  SideNet side(backbone, config);
  const auto source = by_name(model::named_weights(backbone));
  const auto weights = by_name(side->named_weights());
  // A parallel block: ln1 (2), q k v o without bias (4), up and down with bias (4). Two of them,
  // ln_f (2) and the memory layer's gate.
  EXPECT_EQ(weights.size(), 2 * 10 + 2 + 1);
  for (const auto& [name, w] : weights) {
    if (name == "layers.1.gate") {
      EXPECT_TRUE(torch::equal(w, torch::zeros({2})));
      continue;
    }
    std::string from = name;
    if (name.rfind("layers.0.", 0) == 0) from = "blocks.1." + name.substr(9);
    if (name.rfind("layers.1.", 0) == 0) from = "blocks.3." + name.substr(9);
    ASSERT_TRUE(source.count(from)) << name;
    EXPECT_TRUE(torch::equal(w, source.at(from))) << name;
  }
  EXPECT_EQ(side->config().memory_layer, 3);
  EXPECT_FALSE(weights.count("layers.0.gate"));
}

TEST(LongMemSideNet, CrossResidualsAddUpToTheBackbonesLastState) {
  // With every side layer's attention and MLP output zeroed, x = H[0] + sum (H[i+1] - H[i]) = H[L]:
  // the logits are the head of the side norm of H[L].
  model::Decoder backbone = tiny_backbone("gpt2", 2);
  SideNetConfig config;
  config.reduction = 1;
  config.dropout = 0;
  SideNet side(backbone, config);
  {
    torch::NoGradGuard no_grad;
    for (auto& [name, w] : side->named_weights())
      if (name.find(".o.") != std::string::npos || name.find(".down.") != std::string::npos) w.zero_();
  }
  const at::Tensor input = ids(2, 7, 1);
  const BackboneStates states = run_backbone(backbone, input, side->config().memory_layer);
  const at::Tensor logits = side->forward(states, nullptr).logits;
  const auto w = by_name(side->named_weights());
  const at::Tensor expected =
      at::linear(at::layer_norm(states.hidden[2], {16}, w.at("ln_f.weight"), w.at("ln_f.bias"), 1e-5),
                 by_name(model::named_weights(backbone)).at("wte.weight"));
  EXPECT_TRUE(torch::allclose(logits, expected, 1e-5, 1e-5));
}

TEST(LongMemSystem, ASegmentNeverReadsItselfAndLaterSegmentsReadTheMemory) {
  for (const std::string preset : {"alibi-parallel", "gpt2", "llama"}) {
    SideNetConfig config;
    config.reduction = 1;
    config.dropout = 0;
    config.retrieve_tokens = 8;
    LongMem system(tiny_backbone(preset, 2), config, 4, 64);
    system.sidenet()->eval();
    torch::NoGradGuard no_grad;
    const at::Tensor first = ids(1, 16, 2), second = ids(1, 16, 3);
    const at::Tensor alone = system.forward(first, {true, false, false}).side_logits;
    // Retrieve before write: the first segment meets an empty memory, so it reads as without one.
    const SegmentOutput out = system.forward(first, {true, true, true});
    EXPECT_TRUE(torch::allclose(out.side_logits, alone, 1e-6, 1e-6)) << preset;
    EXPECT_FALSE(out.chunk_ids.defined()) << preset;
    EXPECT_EQ(system.memory().size(), 4) << preset;
    // The next segment reads the first one's chunks (and changes its output by them).
    const SegmentOutput next = system.forward(second, {true, true, false});
    ASSERT_TRUE(next.chunk_ids.defined()) << preset;
    EXPECT_EQ(next.chunk_ids.sizes(), at::IntArrayRef({1, 16, 2, 2})) << preset;
    EXPECT_TRUE(next.chunk_ids.ge(0).all().item<bool>()) << preset;
    EXPECT_FALSE(torch::allclose(next.side_logits, system.forward(second, {true, false, false}).side_logits, 1e-4,
                                 1e-4))
        << preset;
    EXPECT_EQ(system.memory().size(), 4) << "write off: nothing added";
    // The backbone's logits do not depend on the memory.
    EXPECT_TRUE(torch::equal(next.backbone_logits, system.forward(second, {false, false, false}).backbone_logits));
  }
}

TEST(LongMemSystem, OnlyTheSideNetAndItsGateLearn) {
  SideNetConfig config;
  config.reduction = 1;
  LongMem system(tiny_backbone("gpt2", 2), config, 4, 64);
  system.sidenet()->train();
  system.forward(ids(2, 16, 4), {false, false, true});
  const SegmentOutput out = system.forward(ids(2, 16, 5), {true, true, true});
  out.side_logits.logsumexp(-1).sum().backward();
  for (const auto& p : system.backbone()->parameters()) EXPECT_FALSE(p.grad().defined());
  for (const auto& [name, p] : system.sidenet()->named_weights()) {
    ASSERT_TRUE(p.grad().defined()) << name;
    EXPECT_GT(p.grad().abs().sum().item<double>(), 0.0) << name;
  }
}

TEST(LongMemSystem, MemoryStateAndSideNetFileRoundTrip) {
  SideNetConfig config;
  config.reduction = 1;
  config.dropout = 0;
  LongMem system(tiny_backbone("llama", 2), config, 4, 32);
  system.sidenet()->eval();
  torch::NoGradGuard no_grad;
  {
    for (auto& [name, w] : system.sidenet()->named_weights()) w.add_(0.01);  // not the backbone's copy any more
  }
  for (uint64_t s = 10; s < 13; ++s) system.forward(ids(1, 16, s), {false, false, true});  // 12 chunks: 8 kept
  ASSERT_EQ(system.memory().size(), 8);
  const at::Tensor probe = ids(1, 16, 20);
  const SegmentOutput before = system.forward(probe, {true, true, false});

  ChunkMemory copy(system.memory().shape());
  copy.restore(system.memory().state());
  const at::Tensor queries = torch::randn({5, 2, 8});
  EXPECT_TRUE(torch::equal(copy.retrieve(queries, 2).chunk_ids, system.memory().retrieve(queries, 2).chunk_ids));
  EXPECT_EQ(copy.written(), 12);
  EXPECT_THROW(copy.restore(torch::zeros({3}, torch::kDouble)), core::UserError);

  const std::string path = ::testing::TempDir() + "longmem_sidenet.h5";
  {
    io::H5File file(path, io::H5File::Mode::Create);
    system.save(file, "/sidenet");
  }
  io::H5File file(path, io::H5File::Mode::Read);
  LongMem loaded = LongMem::load(system.backbone(), file, "/sidenet");
  loaded.sidenet()->eval();
  loaded.memory().restore(system.memory().state());
  const SegmentOutput after = loaded.forward(probe, {true, true, false});
  EXPECT_TRUE(torch::allclose(after.side_logits, before.side_logits, 1e-6, 1e-6));
  EXPECT_TRUE(torch::equal(after.chunk_ids, before.chunk_ids));
  // A SideNet made for another backbone is refused.
  EXPECT_THROW(LongMem::load(tiny_backbone("llama", 4), file, "/sidenet"), core::UserError);
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace engram::longmem
