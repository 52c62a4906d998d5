#include <gtest/gtest.h>

#include <set>

#include <ATen/ATen.h>

#include "core/error.h"
#include "data/collate.h"
#include "data/document.h"
#include "data/sampler.h"
#include "data/stream_batcher.h"
#include "text/tokenizer.h"

using namespace engram;

TEST(DistributedSampler, RanksCoverTheDatasetWithEqualCounts) {
  for (int64_t n : {1, 7, 10, 101}) {
    for (int w : {1, 2, 3, 4}) {
      std::multiset<int64_t> seen;
      for (int r = 0; r < w; ++r) {
        data::DistributedSampler s(n, r, w, 99);
        EXPECT_EQ(s.per_rank(), (n + w - 1) / w);
        auto mine = s.epoch_indices(0);
        seen.insert(mine.begin(), mine.end());
      }
      std::set<int64_t> distinct(seen.begin(), seen.end());
      EXPECT_EQ(static_cast<int64_t>(distinct.size()), n);            // every index used
      EXPECT_EQ(static_cast<int64_t>(seen.size()), (n + w - 1) / w * w);  // padding only wraps
    }
  }
}

TEST(DistributedSampler, ShuffledPerEpochAndDeterministic) {
  data::DistributedSampler a(100, 0, 2, 5), b(100, 0, 2, 5), c(100, 0, 2, 6);
  EXPECT_EQ(a.epoch_indices(0), b.epoch_indices(0));
  EXPECT_NE(a.epoch_indices(0), a.epoch_indices(1));
  EXPECT_NE(a.epoch_indices(0), c.epoch_indices(0));
  data::DistributedSampler ordered(10, 1, 2, 5, false);
  EXPECT_EQ(ordered.epoch_indices(3), (std::vector<int64_t>{1, 3, 5, 7, 9}));
}

TEST(DistributedSampler, ResumesFromItsCursor) {
  data::DistributedSampler full(23, 1, 3, 11);
  std::vector<int64_t> reference;
  for (int k = 0; k < 30; ++k) reference.push_back(full.next());  // crosses three epochs

  data::DistributedSampler first(23, 1, 3, 11);
  std::vector<int64_t> resumed;
  for (int k = 0; k < 13; ++k) resumed.push_back(first.next());
  data::SamplerState saved = first.state();
  data::DistributedSampler second(23, 1, 3, 11);
  second.restore(saved);
  for (int k = 13; k < 30; ++k) resumed.push_back(second.next());
  EXPECT_EQ(resumed, reference);
  EXPECT_EQ(saved.epoch, 1);  // 8 per rank per epoch: 13 = 8 + 5
  EXPECT_EQ(saved.position, 5);
}

namespace {
// A stand-in tokenizer: one id per byte (+10), EOS = 1, PAD = 0.
class ByteTokenizer : public text::Tokenizer {
 public:
  std::vector<int32_t> encode(const std::string& s) const override {
    std::vector<int32_t> ids;
    for (unsigned char c : s) ids.push_back(static_cast<int32_t>(c) + 10);
    return ids;
  }
  std::string decode(const std::vector<int32_t>& ids) const override {
    std::string s;
    for (int32_t id : ids)
      if (id >= 10) s += static_cast<char>(id - 10);
    return s;
  }
  int32_t vocab_size() const override { return 266; }
  int32_t bos_id() const override { return -1; }
  int32_t eos_id() const override { return 1; }
  int32_t pad_id() const override { return 0; }
  std::string name() const override { return "bytes"; }
};
}  // namespace

