#include "methods/selfparam/targets.h"

#include <algorithm>
#include <cctype>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/log.h"
#include "core/progress.h"
#include "data/collate.h"
#include "dist/communicator.h"
#include "model/generate.h"
#include "text/tokenizer.h"

namespace engram::selfparam {
namespace {

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  const auto e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

constexpr int64_t kRowsPerCall = 64;  // sampled rows per generate call
constexpr int kMaxRounds = 6;         // sampling rounds before a document keeps what it has

// Draws pairs for the documents of this rank until each has `wanted` or the rounds run out.
void sample_rank_share(model::Decoder& generator, const text::Tokenizer& tokenizer,
                       const std::vector<std::string>& documents, const std::vector<size_t>& mine,
                       const std::set<std::string>& excluded, const SelfParamOptions& o, bool log_progress,
                       TargetSet& out) {
  const size_t wanted = static_cast<size_t>(o.epochs * o.per_epoch);
  model::GenerateOptions g;
  g.strategy = model::GenerateOptions::Strategy::Sample;
  g.temperature = o.sample_temperature;
  g.max_new_tokens = o.sample_tokens;
  g.pad_id = std::max(0, tokenizer.pad_id());
  for (int round = 0; round < kMaxRounds; ++round) {
    std::vector<std::vector<int32_t>> prompts;
    std::vector<size_t> owner;
    for (size_t d : mine) {
      const size_t need = wanted - std::min(wanted, out.per_document[d].size());
      if (need == 0) continue;
      // A draw yields about two usable pairs; ask a little more than needed.
      const int64_t draws = std::clamp<int64_t>(static_cast<int64_t>(need + 1) / 2 + 1, 1, kRowsPerCall);
      auto ids = tokenizer.encode("Context: " + documents[d] + " Question:");
      for (int64_t k = 0; k < draws; ++k) prompts.push_back(ids), owner.push_back(d);
    }
    if (prompts.empty()) return;
    core::Progress progress("sampling targets", static_cast<int64_t>(prompts.size()), log_progress, 10.0, "draw");
    for (size_t first = 0; first < prompts.size(); first += kRowsPerCall) {
      const size_t last = std::min(prompts.size(), first + kRowsPerCall);
      std::vector<std::vector<int32_t>> part(prompts.begin() + first, prompts.begin() + last);
      g.seed = o.seed * 1000003ULL + static_cast<uint64_t>(round) * 7919ULL + owner[first] * 104729ULL + first;
      auto outputs = model::generate(generator, part, g);
      for (size_t k = 0; k < outputs.size(); ++k) {
        auto& list = out.per_document[owner[first + k]];
        for (auto& pair : parse_qa_pairs("Question:" + tokenizer.decode(outputs[k]))) {
          ++out.sampled;
          if (excluded.count(question_of_pair(pair))) {
            ++out.dropped_test;
            continue;
          }
          if (list.size() < wanted) list.push_back(std::move(pair));
        }
      }
      progress.update(static_cast<int64_t>(first + outputs.size()));
    }
  }
}

// Every rank's pairs to every rank, with the counts summed.
void gather(TargetSet& set, dist::Communicator& comm) {
  auto all = comm.all_gather_bytes(targets_to_json(set));
  set.sampled = set.dropped_test = 0;
  for (const auto& bytes : all) {
    TargetSet share = targets_from_json(bytes, "a rank's sampled targets");
    set.sampled += share.sampled;
    set.dropped_test += share.dropped_test;
    for (size_t d = 0; d < share.per_document.size(); ++d)
      if (!share.per_document[d].empty()) set.per_document[d] = std::move(share.per_document[d]);
  }
}

// Every document with fewer than E x K pairs repeats what it has; the counts say how many did.
void fill_to_wanted(TargetSet& set, const SelfParamOptions& options) {
  const size_t wanted = static_cast<size_t>(options.epochs * options.per_epoch);
  for (auto& list : set.per_document) {
    if (list.empty()) {
      ++set.empty_documents;
      continue;
    }
    if (list.size() < wanted) ++set.short_documents;
    for (size_t k = 0; list.size() < wanted; ++k) {
      std::string again = list[k];
      list.push_back(std::move(again));
    }
  }
}

}  // namespace

std::string targets_to_json(const TargetSet& t) {
  return nlohmann::json{{"per_document", t.per_document}, {"sampled", t.sampled}, {"dropped_test", t.dropped_test},
                        {"short_documents", t.short_documents}, {"empty_documents", t.empty_documents}}
      .dump();
}

TargetSet targets_from_json(const std::string& text, const std::string& source) {
  try {
    const nlohmann::json j = nlohmann::json::parse(text);
    TargetSet t;
    t.per_document = j.at("per_document").get<std::vector<std::vector<std::string>>>();
    t.sampled = j.at("sampled");
    t.dropped_test = j.at("dropped_test");
    t.short_documents = j.at("short_documents");
    t.empty_documents = j.at("empty_documents");
    return t;
  } catch (const nlohmann::json::exception& e) {
    core::fail("{}: not a set of SELF-PARAM targets ({})", source, e.what());
  }
}

std::vector<std::string> parse_qa_pairs(const std::string& text) {
  std::vector<std::string> pairs;
  const std::string marker = "Question:";
  size_t at = text.find(marker);
  while (at != std::string::npos) {
    const size_t next = text.find(marker, at + marker.size());
    const std::string piece = text.substr(at + marker.size(), next == std::string::npos ? std::string::npos : next - at - marker.size());
    at = next;
    const size_t answer_at = piece.find("Answer:");
    const size_t end = piece.find('\n', answer_at == std::string::npos ? 0 : answer_at);
    if (answer_at == std::string::npos || end == std::string::npos) continue;
    const std::string q = trim(piece.substr(0, answer_at));
    const std::string a = trim(piece.substr(answer_at + 7, end - answer_at - 7));
    if (q.empty() || a.empty() || q.find('\n') != std::string::npos) continue;
    pairs.push_back("Question: " + q + " Answer: " + a + "\n");
  }
  return pairs;
}

std::string normalize_question(const std::string& question) {
  std::string out;
  for (char c : trim(question)) {
    const bool space = std::isspace(static_cast<unsigned char>(c));
    if (space && (out.empty() || out.back() == ' ')) continue;
    out.push_back(space ? ' ' : static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  }
  while (!out.empty() && (out.back() == ' ' || out.back() == '?')) out.pop_back();
  return out;
}

std::set<std::string> questions_of(const std::vector<data::Document>& documents) {
  std::set<std::string> out;
  for (const auto& d : documents)
    for (const auto& qa : d.qa) out.insert(normalize_question(qa.question));
  return out;
}

std::string question_of_pair(const std::string& pair) {
  const size_t q = pair.find("Question:");
  const size_t a = pair.find("Answer:");
  if (q == std::string::npos || a == std::string::npos || a < q) return normalize_question(pair);
  return normalize_question(pair.substr(q + 9, a - q - 9));
}

std::vector<int32_t> encode_target(const text::Tokenizer& tokenizer, const std::string& pair) {
  const size_t at = pair.find(" Answer:");
  if (at == std::string::npos) return tokenizer.encode(pair);
  std::vector<int32_t> ids = tokenizer.encode(pair.substr(0, at + 8));
  std::string answer = pair.substr(at + 8);
  const bool newline = !answer.empty() && answer.back() == '\n';
  answer = data::answer_text(trim(answer)) + (newline ? "\n" : "");
  for (int32_t id : tokenizer.encode(answer)) ids.push_back(id);
  return ids;
}

TargetSet sample_targets(model::Decoder& generator, const text::Tokenizer& tokenizer,
                         const std::vector<std::string>& documents, const std::set<std::string>& excluded,
                         const SelfParamOptions& options, dist::Communicator& comm) {
  TargetSet set;
  set.per_document.resize(documents.size());
  std::vector<size_t> mine;
  for (size_t d = static_cast<size_t>(comm.rank()); d < documents.size(); d += static_cast<size_t>(comm.world_size()))
    mine.push_back(d);
  sample_rank_share(generator, tokenizer, documents, mine, excluded, options, comm.rank() == 0 && documents.size() > 1, set);
  gather(set, comm);
  fill_to_wanted(set, options);
  return set;
}

TargetSet world_targets(const std::vector<data::Document>& documents, const SelfParamOptions& options) {
  std::set<std::string> heldout;
  for (const auto& d : documents)
    for (const auto& qa : d.qa)
      if (qa.heldout) heldout.insert(normalize_question(qa.question));
  TargetSet set;
  for (const auto& d : documents) {
    auto& list = set.per_document.emplace_back();
    for (const auto& qa : d.qa) {
      if (qa.heldout || qa.answers.empty()) continue;
      ++set.sampled;
      if (heldout.count(normalize_question(qa.question))) {
        ++set.dropped_test;
        continue;
      }
      list.push_back("Question: " + qa.question + " Answer: " + qa.answers.front() + "\n");
    }
  }
  fill_to_wanted(set, options);
  return set;
}

}  // namespace engram::selfparam
