// bench_mac: speed and memory of MAC (src/methods/mac/) at the quickstart sizes, on CPU, with
// randomly initialised models (trained weights do not change speed or memory) and random token ids.
//
//   base LM: GPT-2-style model::Decoder, d 128, 2 layers, 4 heads, d_ff 256, vocab 2048
//   MAC:     T 8, P 2; amortizer and question encoder T5 d_model 128, d_kv 32, d_ff 256, 2+2
//            layers, 4 heads (vocab 2048, 32 buckets, max distance 128, dropout 0); aggregator 2
//            blocks x 4 heads x 32; slot_hidden 128 (configs/quickstart.yaml, mac:)
//   adapt mode, --scale: quickstart (the above as configs/quickstart.yaml has it: rotary LM, P 4,
//            the encoders reading the LM's states, keys from tokens), or distilgpt2 / gpt2-large
//            (that model's sizes and configs/mac/<name>.yaml's MAC around it: T5-base amortizer,
//            T 12 / 24), where the cost of FT(C) against MAC's is the reference's
//
// One mode per process (tools/bench/mac.sh runs them), one JSON object per line on stdout:
//
//   --mode adapt   Adaptation throughput on the same documents (default 500 of ~80 tokens):
//                  MAC memorize (amortizer forward under NoGradGuard, batches of 16, summaries
//                  concatenated into one tensor, as mac::memorize) against FT(C) uniform
//                  fine-tuning (one AdamW step per document on the base LM's next-token loss,
//                  batch 1, in stream order). The two alternate batch by batch (MAC on 16
//                  documents, FT(C) on the same 16, ...) after an untimed warm-up, each with its
//                  own clock; docs/s are medians over --reps, the ratio the median per-rep ratio.
//   --mode train   Peak RSS of meta-training steps with backprop ratio --ratio r: per step a bank
//                  of B' (default 32) documents of --doc-tokens (default 256) tokens; the first
//                  k = floor(B' r) are summarised with gradient, the rest under NoGradGuard; the k
//                  questions -> question encoder -> flat mac::aggregate over the B' summaries ->
//                  prefix -> frozen-LM answer loss -> backward -> Adam step (as meta_train.cpp).
//                  Peak = VmHWM since the end of set-up (core::reset_peak_rss), so each r needs
//                  its own process.
//   --mode answer  Answering from a bank of --docs random summaries [N, T, d]: per batch of
//                  --batch questions: question encoder, mac::distributed_aggregate (one local
//                  rank, as mac::answer_questions does) hierarchical (--group M) or flat, the
//                  prefix head, and greedy model::generate of --new-tokens tokens. questions/s and
//                  VmHWM since the bank was built (which includes the bank itself).
//
// Options: --threads N (default: all cores), and per mode the ones in kUsage.
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <fstream>
#include <memory>
#include <random>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <ATen/Parallel.h>
#include <fmt/format.h>
#include <torch/torch.h>

#include "bench_options.h"
#include "core/allocator.h"
#include "core/memory.h"
#include "dist/local_communicator.h"
#include "methods/mac/aggregate.h"
#include "methods/mac/meta_train.h"
#include "methods/mac/modules.h"
#include "methods/mac/bank.h"
#include "methods/mac/retrieve.h"
#include "methods/mac/select.h"
#include "model/decoder.h"
#include "model/generate.h"
#include "model/t5.h"