TEST(Collate, AnswerOnlyLabelsShiftedByOne) {
  ByteTokenizer tok;
  data::Example e = data::encode_qa(tok, data::PromptFormat::ContextQuestionAnswer, "c", "q", "ab", 100);
  std::string prompt = "Context: c Question: q Answer:";
  ASSERT_EQ(e.ids.size(), prompt.size() + 4);  // " ab" + EOS
  EXPECT_EQ(tok.decode(e.ids), prompt + " ab");
  data::Batch batch = data::collate({e}, tok.pad_id());
  auto labels = batch.labels[0];
  const auto p = static_cast<int64_t>(prompt.size());
  for (int64_t t = 0; t < p - 1; ++t) EXPECT_EQ(labels[t].item<int64_t>(), data::kIgnoreLabel) << t;
  EXPECT_EQ(labels[p - 1].item<int64_t>(), ' ' + 10);  // the last prompt position predicts " "
  EXPECT_EQ(labels[p].item<int64_t>(), 'a' + 10);
  EXPECT_EQ(labels[p + 2].item<int64_t>(), 1);         // EOS
  EXPECT_EQ(labels[p + 3].item<int64_t>(), data::kIgnoreLabel);
}

TEST(Collate, PaddingSidesAndMasks) {
  ByteTokenizer tok;
  std::vector<data::Example> examples = {data::encode_text(tok, "abcd", 100)[0], data::encode_text(tok, "x", 100)[0]};
  data::Batch right = data::collate(examples, 0, data::PadSide::Right);
  EXPECT_EQ(right.input_ids.sizes(), (std::vector<int64_t>{2, 5}));
  EXPECT_TRUE(right.attention_mask[1].equal(at::tensor({1, 1, 0, 0, 0}, at::kLong)));
  data::Batch left = data::collate(examples, 0, data::PadSide::Left);
  EXPECT_TRUE(left.attention_mask[1].equal(at::tensor({0, 0, 0, 1, 1}, at::kLong)));
  EXPECT_EQ(left.input_ids[1][3].item<int64_t>(), 'x' + 10);
  EXPECT_EQ(left.labels[1][3].item<int64_t>(), 1);  // x predicts EOS
}

TEST(Collate, LongPromptsLoseTheirStart) {
  ByteTokenizer tok;
  data::Example e = data::encode_qa(tok, data::PromptFormat::QuestionAnswer, "", "what?", "z", 12);
  EXPECT_EQ(e.ids.size(), 12u);
  EXPECT_EQ(tok.decode(e.ids), "? Answer: z");
  EXPECT_EQ(data::encode_text(tok, std::string(25, 'a'), 10).size(), 3u);  // 26 ids incl. EOS
}

TEST(Collate, ReadingLayoutIsPretrainingsWithoutHeldOutQuestions) {
  data::Document doc;
  doc.text = "Ann bakes.";
  doc.qa = {{"What does Ann do?", {"bakes"}, false}, {"Ann's trade?", {"baker"}, true}, {"Who bakes?", {"Ann"}, false}};
  const std::vector<std::pair<std::string, bool>> expected = {{"Context: Ann bakes. Question: What does Ann do? Answer:", false},
                                                              {" bakes\n", true},
                                                              {"Question: Who bakes? Answer:", false},
                                                              {" Ann\n", true}};
  EXPECT_EQ(data::reading_layout(doc), expected);
  doc.qa.clear();
  EXPECT_TRUE(data::reading_layout(doc).empty());
}

TEST(StreamBatcher, RowsContinueTheirPassage) {
  std::vector<int32_t> tokens(103);
  for (int i = 0; i < 103; ++i) tokens[i] = i;
  data::StreamBatcher batcher(tokens, 2, 10);  // passages of 51 tokens: 5 steps
  EXPECT_EQ(batcher.steps(), 5);
  auto [x0, y0] = batcher.step(0);
  auto [x1, y1] = batcher.step(1);
  EXPECT_EQ(x0[0][0].item<int64_t>(), 0);
  EXPECT_EQ(x0[1][0].item<int64_t>(), 51);
  EXPECT_EQ(x1[0][0].item<int64_t>(), 10);
  EXPECT_EQ(y0[0][9].item<int64_t>(), 10);
  EXPECT_TRUE(y1.equal(x1 + 1));
  EXPECT_THROW(data::StreamBatcher(std::vector<int32_t>(5, 0), 2, 10), core::UserError);
}
