// libengram_sentencepiece.so: the only code that calls libsentencepiece (see
// sentencepiece_module.h). Thin wrappers that turn util::Status into bool + message.
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include "text/sentencepiece_module.h"

namespace engram::text::spm_module {
namespace {

using sentencepiece::SentencePieceProcessor;
using sentencepiece::util::Status;

bool check(const Status& status, std::string* error) {
  if (!status.ok()) *error = status.message();
  return status.ok();
}

const SentencePieceProcessor& processor(const void* handle) {
  return *static_cast<const SentencePieceProcessor*>(handle);
}

void* load(const std::string& model_path, std::string* error) {
  auto* p = new SentencePieceProcessor();
  if (check(p->Load(model_path), error)) return p;
  delete p;
  return nullptr;
}

void release(void* handle) { delete static_cast<SentencePieceProcessor*>(handle); }

bool encode(const void* handle, const std::string& text, std::vector<int>* ids,
            std::string* error) {
  return check(processor(handle).Encode(text, ids), error);
}

bool decode(const void* handle, const std::vector<int>& ids, std::string* text,
            std::string* error) {
  return check(processor(handle).Decode(ids, text), error);
}

int piece_size(const void* handle) { return processor(handle).GetPieceSize(); }

int special_id(const void* handle, Special which) {
  const SentencePieceProcessor& p = processor(handle);
  switch (which) {
    case Special::kBos: return p.bos_id();
    case Special::kEos: return p.eos_id();
    case Special::kPad: return p.pad_id();
    case Special::kUnk: return p.unk_id();
  }
  return -1;
}

bool train(const std::unordered_map<std::string, std::string>& flags, uint32_t seed,
           std::string* error) {
  sentencepiece::SetRandomGeneratorSeed(seed);
  return check(sentencepiece::SentencePieceTrainer::Train(flags), error);
}

constexpr Api kApi = {kApiVersion, load, release, encode, decode, piece_size, special_id, train};

}  // namespace
}  // namespace engram::text::spm_module

extern "C" __attribute__((visibility("default"))) const engram::text::spm_module::Api*
engram_sentencepiece_api() {
  return &engram::text::spm_module::kApi;
}
