// SELF-PARAM's pieces (specs/selfparam.md 5, C7): the KL and its slices, its gradient, targets,
// and an injection that moves the student toward the teacher reading the document.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <csignal>
#include <filesystem>
#include <fstream>

#include "../common/selfparam_fixture.h"
#include "core/signals.h"
#include "dist/local_communicator.h"
#include "methods/selfparam/distill.h"
#include "methods/selfparam/inject.h"
#include "methods/selfparam/resume.h"
#include "methods/selfparam/targets.h"
#include "methods/selfparam/teacher_cache.h"
#include "methods/selfparam/unrelated.h"
#include "model/copy.h"
#include "model/generate.h"
#include "model/hf.h"

namespace engram::selfparam {
namespace {

using Reduction = SelfParamOptions::Reduction;

TEST(SelfParamSlices, WithBosTheyAreTheReferences) {
  const Slices s = target_slices(1, 7, 5);  // teacher [Lx, Lx + n), student [0, n)
  EXPECT_EQ(s.teacher_begin, 7);
  EXPECT_EQ(s.student_begin, 0);
  EXPECT_EQ(s.length, 5);
}

TEST(SelfParamSlices, WithoutBosTheFirstTargetTokenIsNotPredicted) {
  const Slices s = target_slices(0, 7, 5);
  EXPECT_EQ(s.teacher_begin, 7);  // position 7 (the target's first token) predicts its second
  EXPECT_EQ(s.student_begin, 0);
  EXPECT_EQ(s.length, 4);
  EXPECT_EQ(target_slices(0, 3, 1).length, 0);
}

TEST(SelfParamSlices, EmptyContextGivesTheSameRows) {
  for (int64_t start : {0, 1}) {
    const Slices s = target_slices(start, 0, 6);
    EXPECT_EQ(s.teacher_begin, s.student_begin) << start;
  }
  // With an empty context the teacher's and the student's inputs and rows are the same tensors.
  auto tok = selfparam_fixture::tokenizer();
  model::Decoder m = selfparam_fixture::tiny_decoder(tok->vocab_size());
  DistillExample e{{}, tok->encode("Question: who is it? Answer: Bob\n")};
  const at::Tensor loss = distillation_loss(m, m, {e}, {}, 1.0, Reduction::Token);
  EXPECT_NEAR(loss.item<double>(), 0.0, 1e-7);
}

TEST(SelfParamKl, ZeroWhenStudentEqualsTeacherAndPositiveOtherwise) {
  torch::manual_seed(1);
  at::Tensor logits = torch::randn({4, 11});
  EXPECT_NEAR(distillation_kl(logits, logits.clone(), 1.0, Reduction::Mean).item<double>(), 0.0, 1e-7);
  EXPECT_GT(distillation_kl(logits, torch::randn({4, 11}), 1.0, Reduction::Mean).item<double>(), 1e-4);
}

TEST(SelfParamKl, MatchesTheDefinitionWithTemperatureAndReduction) {
  torch::manual_seed(2);
  at::Tensor t = torch::randn({3, 5}, torch::kDouble), s = torch::randn({3, 5}, torch::kDouble);
  const double T = 2.0;
  at::Tensor p = torch::softmax(t / T, -1), q = torch::softmax(s / T, -1);
  const double kl = (p * (p.log() - q.log())).sum().item<double>();
  EXPECT_NEAR(distillation_kl(t, s, T, Reduction::Mean).item<double>(), T * T * kl / 15.0, 1e-5);
  EXPECT_NEAR(distillation_kl(t, s, T, Reduction::Token).item<double>(), T * T * kl / 3.0, 1e-5);
}

TEST(SelfParamKl, GradientIsQMinusPOverNV) {
  torch::manual_seed(3);
  const int64_t n = 6, V = 9;
  at::Tensor t = torch::randn({n, V});
  at::Tensor s = torch::randn({n, V}).set_requires_grad(true);
  distillation_kl(t, s, 1.0, Reduction::Mean).backward();
  at::Tensor expected = (torch::softmax(s.detach(), -1) - torch::softmax(t, -1)) / static_cast<double>(n * V);
  EXPECT_LE((s.grad() - expected).abs().max().item<double>(), 1e-7);
}

TEST(SelfParamKl, TeacherGetsNoGradient) {
  auto tok = selfparam_fixture::tokenizer();
  model::Decoder teacher = selfparam_fixture::tiny_decoder(tok->vocab_size(), 1);
  model::Decoder student = selfparam_fixture::tiny_decoder(tok->vocab_size(), 2);
  DistillExample e{tok->encode("Context: Bob lives in Paris."), tok->encode("Question: where? Answer: Paris\n")};
  distillation_loss(teacher, student, {e}, {}, 1.0, Reduction::Mean).backward();
  for (const auto& p : teacher->parameters()) EXPECT_FALSE(p.grad().defined());
  int64_t with_grad = 0;
  for (const auto& p : student->parameters()) with_grad += p.grad().defined() ? 1 : 0;
  EXPECT_GT(with_grad, 0);
}

TEST(SelfParamKl, ABatchIsTheMeanOfItsExamples) {
  // Examples of different lengths share one padded forward pass; padding must change nothing.
  auto tok = selfparam_fixture::tokenizer();
  model::Decoder teacher = selfparam_fixture::tiny_decoder(tok->vocab_size(), 1);
  model::Decoder student = selfparam_fixture::tiny_decoder(tok->vocab_size(), 2);
  const std::vector<DistillExample> examples = {
      {tok->encode("Context: Bob lives in Paris."), tok->encode("Question: where? Answer: Paris\n")},
      {tok->encode("Context: Ann"), tok->encode("Question: What is the job of Ann, the woman? Answer: baker\n")},
      {{}, tok->encode("Unrelated text with no context at all")}};
  torch::NoGradGuard no_grad;
  for (auto reduction : {Reduction::Mean, Reduction::Token}) {
    double sum = 0;
    for (const auto& e : examples) sum += distillation_loss(teacher, student, {e}, {}, 1.0, reduction).item<double>();
    EXPECT_NEAR(distillation_loss(teacher, student, examples, {}, 1.0, reduction).item<double>(), sum / 3, 1e-6 * sum);
    double ce = 0;
    for (const auto& e : examples) ce += sentence_cross_entropy(student, {e}, {}).item<double>();
    EXPECT_NEAR(sentence_cross_entropy(student, examples, {}).item<double>(), ce / 3, 1e-5);
  }
}

TEST(SelfParamTargets, ParsesCompletePairsOnly) {
  auto pairs = parse_qa_pairs("Question: Where does Bob live? Answer:  Paris\nQuestion: What is his job? Answer: baker\n"
                              "Question: no answer here\nQuestion: cut off Answer: car");
  ASSERT_EQ(pairs.size(), 2u);
  EXPECT_EQ(pairs[0], "Question: Where does Bob live? Answer: Paris\n");
  EXPECT_EQ(pairs[1], "Question: What is his job? Answer: baker\n");
  EXPECT_TRUE(parse_qa_pairs("Question:  Answer: x\n").empty());
}

TEST(SelfParamTargets, QuestionsCompareNormalised) {
  EXPECT_EQ(normalize_question("  Where does  Bob live? "), "where does bob live");
  EXPECT_EQ(question_of_pair("Question: Where does Bob live? Answer: Paris\n"), "where does bob live");
}

TEST(SelfParamTargets, AnswerIsEncodedApartAsPretrainingLaysItOut) {
  auto tok = selfparam_fixture::tokenizer();
  auto ids = encode_target(*tok, "Question: where? Answer: Paris\n");
  auto expected = tok->encode("Question: where? Answer:");
  for (int32_t id : tok->encode(" Paris\n")) expected.push_back(id);
  EXPECT_EQ(ids, expected);
  EXPECT_EQ(encode_target(*tok, "Context: plain text"), tok->encode("Context: plain text"));
}

TEST(SelfParamTargets, SampledTargetsAreDrawnPerDocumentAndSkipExcludedQuestions) {
  auto tok = selfparam_fixture::tokenizer();
  model::Decoder m = selfparam_fixture::tiny_decoder(tok->vocab_size());
  auto comm = dist::make_local_communicator(std::chrono::seconds(60));
  SelfParamOptions o = selfparam_fixture::quick_options();
  o.epochs = 2, o.per_epoch = 2, o.sample_tokens = 8;
  // A random model rarely writes a whole pair: documents may end up empty, and are counted.
  TargetSet t = sample_targets(m, *tok, {"Bob lives in Paris.", "Ann is a baker."}, {}, o, *comm);
  ASSERT_EQ(t.per_document.size(), 2u);
  for (const auto& list : t.per_document) EXPECT_TRUE(list.empty() || list.size() == 4u);
  EXPECT_EQ(t.empty_documents, static_cast<int64_t>(t.per_document[0].empty()) + static_cast<int64_t>(t.per_document[1].empty()));
}

TEST(GenerateSample, SameSeedSameTokensOtherSeedOthers) {
  auto tok = selfparam_fixture::tokenizer();
  model::Decoder m = selfparam_fixture::tiny_decoder(tok->vocab_size());
  model::GenerateOptions g;
  g.strategy = model::GenerateOptions::Strategy::Sample;
  g.max_new_tokens = 12;
  g.seed = 5;
  const std::vector<std::vector<int32_t>> prompts = {tok->encode("Hello there"), tok->encode("Hello there")};
  auto a = model::generate(m, prompts, g), b = model::generate(m, prompts, g);
  EXPECT_EQ(a, b);
  EXPECT_NE(a[0], a[1]);  // two rows of one call draw apart
  g.temperature = 0;
  EXPECT_THROW(g.validate(), core::UserError);
}

double target_kl(model::Decoder& teacher, model::Decoder& student, const DistillExample& e) {
  torch::NoGradGuard no_grad;
  return distillation_loss(teacher, student, {e}, {}, 1.0, Reduction::Token).item<double>();
}

TEST(SelfParamInject, StudentLearnsToAnswerAsTheTeacherReadingTheDocumentWithNoExtraParameter) {
  auto tok = selfparam_fixture::tokenizer();
  model::Decoder model = selfparam_fixture::tiny_decoder(tok->vocab_size());
  model::Decoder original = model::frozen_copy(model);
  const int64_t parameters = model->num_parameters();
  const std::vector<std::string> docs = {"Bob lives in Paris and bakes bread."};
  TargetSet targets;
  targets.per_document = {std::vector<std::string>(30, "Question: Where does Bob live? Answer: Paris\n")};
  const DistillExample e{tok->encode("Context: " + docs[0]), encode_target(*tok, targets.per_document[0][0])};
  const double before = target_kl(original, model, e);
  auto comm = dist::make_local_communicator(std::chrono::seconds(60));
  InjectionInputs in;
  in.tokenizer = tok.get();
  in.documents = &docs;
  in.targets = &targets;
  SelfParamOptions o = selfparam_fixture::quick_options();
  InjectionReport r = inject(model, in, o, Objective::Distill, *comm);
  EXPECT_EQ(r.items, 30);
  EXPECT_EQ(r.steps, 30);
  const double after = target_kl(original, model, e);
  EXPECT_GT(before, 1e-3);
  EXPECT_LT(after, 0.2 * before) << before << " -> " << after;
  EXPECT_EQ(model->num_parameters(), parameters);  // LoRA merged and removed
  for (const auto& p : model->parameters()) EXPECT_TRUE(p.requires_grad());  // flags as they were
  EXPECT_FALSE(model->is_training());
}

TEST(SelfParamInject, MlpOnlyChangesOnlyMlpWeights) {
  auto tok = selfparam_fixture::tokenizer();
  model::Decoder model = selfparam_fixture::tiny_decoder(tok->vocab_size());
  model::Decoder original = model::frozen_copy(model);
  const std::vector<std::string> docs = {"Ann is a baker."};
  TargetSet targets;
  targets.per_document = {std::vector<std::string>(5, "Question: What is Ann? Answer: baker\n")};
  auto comm = dist::make_local_communicator(std::chrono::seconds(60));
  InjectionInputs in{tok.get(), &docs, &targets};
  SelfParamOptions o = selfparam_fixture::quick_options();
  o.update = SelfParamOptions::Update::Mlp;
  o.epochs = 5;
  inject(model, in, o, Objective::Distill, *comm);
  auto before = original->named_parameters();
  for (const auto& p : model->named_parameters()) {
    const bool changed = !torch::equal(p.value(), before[p.key()]);
    EXPECT_EQ(changed, p.key().find(".mlp.") != std::string::npos) << p.key();
  }
}

TEST(SelfParamInject, CrossEntropyTakesOneStepPerSentencePerDistillationTerm) {
  auto tok = selfparam_fixture::tokenizer();
  model::Decoder model = selfparam_fixture::tiny_decoder(tok->vocab_size());
  const std::vector<std::string> docs = {"Ann is a baker.", "Bob is a cook."};
  TargetSet targets;
  targets.per_document = {std::vector<std::string>(4, "Question: What is Ann? Answer: baker\n"),
                          std::vector<std::string>(4, "Question: What is Bob? Answer: cook\n")};
  auto comm = dist::make_local_communicator(std::chrono::seconds(60));
  InjectionInputs in{tok.get(), &docs, &targets};
  SelfParamOptions o = selfparam_fixture::quick_options();
  o.epochs = 2, o.per_epoch = 2, o.continuation = true;  // two distillation terms per item
  model::Decoder copy = model::frozen_copy(model);
  const InjectionReport distill = inject(model, in, o, Objective::Distill, *comm);
  const InjectionReport ce = inject(copy, in, o, Objective::CrossEntropy, *comm);
  EXPECT_EQ(distill.steps, 16);  // 2 epochs x 2 documents x 2 targets x 2 terms
  EXPECT_EQ(ce.steps, distill.steps);
}


TEST(SelfParamTeacherRows, WholeRowsGiveTheLiveLossAndATopKIsTheRenormalisedKl) {
  auto tok = selfparam_fixture::tokenizer();
  model::Decoder teacher = selfparam_fixture::tiny_decoder(tok->vocab_size(), 1);
  model::Decoder student = selfparam_fixture::tiny_decoder(tok->vocab_size(), 2);
  const std::vector<DistillExample> examples = {
      {tok->encode("Context: Bob lives in Paris."), tok->encode("Question: where? Answer: Paris\n")},
      {tok->encode("Context: Ann"), tok->encode("Question: What is the job of Ann? Answer: baker\n")}};
  std::vector<std::vector<int32_t>> inputs;
  std::vector<std::pair<int64_t, int64_t>> slices;
  for (const auto& e : examples) {
    std::vector<int32_t> ids = e.context;
    ids.insert(ids.end(), e.target.begin(), e.target.end());
    inputs.push_back(ids);
    const Slices s = target_slices(0, static_cast<int64_t>(e.context.size()), static_cast<int64_t>(e.target.size()));
    slices.emplace_back(s.teacher_begin, s.length);
  }
  torch::NoGradGuard no_grad;
  const auto whole = teacher_rows(teacher, inputs, slices, 0, 2);  // both in one padded pass
  EXPECT_FALSE(whole[0].indices.defined());
  for (auto reduction : {Reduction::Mean, Reduction::Token})
    EXPECT_NEAR(distillation_loss(whole, student, examples, {}, 2.0, reduction).item<double>(),
                distillation_loss(teacher, student, examples, {}, 2.0, reduction).item<double>(), 1e-6);
  // Top 2 of 4 logits: p renormalised on ids {0, 1}, the student's full log-softmax there.
  const TeacherRows top{torch::tensor({{2.0f, 1.0f}}), torch::tensor({{0, 1}}, torch::kInt)};
  const at::Tensor s = torch::tensor({{0.5f, -1.0f, 0.0f, 3.0f}});
  const double z = std::log(std::exp(0.5) + std::exp(-1.0) + 1.0 + std::exp(3.0));
  const double p0 = std::exp(2.0) / (std::exp(2.0) + std::exp(1.0)), p1 = 1 - p0;
  const double kl = p0 * (std::log(p0) - (0.5 - z)) + p1 * (std::log(p1) - (-1.0 - z));
  EXPECT_NEAR(rows_kl(top, s, 1.0, Reduction::Token).item<double>(), kl, 1e-6);
  EXPECT_NEAR(rows_kl(top, s, 1.0, Reduction::Mean).item<double>(), kl / 4, 1e-6);  // n V = 1 x 4
  // A top-k as wide as the vocabulary keeps whole rows.
  EXPECT_FALSE(teacher_rows(teacher, inputs, slices, tok->vocab_size(), 1)[0].indices.defined());
  const auto top8 = teacher_rows(teacher, inputs, slices, 8, 1);
  EXPECT_EQ(top8[1].logits.size(1), 8);
  EXPECT_LT((top8[1].logits.select(1, 0) - whole[1].logits.amax(1)).abs().max().item<double>(), 1e-5);  // the largest first
}

TEST(SelfParamTeacherCache, ContinuationRowsAreRowsOfOnePassOverTheDocument) {
  auto tok = selfparam_fixture::tokenizer();
  model::Decoder teacher = selfparam_fixture::tiny_decoder(tok->vocab_size(), 1);
  const auto doc = tok->encode("Context: Bob lives in Paris and bakes bread every day.");
  TeacherCache cache(teacher, {}, {doc}, {}, 0);
  torch::NoGradGuard no_grad;
  for (size_t r : {size_t{1}, size_t{4}, doc.size() - 2}) {
    const DistillExample split{{doc.begin(), doc.begin() + static_cast<std::ptrdiff_t>(r)},
                               {doc.begin() + static_cast<std::ptrdiff_t>(r), doc.end()}};
    const Slices s = target_slices(0, static_cast<int64_t>(r), static_cast<int64_t>(doc.size() - r));
    const auto live = teacher_rows(teacher, {doc}, {{s.teacher_begin, s.length}}, 0, 1);
    const TeacherRows cached = cache.continuation(0, split);
    ASSERT_EQ(cached.logits.size(0), s.length);
    EXPECT_LT((cached.logits - live[0].logits).abs().max().item<double>(), 1e-5) << r;
  }
  EXPECT_EQ(cache.bytes(), static_cast<int64_t>((doc.size() - 1) * tok->vocab_size() * 4));
}

// Two documents, three terms, LoRA dropout: every random draw of an injection is in play.
struct ResumeCase {
  std::shared_ptr<text::Tokenizer> tok = selfparam_fixture::tokenizer();
  std::vector<std::string> docs = {"Ann is a baker in Rome.", "Bob is a cook in Oslo."};
  TargetSet targets;
  SelfParamOptions o = selfparam_fixture::quick_options();
  std::string unrelated_file = ::testing::TempDir() + "selfparam_unrelated.txt";
  ResumeCase() {
    targets.per_document = {{"Question: What is Ann? Answer: baker\n", "Question: Where is Ann? Answer: Rome\n"},
                            {"Question: What is Bob? Answer: cook\n", "Question: Where is Bob? Answer: Oslo\n"}};
    o.epochs = 2, o.per_epoch = 2, o.continuation = true, o.unrelated = true, o.lora_dropout = 0.2;
    std::ofstream(unrelated_file) << "The river runs north.\nA storm passed.\nBread rises slowly.\n";
  }
  // The model injected from the same start, with `place`; resumed runs get a fresh process's state.
  std::pair<model::Decoder, InjectionReport> run(InjectionPlace place, dist::Communicator& comm) {
    model::Decoder m = selfparam_fixture::tiny_decoder(tok->vocab_size(), 3);
    UnrelatedText unrelated(unrelated_file, *tok, 16, 0, 1);
    InjectionInputs in{tok.get(), &docs, &targets, &unrelated};
    in.seed = 5;
    in.place = place;
    torch::manual_seed(11);
    InjectionReport r = inject(m, in, o, Objective::Distill, comm);
    return {m, r};
  }
};

double max_difference(model::Decoder& a, model::Decoder& b) {
  auto other = b->named_parameters();
  double worst = 0;
  for (const auto& p : a->named_parameters())
    worst = std::max(worst, (p.value() - other[p.key()]).abs().max().item<double>());
  return worst;
}

TEST(SelfParamResume, AStoppedInjectionResumesToTheSameWeights) {
  ResumeCase c;
  auto comm = dist::make_local_communicator(std::chrono::seconds(60));
  auto [whole, report] = c.run({}, *comm);
  EXPECT_EQ(report.rounds, 8);
  const std::string dir = ::testing::TempDir() + "selfparam_resume";
  std::filesystem::remove_all(dir);
  {  // a stop signal: the first round is saved and the injection returns with its adapters
    InjectionCheckpoints checkpoints(dir, *comm, {}, 0, "");
    core::install_stop_signal_handlers();
    std::raise(SIGUSR1);
    auto [stopped, r] = c.run({&checkpoints, 0, 0}, *comm);
    core::clear_stop_request();
    EXPECT_TRUE(r.stopped);
    EXPECT_GT(stopped->num_parameters(), whole->num_parameters());
  }
  InjectionCheckpoints checkpoints(dir, *comm, {}, 0, "");
  EXPECT_EQ(checkpoints.resumed_at().step, 1);
  EXPECT_NE(checkpoints.inside(0), nullptr);
  auto [resumed, r] = c.run({&checkpoints, 0, 0}, *comm);
  EXPECT_FALSE(r.stopped);
  EXPECT_EQ(r.steps, 7 * 3);  // the rounds left, three terms each
  EXPECT_LT(max_difference(resumed, whole), 1e-6);
}

TEST(SelfParamResume, SaveEveryKeepsTheNewestAndTheCachedTeacherInjectsAsTheLiveOne) {
  ResumeCase c;
  auto comm = dist::make_local_communicator(std::chrono::seconds(60));
  auto [live, live_report] = c.run({}, *comm);
  const std::string dir = ::testing::TempDir() + "selfparam_save_every";
  std::filesystem::remove_all(dir);
  InjectionCheckpoints checkpoints(dir, *comm, {}, 3, "");
  c.o.teacher_cache = true, c.o.teacher_top_k = 0;
  auto [cached, r] = c.run({&checkpoints, 0, 0}, *comm);
  EXPECT_LT(max_difference(cached, live), 1e-4);
  EXPECT_GT(r.teacher_cache_bytes, 0);
  EXPECT_EQ(InjectionCheckpoints(dir, *comm, {}, 3, "").resumed_at().step, 6);  // saved at 3 and 6 of 8
}

TEST(SelfParamTargets, WorldTargetsAreTheTrainingPhrasingsNeverAHeldOutQuestion) {
  std::vector<data::Document> docs(2);
  docs[0].qa = {{"Where does Ann live?", {"Rome"}, false}, {"In which town was Ann raised?", {"Rome"}, true}};
  docs[1].qa = {{"In which town was Ann raised?", {"Rome"}, false}, {"What is Bob's job?", {"cook"}, false}};
  SelfParamOptions o;
  o.epochs = 2, o.per_epoch = 2;
  const TargetSet t = world_targets(docs, o);
  EXPECT_EQ(t.per_document[0], std::vector<std::string>(4, "Question: Where does Ann live? Answer: Rome\n"));
  EXPECT_EQ(t.per_document[1], std::vector<std::string>(4, "Question: What is Bob's job? Answer: cook\n"));
  EXPECT_EQ(t.sampled, 3);
  EXPECT_EQ(t.dropped_test, 1);  // document 1's phrasing is document 0's held-out question
  EXPECT_EQ(t.short_documents, 2);
}


TEST(SelfParamInject, ALlamaInjectionAdaptsGateUpDownAndIsWrittenBackAsAHuggingFaceLlama) {
  auto tok = selfparam_fixture::tokenizer();
  torch::manual_seed(4);
  model::DecoderConfig c = model::DecoderConfig::preset("llama");
  c.vocab_size = tok->vocab_size(), c.d_model = 32, c.n_layers = 2, c.n_heads = 4, c.d_ff = 64;
  c.max_positions = 128;
  model::Decoder llama(c);
  llama->eval();
  SelfParamOptions o = selfparam_fixture::quick_options();
  o.epochs = 3;
  EXPECT_EQ(lora_targets(o, c), (std::vector<std::string>{"q", "k", "v", "gate", "up", "down"}));
  model::Decoder before = model::frozen_copy(llama);
  const std::vector<std::string> docs = {"Ann is a baker."};
  TargetSet targets;
  targets.per_document = {std::vector<std::string>(3, "Question: What is Ann? Answer: baker\n")};
  auto comm = dist::make_local_communicator(std::chrono::seconds(60));
  InjectionInputs in{tok.get(), &docs, &targets};
  inject(llama, in, o, Objective::Distill, *comm);
  EXPECT_EQ(llama->num_parameters(), before->num_parameters());
  auto original = before->named_parameters();
  for (const auto& p : llama->named_parameters()) {  // the adapted linears moved, nothing else did
    const std::string& n = p.key();
    const bool adapted = n.find(".q.") != std::string::npos || n.find(".k.") != std::string::npos ||
                         n.find(".v.") != std::string::npos || n.find(".gate.") != std::string::npos ||
                         n.find(".up.") != std::string::npos || n.find(".down.") != std::string::npos;
    EXPECT_EQ(!torch::equal(p.value(), original[n]), adapted) << n;
  }
  const std::string folder = ::testing::TempDir() + "selfparam_llama_hf";
  std::filesystem::remove_all(folder);
  model::save_hf_decoder(llama, "llama", folder);
  model::Decoder back = model::load_hf_decoder(folder);
  const at::Tensor ids = torch::tensor({{5, 9, 17, 3}}, torch::kLong);
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::allclose(back->forward(ids).logits, llama->forward(ids).logits, 1e-5, 1e-5));
}

}  // namespace
}  // namespace engram::selfparam
