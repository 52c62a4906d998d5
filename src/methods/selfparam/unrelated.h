#pragma once
// Term (C)'s text (specs/selfparam.md 1): documents that have nothing to do with the injected ones
// (the reference reads SlimPajama, a slice of its models' pretraining data, in stored order),
// truncated to a number of tokens. Documents with questions are laid out as engram's pretraining
// saw them (context, then its questions and answers), so term (C) keeps the reading the base LM was
// taught; documents without are their text. Rank r reads
// texts r, r + W, r + 2W, ... of the file, so the ranks together read it in order; the file starts
// over at its end.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace engram::text {
class Tokenizer;
}
namespace engram::data {
class DocumentReader;
}

namespace engram::selfparam {

class UnrelatedText {
 public:
  // `path`: any document file engram reads (jsonl, csv, SQuAD json: the documents' text) or a plain
  // .txt file (one text per non-empty line). A missing or empty file -> core::UserError naming it.
  UnrelatedText(std::string path, const text::Tokenizer& tokenizer, int64_t max_tokens, int rank, int world);
  ~UnrelatedText();
  std::vector<int32_t> next();  // this rank's next text, tokenized and truncated
  int64_t given() const { return given_; }  // texts next() returned so far
  void skip_to(int64_t given);              // reads on until `given` texts were returned (a resume)

 private:
  bool read_one(std::vector<int32_t>& ids);  // the file's next text, tokenized; false at its end
  void reopen();

  std::string path_;
  const text::Tokenizer& tokenizer_;
  int64_t max_tokens_;
  int rank_, world_;
  bool started_ = false;
  int64_t given_ = 0;
  std::unique_ptr<data::DocumentReader> documents_;  // null for .txt
  std::unique_ptr<std::istream> lines_;              // .txt
};

}  // namespace engram::selfparam