namespace {

namespace mac = engram::mac;
namespace model = engram::model;

const char* kUsage =
    "usage: bench_mac --mode adapt|train|answer [options]   (tools/bench/mac.sh runs every mode)\n"
    "adapt: MAC memorize vs FT(C) documents/s; train: meta-training peak RSS at a backprop ratio;\n"
    "answer: questions/s and peak RSS over a bank of --docs documents. Options marked (mode) apply\n"
    "to that mode; defaults of -1 are the mode's own.";

struct Options {
  std::string mode;
  std::string scale = "quickstart";  // adapt: which models (adapt_setup)
  int threads = 0;
  int64_t seed = 1;
  int64_t docs = -1;
  int64_t doc_tokens = -1;
  int64_t batch = -1;
  int reps = 3;
  double lr = -1;
  double ratio = 1.0;
  int64_t bank = 32;
  int64_t question_tokens = 14;
  int64_t qa_tokens = 20;
  int64_t prompt_tokens = 16;
  int64_t steps = 5;
  std::string aggregation = "hierarchical";
  int64_t group = 16;
  int64_t batches = 3;
  int64_t warmup = 1;
  int64_t new_tokens = 8;
  double max_gib = 0;
  int64_t max_elements = 0;  // answer: 0 = mac::distributed_aggregate as engram answers; else reduce_memory's bound
  int64_t top_k = 0;         // answer: > 0 = aggregate the retriever's best K (mac::retrieve_top_k)
  int64_t select = 0;        // answer: > 0 = the aggregator selects its best K, the bank streamed from a file
};

bench::Parsed parse(int argc, char** argv, Options* o) {
  namespace po = bench::po;
  po::options_description options("options");
  options.add_options()
      ("mode", po::value(&o->mode)->required(), "adapt | train | answer")
      ("threads", po::value(&o->threads)->default_value(o->threads), "LibTorch threads (0: all cores)")
      ("scale", po::value(&o->scale)->default_value(o->scale),
       "(adapt) quickstart: configs/quickstart.yaml's base LM and MAC; distilgpt2 | gpt2-large: the base LM's "
       "sizes with configs/mac/<name>.yaml's MAC (T5-base amortizer), randomly initialised")
      ("seed", po::value(&o->seed)->default_value(o->seed), "random seed")
      ("docs", po::value(&o->docs)->default_value(o->docs), "documents (adapt: 500, answer: 1000)")
      ("doc-tokens", po::value(&o->doc_tokens)->default_value(o->doc_tokens),
       "tokens per document (adapt: 80, lengths uniform in [L-16, L+16]; train: 256)")
      ("batch", po::value(&o->batch)->default_value(o->batch), "documents per step (adapt, 16) or questions per batch (answer, 64)")
      ("reps", po::value(&o->reps)->default_value(o->reps), "(adapt) repeats")
      ("lr", po::value(&o->lr)->default_value(o->lr), "learning rate (adapt: 1e-4, FT(C)'s AdamW; train: 1e-3)")
      ("ratio", po::value(&o->ratio)->default_value(o->ratio), "(train) backprop ratio r")
      ("bank", po::value(&o->bank)->default_value(o->bank), "(train) documents per bank B'")
      ("question-tokens", po::value(&o->question_tokens)->default_value(o->question_tokens), "(train, answer) question tokens")
      ("qa-tokens", po::value(&o->qa_tokens)->default_value(o->qa_tokens), "(train) question + answer tokens")
      ("prompt-tokens", po::value(&o->prompt_tokens)->default_value(o->prompt_tokens), "(answer) prompt tokens")
      ("steps", po::value(&o->steps)->default_value(o->steps), "(train) steps")
      ("aggregation", po::value(&o->aggregation)->default_value(o->aggregation), "(answer) hierarchical | flat")
      ("group", po::value(&o->group)->default_value(o->group), "(answer) group size M")
      ("batches", po::value(&o->batches)->default_value(o->batches), "(answer) timed batches")
      ("warmup", po::value(&o->warmup)->default_value(o->warmup), "(answer) untimed batches first")
      ("new-tokens", po::value(&o->new_tokens)->default_value(o->new_tokens), "(answer) tokens generated per answer")
      ("max-gib", po::value(&o->max_gib)->default_value(o->max_gib),
       "(answer) 0: no limit; else the address space may grow by at most this many GiB after set-up, and an "
       "allocation beyond it ends the run with a JSON line saying so")
      ("max-elements", po::value(&o->max_elements)->default_value(o->max_elements),
       "(answer) 0: mac::distributed_aggregate on one local rank, as engram answers; else mac::reduce_memory "
       "with this bound on questions x memory tokens per batched aggregator call (engram's is 2^16)")
      ("top-k", po::value(&o->top_k)->default_value(o->top_k),
       "(answer) 0: aggregate the whole bank; else the retriever's best K documents, as mac.retriever.top_k "
       "(keys and faiss index of the bank once, then search + aggregation of K)")
      ("select", po::value(&o->select)->default_value(o->select),
       "(answer) > 0: the bank is written to an HDF5 file first and the aggregator selects its best K group by "
       "group from the file (mac.select), then reads them; the bank is never held in memory");
  po::variables_map values;
  bench::Parsed parsed = bench::parse_command_line(argc, argv, "bench_mac", kUsage, options, &values);
  if (parsed != bench::Parsed::Run) return parsed;
  auto fail = [](const std::string& reason) { return bench::fail("bench_mac", reason); };
  if (o->mode != "adapt" && o->mode != "train" && o->mode != "answer") return fail("--mode must be adapt, train or answer");
  if (o->aggregation != "hierarchical" && o->aggregation != "flat") return fail("--aggregation: hierarchical or flat");
  if (o->scale != "quickstart" && o->scale != "distilgpt2" && o->scale != "gpt2-large")
    return fail("--scale must be quickstart, distilgpt2 or gpt2-large");
  // Mode-dependent defaults.
  const bool adapt = o->mode == "adapt", answer = o->mode == "answer";
  if (o->docs < 0) o->docs = adapt ? 500 : 1000;
  if (o->doc_tokens < 0) o->doc_tokens = adapt ? 80 : 256;
  if (o->batch < 0) o->batch = answer ? 64 : 16;
  if (o->lr < 0) o->lr = adapt ? 1e-4 : 1e-3;
  if (o->docs < 1 || o->doc_tokens < 2 || o->batch < 1 || o->reps < 1 || o->bank < 1 || o->steps < 1 ||
      o->question_tokens < 1 || o->qa_tokens < 2 || o->prompt_tokens < 1 || o->batches < 1 || o->warmup < 0 ||
      o->new_tokens < 1 || o->group < 2 || o->max_gib < 0 || o->max_elements < 0 || o->top_k < 0 ||
      o->select < 0 || (o->select > 0 && o->top_k > 0))
    return fail("sizes and counts must be positive (--group >= 2; --select and --top-k not together)");
  if (adapt && o->doc_tokens < 18) return fail("adapt: --doc-tokens must be >= 18");
  if (!(o->ratio > 0 && o->ratio <= 1)) return fail("--ratio must be in (0, 1]");
  return parsed;
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

std::string num(double x) { return fmt::format("{:.6g}", x); }
double mib(int64_t bytes) { return static_cast<double>(bytes) / (1024.0 * 1024.0); }

void emit(const std::string& line) {
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

// ---- the models (quickstart sizes) ----

model::DecoderConfig base_config() {
  model::DecoderConfig c = model::DecoderConfig::preset("gpt2");
  c.vocab_size = 2048;
  c.d_model = 128;
  c.n_layers = 2;
  c.n_heads = 4;
  c.d_ff = 256;  // configs/quickstart.yaml (model.d_ff)
  c.max_positions = 512;
  c.validate();
  return c;
}

// As mac::mac_config_from builds a "custom" T5 (options.cpp) with the quickstart's sizes.
model::T5Config t5_config() {
  model::T5Config c = model::T5Config::preset("tiny");
  c.vocab_size = 2048;
  c.relative_attention_num_buckets = 32;
  c.relative_attention_max_distance = 128;
  c.d_model = 128;
  c.d_kv = 32;
  c.d_ff = 256;
  c.n_layers = 2;
  c.n_decoder_layers = 2;
  c.n_heads = 4;
  c.dropout = 0.0;
  return c;
}

mac::MacConfig mac_config(const model::DecoderConfig& lm, int64_t retrieval_dim = 0) {
  mac::MacConfig c;
  c.retrieval_dim = retrieval_dim;
  c.T = 8;
  c.P = 2;
  c.amortizer = t5_config();
  c.question = t5_config();
  c.mask_encoder_padding = true;
  c.aggregator_blocks = 2;
  c.aggregator_heads = 4;
  c.aggregator_head_dim = 32;
  c.aggregator_ff = 0;
  c.slot_hidden = 128;
  c.slot_dropout = 0.0;
  c.d = lm.d_model;
  c.L = lm.n_layers;
  c.H = lm.n_heads;
  c.validate();
  return c;
}

// A frozen base LM (as mac::build_mac_system leaves it).
model::Decoder frozen_lm(const model::DecoderConfig& c) {
  model::Decoder lm(c);
  for (auto& p : lm->parameters()) p.requires_grad_(false);
  lm->eval();
  return lm;
}

// Random token ids in [1, vocab) (0 is the pad id); [rows, length] int64.
at::Tensor random_ids(int64_t rows, int64_t length, int64_t vocab) {
  return torch::randint(1, vocab, {rows, length}, torch::kInt64);
}

std::string models_json(const model::Decoder& lm, const mac::MacModel& m) {
  const model::DecoderConfig& l = lm->config();
  const mac::MacConfig& c = m->config();
  const model::T5Config& t = c.amortizer;
  return fmt::format(
      "\"base_lm\":{{\"d\":{},\"layers\":{},\"heads\":{},\"d_ff\":{},\"vocab\":{},\"parameters\":{}}},"
      "\"mac\":{{\"T\":{},\"P\":{},\"t5\":{{\"d_model\":{},\"d_kv\":{},\"d_ff\":{},\"layers\":\"{}+{}\",\"heads\":{},"
      "\"vocab\":{}}},\"read_with_lm\":{},\"prefix_via\":\"{}\",\"keys\":\"{}\",\"aggregator\":\"{}x{}x{}\","
      "\"slot_hidden\":{},\"parameters\":{}}}",
      l.d_model, l.n_layers, l.n_heads, l.d_ff, l.vocab_size, lm->num_parameters(), c.T, c.P, t.d_model, t.d_kv, t.d_ff,
      t.n_layers, t.n_decoder_layers, t.n_heads, t.vocab_size, c.read_with_lm, engram::core::name_of(c.prefix_via),
      c.retrieval_dim > 0 ? c.retrieval_keys : "none",
      c.aggregator_blocks, c.aggregator_heads, c.aggregator_head_dim, c.slot_hidden, m->num_parameters());
}

// The models of one adaptation scale. quickstart: configs/quickstart.yaml's base LM (rotary
// positions) and MAC as memorize runs it there (the encoders read the LM's states, keys from
// tokens are computed beside the summaries). distilgpt2 / gpt2-large: Hugging Face's sizes of that
// model and configs/mac/<name>.yaml's MAC (T5-base amortizer over T5's vocabulary, T 12 / 24).
struct AdaptSetup {
  model::DecoderConfig lm;
  mac::MacConfig mac;
  int64_t mac_vocab = 0;  // token ids the amortizer reads (the LM reads its own vocabulary's)
};

AdaptSetup adapt_setup(const std::string& scale) {
  AdaptSetup s;
  if (scale == "quickstart") {
    s.lm = base_config();
    s.lm.positions = model::DecoderConfig::Positions::Rope;
    s.lm.validate();
    s.mac = mac_config(s.lm, 128);
    s.mac.P = 4;
    s.mac.read_with_lm = true;
    s.mac.prefix_via = engram::mac::MacConfig::PrefixVia::Lm;
    s.mac.retrieval_keys = "tokens";
    s.mac.retrieval_vocab = s.lm.vocab_size;
    s.mac.validate();
    s.mac_vocab = s.lm.vocab_size;
    return s;
  }
  const bool large = scale == "gpt2-large";
  model::DecoderConfig sizes;  // HF config.json of distilgpt2 / gpt2-large
  sizes.vocab_size = 50257;
  sizes.d_model = large ? 1280 : 768;
  sizes.n_layers = large ? 36 : 6;
  sizes.n_heads = large ? 20 : 12;
  sizes.d_ff = 4 * sizes.d_model;
  sizes.max_positions = 1024;
  s.lm = model::DecoderConfig::preset("gpt2", sizes);
  s.lm.validate();
  s.mac = mac_config(s.lm);  // the LM's d, L, H; then the reference's sizes
  mac::MacConfig& c = s.mac;
  c.T = large ? 24 : 12;
  c.amortizer = model::T5Config::preset("t5-base");
  c.amortizer.dropout = 0.0;  // memorize runs in eval mode
  c.question = c.amortizer;
  c.mask_encoder_padding = false;
  c.aggregator_blocks = 4;
  c.aggregator_heads = 8;
  c.aggregator_head_dim = 96;
  c.slot_hidden = 768;
  c.validate();
  s.mac_vocab = 32100;  // T5's SentencePiece pieces (the embedding table has 32128 rows)
  return s;
}

// ---- adapt ----

int run_adapt(const Options& o) {
  const AdaptSetup setup = adapt_setup(o.scale);
  const model::DecoderConfig& lm_config = setup.lm;
  torch::manual_seed(o.seed);
  mac::MacModel m(setup.mac);
  if (setup.mac.read_with_lm || setup.mac.prefix_via == engram::mac::MacConfig::PrefixVia::Lm) m->attach_lm(frozen_lm(lm_config));
  model::Decoder ft(lm_config);  // FT(C) trains every weight of the base LM
  const int64_t vocab = lm_config.vocab_size;

  // The stream: lengths uniform in [L-16, L+16], ids random; plus a few warm-up documents. MAC
  // reads the same documents as ids of its own vocabulary (made before timing).
  std::mt19937 rng(static_cast<uint32_t>(o.seed));
  std::uniform_int_distribution<int64_t> length(o.doc_tokens - 16, o.doc_tokens + 16);
  auto make_docs = [&](int64_t n) {
    std::vector<at::Tensor> docs;
    for (int64_t i = 0; i < n; ++i) docs.push_back(random_ids(1, length(rng), vocab));
    return docs;
  };
  auto in_mac_vocab = [&](const std::vector<at::Tensor>& stream) {
    std::vector<at::Tensor> ids;
    for (const auto& d : stream) ids.push_back(d % (setup.mac_vocab - 1) + 1);
    return ids;
  };
  const std::vector<at::Tensor> docs = make_docs(o.docs), warm = make_docs(o.batch);
  const std::vector<at::Tensor> mac_docs = in_mac_vocab(docs), mac_warm = in_mac_vocab(warm);
  int64_t tokens = 0;
  for (const auto& d : docs) tokens += d.size(1);

  // MAC memorize, one batch: as mac::memorize after tokenisation (right-padded ids + mask), the
  // summaries and, where the model has them, the keys from tokens.
  std::vector<at::Tensor> keys;
  auto mac_batch = [&](const std::vector<at::Tensor>& stream, int64_t begin, int64_t end) {
    torch::NoGradGuard no_grad;
    int64_t longest = 0;
    for (int64_t i = begin; i < end; ++i) longest = std::max(longest, stream[static_cast<size_t>(i)].size(1));
    at::Tensor ids = torch::zeros({end - begin, longest}, torch::kInt64);
    at::Tensor mask = torch::zeros({end - begin, longest}, torch::kInt64);
    for (int64_t i = begin; i < end; ++i) {
      const int64_t len = stream[static_cast<size_t>(i)].size(1);
      ids[i - begin].narrow(0, 0, len).copy_(stream[static_cast<size_t>(i)][0]);
      mask[i - begin].narrow(0, 0, len).fill_(1);
    }
    if (m->has_token_keys()) keys.push_back(m->token_keys()->document_keys(ids, mask));
    return m->summarize(ids, mask);  // [end - begin, T, d]
  };
  m->eval();

  // FT(C), documents [begin, end): one AdamW step per document, batch 1, in order, next-token
  // loss on every token.
  ft->train();
  torch::optim::AdamW optimizer(ft->parameters(), torch::optim::AdamWOptions(o.lr).weight_decay(0.01));
  auto ft_docs = [&](const std::vector<at::Tensor>& stream, int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const at::Tensor& doc = stream[static_cast<size_t>(i)];
      const int64_t len = doc.size(1);
      optimizer.zero_grad();
      at::Tensor logits = ft->forward(doc.narrow(1, 0, len - 1)).logits;
      at::Tensor loss = torch::nn::functional::cross_entropy(logits.reshape({-1, vocab}), doc.narrow(1, 1, len - 1).reshape(-1));
      loss.backward();
      optimizer.step();
    }
  };

  // The two methods alternate batch by batch (MAC on 16 documents, FT(C) on the same 16, ...), so
  // that the load of anything else on the machine hits both alike; each keeps its own clock.
  auto adapt = [&](const std::vector<at::Tensor>& stream, const std::vector<at::Tensor>& mac_stream,
                   double* mac_seconds, double* ft_seconds) {
    const int64_t n = static_cast<int64_t>(stream.size());
    std::vector<at::Tensor> parts;
    keys.clear();
    double mac_t = 0, ft_t = 0;
    for (int64_t begin = 0; begin < n; begin += o.batch) {
      const int64_t end = std::min(n, begin + o.batch);
      auto t0 = std::chrono::steady_clock::now();
      parts.push_back(mac_batch(mac_stream, begin, end));
      mac_t += seconds_since(t0);
      t0 = std::chrono::steady_clock::now();
      ft_docs(stream, begin, end);
      ft_t += seconds_since(t0);
    }
    auto t0 = std::chrono::steady_clock::now();
    at::Tensor bank = torch::cat(parts, 0);  // [n, T, d]: the bank's rows
    if (!keys.empty()) torch::cat(keys, 0);  // [n, K]: their keys
    mac_t += seconds_since(t0);
    *mac_seconds = mac_t;
    *ft_seconds = ft_t;
    return bank;
  };

  double ignored_mac = 0, ignored_ft = 0;
  adapt(warm, mac_warm, &ignored_mac, &ignored_ft);
  std::vector<double> mac_s(static_cast<size_t>(o.reps)), ft_s(static_cast<size_t>(o.reps)), ratios;
  at::Tensor bank;
  for (int rep = 0; rep < o.reps; ++rep) {
    bank = adapt(docs, mac_docs, &mac_s[static_cast<size_t>(rep)], &ft_s[static_cast<size_t>(rep)]);
    ratios.push_back(ft_s[static_cast<size_t>(rep)] / mac_s[static_cast<size_t>(rep)]);
  }
  if (bank.size(0) != o.docs || bank.size(1) != setup.mac.T || bank.size(2) != lm_config.d_model)
    throw std::runtime_error("memorize produced a bank of the wrong shape");

  const double mac_rate = o.docs / median(mac_s), ft_rate = o.docs / median(ft_s);
  emit(fmt::format("{{\"bench\":\"mac_meta\",\"mode\":\"adapt\",\"scale\":\"{}\",\"threads\":{},{},\"docs\":{},\"doc_tokens\":"
                   "\"uniform [{}, {}], mean {}\",\"reps\":{},\"timing\":\"MAC and FT(C) alternate batch by batch ({} "
                   "documents each); medians over reps, after one untimed warm-up on {} other documents\"}}",
                   o.scale, at::get_num_threads(), models_json(ft, m), o.docs, o.doc_tokens - 16, o.doc_tokens + 16,
                   num(static_cast<double>(tokens) / o.docs), o.reps, o.batch, o.batch));
  emit(fmt::format("{{\"bench\":\"mac_adapt\",\"method\":\"mac_memorize\",\"scale\":\"{}\",\"threads\":{},\"docs\":{},\"batch\":{},\"docs_per_s\":{},"
                   "\"seconds\":{},\"min_s\":{},\"max_s\":{},\"what\":\"amortizer forward under NoGradGuard, "
                   "summaries (and keys from tokens) into one [N, T, d] tensor\"}}",
                   o.scale, at::get_num_threads(), o.docs, o.batch, num(mac_rate), num(median(mac_s)),
                   num(*std::min_element(mac_s.begin(), mac_s.end())), num(*std::max_element(mac_s.begin(), mac_s.end()))));
  emit(fmt::format("{{\"bench\":\"mac_adapt\",\"method\":\"ft_uniform\",\"scale\":\"{}\",\"threads\":{},\"docs\":{},\"batch\":1,\"docs_per_s\":{},"
                   "\"seconds\":{},\"min_s\":{},\"max_s\":{},\"lr\":{},\"what\":\"one AdamW step per document on the "
                   "base LM's next-token loss, in order\"}}",
                   o.scale, at::get_num_threads(), o.docs, num(ft_rate), num(median(ft_s)), num(*std::min_element(ft_s.begin(), ft_s.end())),
                   num(*std::max_element(ft_s.begin(), ft_s.end())), num(o.lr)));
  const double ratio = median(ratios);
  emit(fmt::format("{{\"bench\":\"mac_adapt_speedup\",\"scale\":\"{}\",\"threads\":{},\"ratio\":{},\"min\":{},\"max\":{},"
                   "\"what\":\"MAC docs/s / FT(C) docs/s, median over reps of the per-rep ratio\",\"goal\":\">= 20\","
                   "\"met\":{}}}",
                   o.scale, at::get_num_threads(), num(ratio), num(*std::min_element(ratios.begin(), ratios.end())),
                   num(*std::max_element(ratios.begin(), ratios.end())), ratio >= 20 ? "true" : "false"));
  return 0;
}

// ---- train ----

int run_train(const Options& o) {
  const model::DecoderConfig lm_config = base_config();
  torch::manual_seed(o.seed);
  model::Decoder lm = frozen_lm(lm_config);
  mac::MacModel m(mac_config(lm_config));
  const int64_t vocab = lm_config.vocab_size, B = o.bank;
  const int64_t k = std::min(B, mac::documents_with_grad(B, o.ratio));
  m->train();
  lm->train();  // mac.lm_dropout (dropout is 0 at these sizes)
  torch::optim::Adam optimizer(m->parameters(), torch::optim::AdamOptions(o.lr));
  // Question part of a QA row: the first question_tokens ids; the loss is on the rest.
  const int64_t answer_from = std::min(o.question_tokens, o.qa_tokens - 1);

  const int64_t setup_rss = engram::core::current_rss_bytes();
  const bool reset = engram::core::reset_peak_rss();
  const int64_t after_reset_rss = engram::core::current_rss_bytes();
  std::vector<double> step_s;
  double loss_value = 0;
  for (int64_t step = 0; step < o.steps; ++step) {
    // A fresh bank each step (document ids, the k questions, and their QA rows).
    at::Tensor docs = random_ids(B, o.doc_tokens, vocab), doc_mask = torch::ones({B, o.doc_tokens}, torch::kInt64);
    at::Tensor questions = random_ids(k, o.question_tokens, vocab);
    at::Tensor question_mask = torch::ones({k, o.question_tokens}, torch::kInt64);
    at::Tensor qa = random_ids(k, o.qa_tokens + 1, vocab);
    at::Tensor inputs = qa.narrow(1, 0, o.qa_tokens), labels = qa.narrow(1, 1, o.qa_tokens).clone();
    labels.narrow(1, 0, answer_from - 1).fill_(-100);

    auto t0 = std::chrono::steady_clock::now();
    optimizer.zero_grad();
    at::Tensor bank = m->summarize(docs.narrow(0, 0, k), doc_mask.narrow(0, 0, k));
    if (k < B) {
      torch::NoGradGuard no_grad;
      at::Tensor rest = m->summarize(docs.narrow(0, k, B - k), doc_mask.narrow(0, k, B - k));
      bank = torch::cat({bank, rest.detach()}, 0);
    }
    at::Tensor z0 = m->encode_question(questions, question_mask);
    at::Tensor z = mac::aggregate(m->aggregator(), z0, mac::Memory{bank.unsqueeze(0), {}});
    model::Prefix prefix = m->prefix_head()(z);
    model::ForwardOptions forward;
    forward.prefix = &prefix;
    at::Tensor logits = lm->forward(inputs, forward).logits;
    at::Tensor loss = torch::nn::functional::cross_entropy(
        logits.reshape({-1, vocab}), labels.reshape(-1), torch::nn::functional::CrossEntropyFuncOptions().ignore_index(-100));
    loss.backward();
    optimizer.step();
    loss_value = loss.item<double>();
    step_s.push_back(seconds_since(t0));
  }
  const int64_t peak = engram::core::peak_rss_bytes();
  emit(fmt::format(
      "{{\"bench\":\"mac_train_memory\",\"ratio\":{},\"bank\":{},\"with_grad\":{},\"doc_tokens\":{},"
      "\"question_tokens\":{},\"qa_tokens\":{},\"answer_tokens\":{},\"steps\":{},\"threads\":{},{},"
      "\"optimizer\":\"Adam lr {}\",\"aggregation\":\"flat over the B' summaries\","
      "\"setup_rss_mib\":{},\"peak_rss_mib\":{},\"peak_above_setup_mib\":{},\"peak_since\":\"{}\","
      "\"ms_per_step\":{},\"last_loss\":{}}}",
      num(o.ratio), B, k, o.doc_tokens, o.question_tokens, o.qa_tokens, o.qa_tokens - answer_from + 1, o.steps,
      at::get_num_threads(), models_json(lm, m), num(o.lr), num(mib(setup_rss)), num(mib(peak)),
      num(mib(peak - after_reset_rss)), reset ? "set-up (VmHWM reset)" : "process start (VmHWM reset unsupported)",
      num(1e3 * median(step_s)), num(loss_value)));
  return 0;
}

// ---- answer ----

// Bounds the address space to what it is now plus `gib`: an allocation beyond it fails (c10::Error
// or std::bad_alloc) instead of pushing the machine into the OOM killer.
int64_t limit_address_space(double gib) {
  int64_t vm_kib = 0;
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmSize:", 0) == 0) vm_kib = std::stoll(line.substr(7));
  const int64_t limit = vm_kib * 1024 + static_cast<int64_t>(gib * 1024 * 1024 * 1024);
  rlimit r{static_cast<rlim_t>(limit), static_cast<rlim_t>(limit)};
  if (setrlimit(RLIMIT_AS, &r) != 0) return 0;
  return limit;
}

// A bank of n random summaries [n, T, d] written to `path` in appends of 10k rows, so that no more
// than one append's rows are ever in memory.
void write_random_bank(const std::string& path, int64_t n, int64_t T, int64_t d, engram::dist::Communicator& comm) {
  mac::BankMeta meta;
  meta.fingerprint = "bench";
  meta.T = T;
  meta.d = d;
  for (int64_t begin = 0; begin < n; begin += 10000) {
    mac::BankRows rows;
    const int64_t count = std::min<int64_t>(10000, n - begin);
    rows.summaries = torch::randn({count, T, d});
    for (int64_t i = begin; i < begin + count; ++i) {
      rows.doc_ids.push_back(fmt::format("doc-{:09d}", i));
      rows.times.push_back(i);
    }
    mac::write_bank(path, meta, rows, begin > 0, comm, {});
  }
}

int run_answer(const Options& o) {
  const model::DecoderConfig lm_config = base_config();
  torch::manual_seed(o.seed);
  model::Decoder lm = frozen_lm(lm_config);
  mac::MacModel m(mac_config(lm_config, o.top_k > 0 ? 128 : 0));
  m->eval();
  const int64_t vocab = lm_config.vocab_size, N = o.docs, T = 8, d = 128, Bq = o.batch;
  const bool hierarchical = o.aggregation == "hierarchical";
  const int64_t M = hierarchical ? o.group : mac::kFlat;
  auto comm = engram::dist::make_local_communicator(std::chrono::seconds(600));

  // Question token ids (question encoder) and LM prompts, one set per batch (warm-ups included).
  const int64_t total_batches = o.warmup + o.batches;
  std::vector<at::Tensor> q_ids;
  std::vector<std::vector<std::vector<int32_t>>> prompts;
  for (int64_t b = 0; b < total_batches; ++b) {
    q_ids.push_back(random_ids(Bq, o.question_tokens, vocab));
    at::Tensor p = random_ids(Bq, o.prompt_tokens, vocab).to(torch::kInt32).contiguous();
    std::vector<std::vector<int32_t>> rows;
    for (int64_t i = 0; i < Bq; ++i) rows.emplace_back(p[i].data_ptr<int32_t>(), p[i].data_ptr<int32_t>() + o.prompt_tokens);
    prompts.push_back(std::move(rows));
  }
  const at::Tensor q_mask = torch::ones({Bq, o.question_tokens}, torch::kInt64);
  model::GenerateOptions generation;
  generation.max_new_tokens = o.new_tokens;
  generation.strategy = engram::model::GenerateOptions::Strategy::Greedy;
  generation.eos_id = -1;  // every row generates max_new_tokens: the same work in every run
  generation.pad_id = 0;
  generation.validate();

  const int64_t models_rss = engram::core::current_rss_bytes();
  // With --select the bank lives in a file (written in appends of 10k rows) and is never in memory.
  const std::string bank_file = fmt::format("/tmp/bench_mac_select_{}.h5", ::getpid());
  std::unique_ptr<mac::BankReader> reader;
  if (o.select > 0) {
    write_random_bank(bank_file, N, T, d, *comm);
    reader = std::make_unique<mac::BankReader>(bank_file);
  }
  // What BankReader::summaries would return, in memory (not with --select).
  const at::Tensor bank = o.select > 0 ? at::Tensor() : torch::randn({1, N, T, d});
  const int64_t bank_bytes = N * T * d * static_cast<int64_t>(sizeof(float));
  const int64_t setup_rss = engram::core::current_rss_bytes();
  const int64_t limit = o.max_gib > 0 ? limit_address_space(o.max_gib) : 0;
  const bool reset = engram::core::reset_peak_rss();

  torch::NoGradGuard no_grad;
  mac::AggregationStats stats;
  double t_encode = 0, t_aggregate = 0, t_generate = 0, elapsed = 0, t_keys = 0;
  std::optional<mac::ShardIndex> index;  // the bank's retriever keys, indexed once before answering (as engram answer does)
  if (o.top_k > 0) {
    auto t0 = std::chrono::steady_clock::now();
    index.emplace(bank[0], m->retriever()->document_keys(bank[0]), 0);
    t_keys = seconds_since(t0);
  }
  int64_t answered = 0;
  std::string failure;
  try {
    for (int64_t b = 0; b < total_batches; ++b) {
      const bool timed = b >= o.warmup;
      mac::AggregationStats batch_stats;
      auto t0 = std::chrono::steady_clock::now();
      at::Tensor z0 = m->encode_question(q_ids[static_cast<size_t>(b)], q_mask);
      auto t1 = std::chrono::steady_clock::now();
      at::Tensor z;
      if (o.top_k > 0) {
        mac::Retrieved found = mac::retrieve_top_k(m->retriever()->question_keys(z0), *index, {}, o.top_k, *comm);
        z = mac::aggregate_hierarchical(m->aggregator(), z0, found.memory, M, &batch_stats);
      } else if (o.select > 0) {
        const mac::ShardRows shard{[&](int64_t begin, int64_t count) { return reader->summaries(begin, count); }, N, 0,
                                   T, d};
        mac::Retrieved chosen = mac::select_top_k(m->aggregator(), z0, shard, {}, o.select, M, *comm);
        z = mac::aggregate(m->aggregator(), z0, chosen.memory, &batch_stats);
      } else if (o.max_elements > 0) {  // the same algorithm with another bound on one batched call
        mac::Memory reduced = mac::reduce_memory(m->aggregator(), z0, mac::Memory{bank, {}}, M, &batch_stats, o.max_elements);
        z = mac::aggregate(m->aggregator(), z0, reduced, &batch_stats);
      } else {
        z = mac::distributed_aggregate(m->aggregator(), z0, mac::Memory{bank, {}}, M, *comm, &batch_stats);
      }
      auto t2 = std::chrono::steady_clock::now();
      model::Prefix prefix = m->prefix_head()(z);
      auto answers = model::generate(lm, prompts[static_cast<size_t>(b)], generation, &prefix);
      if (static_cast<int64_t>(answers.size()) != Bq || static_cast<int64_t>(answers[0].size()) != o.new_tokens)
        throw std::runtime_error("generate returned the wrong number of tokens");
      if (timed) {
        t_encode += std::chrono::duration<double>(t1 - t0).count();
        t_aggregate += std::chrono::duration<double>(t2 - t1).count();
        t_generate += seconds_since(t2);
        elapsed += seconds_since(t0);
        answered += Bq;
        stats = batch_stats;
      }
    }
  } catch (const std::exception& e) {
    failure = e.what();
    failure = failure.substr(0, failure.find('\n'));
  }
  const int64_t peak = engram::core::peak_rss_bytes();
  reader.reset();
  if (o.select > 0) std::remove(bank_file.c_str());
  std::string escaped;
  for (char c : failure) escaped += (c == '"' || c == '\\') ? ' ' : c;
  const int64_t timed_batches = answered / Bq;
  emit(fmt::format(
      "{{\"bench\":\"mac_answer\",\"aggregation\":\"{}\",\"top_k\":{},\"select\":{},\"bank_in\":\"{}\",\"bank_keys_s\":{},\"group\":{},\"docs\":{},\"T\":{},\"d\":{},\"batch\":{},"
      "\"question_tokens\":{},\"prompt_tokens\":{},\"new_tokens\":{},\"decoding\":\"greedy, no EOS\",\"threads\":{},"
      "\"warmup_batches\":{},\"batches\":{},\"questions_per_s\":{},\"s_per_batch\":{},"
      "\"ms_per_batch\":{{\"question_encoder\":{},\"aggregate\":{},\"prefix_generate\":{}}},"
      "\"aggregator_calls_per_question\":{},\"levels\":{},\"max_elements\":{},"
      "\"rss_models_mib\":{},\"bank_mib\":{},\"setup_rss_mib\":{},\"peak_rss_mib\":{},\"peak_minus_bank_mib\":{},"
      "\"peak_above_setup_mib\":{},\"peak_since\":\"{}\",\"address_space_limit_gib\":{},\"completed\":{}{}}}",
      o.aggregation, o.top_k, o.select, o.select > 0 ? "file" : "memory", o.top_k > 0 ? num(t_keys) : "null", hierarchical ? std::to_string(M) : std::string("null"),
      N, T, d, Bq, o.question_tokens,
      o.prompt_tokens, o.new_tokens, at::get_num_threads(), o.warmup, timed_batches,
      answered ? num(answered / elapsed) : "null", timed_batches ? num(elapsed / timed_batches) : "null",
      timed_batches ? num(1e3 * t_encode / timed_batches) : "null",
      timed_batches ? num(1e3 * t_aggregate / timed_batches) : "null",
      timed_batches ? num(1e3 * t_generate / timed_batches) : "null", timed_batches ? num(stats.calls / static_cast<double>(Bq)) : "null",
      stats.levels, o.max_elements > 0 ? std::to_string(o.max_elements) : std::string("\"default (2^16)\""),
      num(mib(models_rss)), num(mib(bank_bytes)), num(mib(setup_rss)), num(mib(peak)),
      num(mib(peak - bank_bytes)), num(mib(peak - setup_rss)),
      reset ? "set-up, bank included (VmHWM reset)" : "process start (VmHWM reset unsupported)",
      limit ? num(o.max_gib) : "null", failure.empty() ? "true" : "false",
      failure.empty() ? "" : fmt::format(",\"error\":\"{}\"", escaped)));
  return failure.empty() ? 0 : 3;
}

}  // namespace

int main(int argc, char** argv) {
  engram::core::keep_large_allocations_in_heap();  // as engram itself does
  Options o;
  const bench::Parsed parsed = parse(argc, argv, &o);
  if (parsed != bench::Parsed::Run) return bench::exit_status(parsed);
  const int threads = o.threads > 0 ? o.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  at::set_num_threads(threads);
  at::globalContext().setFlushDenormal(true);  // LibTorch's torch.set_flush_denormal(True)
  try {
    if (o.mode == "adapt") return run_adapt(o);
    if (o.mode == "train") return run_train(o);
    return run_answer(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_mac: %s\n", e.what());
    return 1;
  }
}
