// io/jsonl, io/csv and data/readers against the hand-written files in tests/fixtures/data.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "data/readers.h"
#include "io/csv.h"
#include "io/jsonl.h"

namespace {

namespace fs = std::filesystem;
using engram::core::UserError;
using engram::data::Document;
using engram::data::Format;
using engram::data::read_all;
using engram::data::ReadOptions;
using engram::data::ReadStats;
using Strings = std::vector<std::string>;

std::string fixture(const std::string& name) {
  return std::string(ENGRAM_FIXTURES) + "/data/" + name;
}

// The message of the UserError `f` throws ("" and a test failure when it throws none).
template <typename F>
std::string user_error(F&& f) {
  try {
    f();
  } catch (const UserError& e) {
    return e.what();
  }
  ADD_FAILURE() << "no UserError";
  return "";
}

// A fresh directory per test for files the test writes.
class TempDir {
 public:
  TempDir() {
    path_ = fs::temp_directory_path() /
            ("engram-readers-" + std::to_string(::getpid()) + "-" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string file(const std::string& name, const std::string& content = "") const {
    const std::string path = (path_ / name).string();
    if (!content.empty()) std::ofstream(path, std::ios::binary) << content;
    return path;
  }

 private:
  fs::path path_;
};

// ---------------------------------------------------------------------------------------------
// io::LineReader / io::JsonlReader / io::JsonlWriter

TEST(LineReader, SplitsLfCrlfAndKeepsALastLineWithoutNewline) {
  TempDir dir;
  const std::string path = dir.file("lines.txt", "\xEF\xBB\xBFone\r\ntwo\n\nthree");
  engram::io::LineReader reader(path);
  std::string_view line;
  Strings lines;
  std::vector<int64_t> numbers;
  while (reader.next(line)) {
    lines.emplace_back(line);
    numbers.push_back(reader.line());
  }
  EXPECT_EQ(lines, (Strings{"one", "two", "", "three"}));
  EXPECT_EQ(numbers, (std::vector<int64_t>{1, 2, 3, 4}));
  EXPECT_EQ(reader.bytes_read(), 18);
}

TEST(LineReader, LinesLongerThanTheBufferArriveWhole) {
  TempDir dir;
  const std::string long_line(3 << 20, 'x');  // three 1 MiB chunks
  const std::string path = dir.file("long.txt", "a\n" + long_line + "\nb\n");
  engram::io::LineReader reader(path);
  std::string_view line;
  ASSERT_TRUE(reader.next(line));
  EXPECT_EQ(line, "a");
  ASSERT_TRUE(reader.next(line));
  EXPECT_EQ(line.size(), long_line.size());
  EXPECT_EQ(line, long_line);
  ASSERT_TRUE(reader.next(line));
  EXPECT_EQ(line, "b");
  EXPECT_FALSE(reader.next(line));
}

TEST(LineReader, MissingFileIsAUserError) {
  const std::string message = user_error([] { engram::io::LineReader("/nonexistent/x.jsonl"); });
  EXPECT_EQ(message, "/nonexistent/x.jsonl: cannot open: No such file or directory");
}

TEST(JsonlReader, SkipsBlankLinesAndReportsLineNumbers) {
  engram::io::JsonlReader reader(fixture("native.jsonl"));
  nlohmann::json value;
  std::vector<int64_t> lines;
  while (reader.next(value)) lines.push_back(reader.line());
  EXPECT_EQ(lines, (std::vector<int64_t>{1, 3, 4, 5}));
}

TEST(JsonlReader, MalformedLineNamesFileAndLineAndReadingGoesOn) {
  const std::string path = fixture("native_bad.jsonl");
  engram::io::JsonlReader reader(path);
  nlohmann::json value;
  ASSERT_TRUE(reader.next(value));
  EXPECT_EQ(value["id"], "ok-1");
  try {
    reader.next(value);
    FAIL() << "no error";
  } catch (const engram::io::BadRecord& e) {
    EXPECT_EQ(std::string(e.what()),
              path +
                  ":2: invalid JSON: column 26: syntax error while parsing value - unexpected "
                  "end of input; expected '[', '{', or a literal");
  }
  ASSERT_TRUE(reader.next(value));
  EXPECT_EQ(reader.line(), 3);
}

TEST(JsonlWriter, RoundTripAndTheFileAppearsOnlyAtClose) {
  TempDir dir;
  const std::string path = dir.file("out.jsonl");
  const nlohmann::json first = {{"id", "a"}, {"text", "line\nbreak, \"quotes\", café"}};
  const nlohmann::json second = {{"id", "b"}, {"n", 3}};
  {
    engram::io::JsonlWriter writer(path);
    writer.write(first);
    writer.write(second);
    EXPECT_FALSE(fs::exists(path));
    EXPECT_TRUE(fs::exists(path + ".tmp"));
    writer.close();
    EXPECT_TRUE(fs::exists(path));
    EXPECT_FALSE(fs::exists(path + ".tmp"));
  }
  engram::io::JsonlReader reader(path);
  nlohmann::json value;
  ASSERT_TRUE(reader.next(value));
  EXPECT_EQ(value, first);
  ASSERT_TRUE(reader.next(value));
  EXPECT_EQ(value, second);
  EXPECT_FALSE(reader.next(value));
  EXPECT_EQ(reader.line(), 2);
}

TEST(JsonlWriter, AnUnclosedWriterLeavesNoFile) {
  TempDir dir;
  const std::string path = dir.file("abandoned.jsonl");
  {
    engram::io::JsonlWriter writer(path);
    writer.write({{"id", "x"}});
  }
  EXPECT_FALSE(fs::exists(path));
  EXPECT_FALSE(fs::exists(path + ".tmp"));
}

TEST(JsonlWriter, InvalidUtf8IsReplacedNotFatal) {
  TempDir dir;
  const std::string path = dir.file("bad-utf8.jsonl");
  engram::io::JsonlWriter writer(path);
  writer.write({{"text", std::string("a\xFF"
                                     "b")}});
  writer.close();
  engram::io::JsonlReader reader(path);
  nlohmann::json value;
  ASSERT_TRUE(reader.next(value));
  EXPECT_EQ(value["text"],
            "a\xEF\xBF\xBD"
            "b");
}

// ---------------------------------------------------------------------------------------------
// io::CsvReader

TEST(CsvReader, QuotesCommasDoubledQuotesEmbeddedNewlinesBomCrlf) {
  engram::io::CsvReader csv(fixture("streamingqa.csv"));
  EXPECT_EQ(csv.header(), (Strings{"question", "answers", "text", "publication_date"}));
  Strings fields;
  ASSERT_TRUE(csv.next(fields));
  EXPECT_EQ(csv.line(), 2);
  EXPECT_EQ(fields[2], "Dickens wrote it, in 1850.");
  ASSERT_TRUE(csv.next(fields));
  EXPECT_EQ(csv.line(), 3);
  EXPECT_EQ(fields, (Strings{"What did he say, \"exactly\"?", "Yes\\No\\OK",
                             "He said \"yes\".\nIt spanned two lines.", "1577836800.0"}));
  ASSERT_TRUE(csv.next(fields));
  EXPECT_EQ(csv.line(), 6);  // line 5 is empty
  ASSERT_TRUE(csv.next(fields));
  EXPECT_EQ(csv.line(), 7);
  EXPECT_EQ(fields[3], "");
  EXPECT_FALSE(csv.next(fields));
}

TEST(CsvReader, ColumnLookup) {
  const std::string path = fixture("archivalqa.csv");
  engram::io::CsvReader csv(path);
  EXPECT_EQ(csv.column("answer"), 3u);
  EXPECT_FALSE(csv.find_column("answers").has_value());
  EXPECT_EQ(user_error([&] { csv.column("answers"); }),
            path +
                ": missing column 'answers' (columns: doc_id, para_num, question, answer, "
                "ans_paragraph, ans_text)");
}

TEST(CsvReader, WrongFieldCountNamesTheLineAndReadingGoesOn) {
  const std::string path = fixture("bad_fields.csv");
  engram::io::CsvReader csv(path);
  Strings fields;
  ASSERT_TRUE(csv.next(fields));
  EXPECT_EQ(user_error([&] { csv.next(fields); }), path + ":3: expected 3 fields, found 4");
  ASSERT_TRUE(csv.next(fields));
  EXPECT_EQ(fields[2], "t3, quoted");
  EXPECT_EQ(user_error([&] { csv.next(fields); }), path + ":5: expected 3 fields, found 2");
  ASSERT_TRUE(csv.next(fields));
  EXPECT_EQ(fields[0], "q5");
  EXPECT_FALSE(csv.next(fields));
}

TEST(CsvReader, UnterminatedQuoteNamesTheLineWhereItOpened) {
  const std::string path = fixture("bad_quote.csv");
  engram::io::CsvReader csv(path);
  Strings fields;
  ASSERT_TRUE(csv.next(fields));
  EXPECT_EQ(user_error([&] { csv.next(fields); }),
            path + ":3: unterminated quoted field (the quote opened on this line never closes)");
  EXPECT_FALSE(csv.next(fields));
}

TEST(CsvReader, LenientQuotesAndEmptyFile) {
  TempDir dir;
  engram::io::CsvReader csv(dir.file("lenient.csv", "a,b\nx\"y,\"q\"z\n,\n"));
  Strings fields;
  ASSERT_TRUE(csv.next(fields));
  EXPECT_EQ(fields, (Strings{"x\"y", "qz"}));
  ASSERT_TRUE(csv.next(fields));
  EXPECT_EQ(fields, (Strings{"", ""}));
  const std::string empty = dir.file("empty.csv", "\n");
  EXPECT_EQ(user_error([&] { engram::io::CsvReader reader(empty); }),
            empty + ": empty file (expected a header row)");
}

// ---------------------------------------------------------------------------------------------
// data::detect_format

TEST(DetectFormat, EachFixture) {
  EXPECT_EQ(engram::data::detect_format(fixture("native.jsonl")), Format::Jsonl);
  EXPECT_EQ(engram::data::detect_format(fixture("streamingqa.csv")), Format::StreamingQaCsv);
  EXPECT_EQ(engram::data::detect_format(fixture("archivalqa.csv")), Format::ArchivalQaCsv);
  EXPECT_EQ(engram::data::detect_format(fixture("squad.json")), Format::SquadJson);
  EXPECT_EQ(engram::data::format_name(Format::SquadJson), "squad-json");
}

TEST(DetectFormat, RejectionsListWhatIsAccepted) {
  TempDir dir;
  const std::string csv = dir.file("other.csv", "a,b\n1,2\n");
  const std::string json = dir.file("other.json", "{\"rows\": []}");
  const std::string txt = dir.file("notes.txt", "hello");
  const std::string accepted =
      "accepted: .jsonl (native documents), .json (SQuAD v1.1), .csv (StreamingQA: text, "
      "question, answers; ArchivalQA: question, answer, ans_paragraph or ans_text, doc_id, "
      "para_num)";
  EXPECT_EQ(user_error([&] { engram::data::detect_format(csv); }),
            csv + ": unrecognised CSV columns (a, b); " + accepted);
  EXPECT_EQ(user_error([&] { engram::data::detect_format(json); }),
            json +
                ": not a SQuAD v1.1 file (expected a \"data\" array of articles with "
                "\"paragraphs\"); " +
                accepted);
  EXPECT_EQ(user_error([&] { engram::data::detect_format(txt); }),
            txt + ": unknown data file type; " + accepted);
}

// ---------------------------------------------------------------------------------------------
// data readers

TEST(NativeJsonl, ReadsEveryField) {
  ReadStats stats;
  const auto docs = read_all(fixture("native.jsonl"), {}, &stats);
  ASSERT_EQ(docs.size(), 4u);
  EXPECT_EQ(docs[0].id, "doc-1");
  EXPECT_EQ(docs[0].text, "Oskar lives in Paris.");
  EXPECT_EQ(docs[0].time, 1700000000);
  ASSERT_EQ(docs[0].qa.size(), 1u);
  EXPECT_EQ(docs[0].qa[0].question, "Where does Oskar live?");
  EXPECT_EQ(docs[0].qa[0].answers, (Strings{"Paris", "in Paris"}));
  EXPECT_EQ(docs[1].id, "doc-2");
  EXPECT_FALSE(docs[1].time.has_value());
  EXPECT_TRUE(docs[1].qa.empty());
  EXPECT_EQ(docs[2].time, -5);
  ASSERT_EQ(docs[2].qa.size(), 2u);
  EXPECT_EQ(docs[2].qa[1].answers, (Strings{"café", "A2"}));  // native answers stay as written
  EXPECT_FALSE(docs[2].qa[0].heldout);
  EXPECT_TRUE(docs[2].qa[1].heldout);
  EXPECT_FALSE(docs[3].time.has_value());
  EXPECT_TRUE(docs[3].qa.empty());
  EXPECT_EQ(stats.rows, 4);
  EXPECT_EQ(stats.documents, 4);
  EXPECT_EQ(stats.questions, 3);
  EXPECT_EQ(stats.bad_rows, 0);
}

TEST(NativeJsonl, HeldoutMustBeABoolean) {
  const std::string path = ::testing::TempDir() + "heldout_bad.jsonl";
  std::ofstream(path) << R"({"id": "a", "text": "t", "qa": [{"question": "q", "answers": ["x"], "heldout": "yes"}]})"
                      << "\n";
  engram::data::DocumentReader reader(path);
  Document doc;
  EXPECT_EQ(user_error([&] { reader.next(doc); }), path + ":1: field 'qa[0].heldout' must be a boolean, found string");
}

TEST(NativeJsonl, BadRowStopsTheReadByDefault) {
  const std::string path = fixture("native_bad.jsonl");
  engram::data::DocumentReader reader(path);
  Document doc;
  ASSERT_TRUE(reader.next(doc));
  EXPECT_EQ(doc.id, "ok-1");
  EXPECT_EQ(user_error([&] { reader.next(doc); }).substr(0, path.size() + 18),
            path + ":2: invalid JSON: ");
}

TEST(NativeJsonl, SkipModeCountsBadRowsAndKeepsTheFirstFiveMessages) {
  const std::string path = fixture("native_bad.jsonl");
  ReadOptions options;
  options.skip_bad_rows = true;
  ReadStats stats;
  const auto docs = read_all(path, options, &stats);
  ASSERT_EQ(docs.size(), 2u);
  EXPECT_EQ(docs[0].id, "ok-1");
  EXPECT_EQ(docs[1].id, "ok-2");
  EXPECT_EQ(stats.rows, 8);
  EXPECT_EQ(stats.documents, 2);
  EXPECT_EQ(stats.bad_rows, 6);
  ASSERT_EQ(stats.first_errors.size(), 5u);
  EXPECT_EQ(stats.first_errors[0].rfind(path + ":2: invalid JSON: ", 0), 0u);
  EXPECT_EQ(stats.first_errors[1], path + ":3: missing field 'text'");
  EXPECT_EQ(stats.first_errors[2], path + ":4: field 'id' must be a string, found number");
  EXPECT_EQ(stats.first_errors[3],
            path + ":5: field 'qa[0].answers' must be a non-empty array, found an empty one");
  EXPECT_EQ(stats.first_errors[4],
            path + ":6: field 'time' must be an integer (seconds since the epoch), found string");
  // The sixth bad row (line 7, "[1, 2]") is counted but its message is not kept.
}

TEST(StreamingQa, ShortestAnswerFirstAllKeptTimeInSecondsOrIsoDate) {
  ReadStats stats;
  const auto docs = read_all(fixture("streamingqa.csv"), {}, &stats);
  ASSERT_EQ(docs.size(), 4u);
  EXPECT_EQ(docs[0].id, "row-0");
  EXPECT_EQ(docs[0].text, "Dickens wrote it, in 1850.");
  EXPECT_EQ(docs[0].time, 1577836800);
  ASSERT_EQ(docs[0].qa.size(), 1u);
  EXPECT_EQ(docs[0].qa[0].question, "Who wrote it?");
  EXPECT_EQ(docs[0].qa[0].answers, (Strings{"Dickens", "Charles Dickens", "C. Dickens"}));

  EXPECT_EQ(docs[1].id, "row-1");
  EXPECT_EQ(docs[1].qa[0].question, "What did he say, \"exactly\"?");
  EXPECT_EQ(docs[1].text, "He said \"yes\".\nIt spanned two lines.");
  EXPECT_EQ(docs[1].qa[0].answers, (Strings{"No", "Yes", "OK"}));  // first of the shortest
  EXPECT_EQ(docs[1].time, 1577836800);                             // "1577836800.0"

  EXPECT_EQ(docs[2].id, "row-2");
  EXPECT_EQ(docs[2].qa[0].answers, (Strings{"London"}));  // empty pieces dropped
  EXPECT_EQ(docs[2].time, 1577836800);                    // "2020-01-01"

  EXPECT_EQ(docs[3].id, "row-3");
  EXPECT_EQ(docs[3].qa[0].answers, (Strings{"Zürich", "Zurichs"}));  // length in characters
  EXPECT_FALSE(docs[3].time.has_value());
  EXPECT_EQ(stats.questions, 4);
}

TEST(StreamingQa, IdColumnAndRowsWithoutAnswers) {
  TempDir dir;
  const std::string path =
      dir.file("sqa.csv", "id,text,question,answers\nx-1,t,q,a\nx-2,t,q,\\\nx-3,t,q,b\n");
  EXPECT_EQ(user_error([&] { read_all(path); }), path + ":3: column 'answers' holds no answer");
  ReadOptions options;
  options.skip_bad_rows = true;
  ReadStats stats;
  const auto docs = read_all(path, options, &stats);
  ASSERT_EQ(docs.size(), 2u);
  EXPECT_EQ(docs[0].id, "x-1");
  EXPECT_EQ(docs[1].id, "x-3");
  EXPECT_EQ(stats.bad_rows, 1);
}

TEST(StreamingQa, ATimeThatIsNotATimeIsABadRow) {
  TempDir dir;
  const std::string path = dir.file("sqa.csv", "text,question,answers,publication_date\n"
                                               "t,q,a,2021-03-04T05:06:07\nt,q,b,next tuesday\nt,q,c,\n");
  EXPECT_EQ(user_error([&] { read_all(path); }),
            path + ":3: column 'publication_date': 'next tuesday' is not a time (expected seconds since "
                   "1970-01-01, or a date YYYY-MM-DD, optionally THH:MM:SS)");
  ReadOptions options;
  options.skip_bad_rows = true;
  ReadStats stats;
  const auto docs = read_all(path, options, &stats);
  ASSERT_EQ(docs.size(), 2u);
  EXPECT_EQ(docs[0].time, 1614834367);  // 2021-03-04 05:06:07 UTC
  EXPECT_FALSE(docs[1].time.has_value());  // an empty field: no time
  EXPECT_EQ(stats.bad_rows, 1);
}

TEST(StreamingQa, WrongFieldCountsInSkipModeAndFatalQuote) {
  const std::string path = fixture("bad_fields.csv");
  EXPECT_EQ(user_error([&] { read_all(path); }), path + ":3: expected 3 fields, found 4");
  ReadOptions options;
  options.skip_bad_rows = true;
  ReadStats stats;
  const auto docs = read_all(path, options, &stats);
  ASSERT_EQ(docs.size(), 3u);
  EXPECT_EQ(docs[0].id, "row-0");
  EXPECT_EQ(docs[1].id, "row-2");  // rows keep their place in the file
  EXPECT_EQ(docs[2].id, "row-4");
  EXPECT_EQ(stats.rows, 5);
  EXPECT_EQ(stats.bad_rows, 2);
  EXPECT_EQ(stats.first_errors, (Strings{path + ":3: expected 3 fields, found 4",
                                         path + ":5: expected 3 fields, found 2"}));
  // An unterminated quote swallows the rest of the file: not a bad row, even in skip mode.
  const std::string quote = fixture("bad_quote.csv");
  EXPECT_EQ(user_error([&] { read_all(quote, options); }),
            quote + ":3: unterminated quoted field (the quote opened on this line never closes)");
}

TEST(ArchivalQa, IdsPassagesAndUpperCasedAnswers) {
  ReadStats stats;
  const auto docs = read_all(fixture("archivalqa.csv"), {}, &stats);
  ASSERT_EQ(docs.size(), 3u);
  EXPECT_EQ(docs[0].id, "nyt-001-0");
  EXPECT_EQ(docs[0].text, "The Yankees won, 3-2.");
  EXPECT_EQ(docs[0].qa[0].question, "Who won?");
  EXPECT_EQ(docs[0].qa[0].answers, (Strings{"The Yankees"}));
  EXPECT_FALSE(docs[0].time.has_value());
  EXPECT_EQ(docs[1].id, "nyt-001-1");
  EXPECT_EQ(docs[1].qa[0].answers, (Strings{"1987"}));
  EXPECT_EQ(docs[2].id, "nyt-002-3");
  EXPECT_EQ(docs[2].qa[0].answers, (Strings{"élan city"}));  // ASCII letters only
  EXPECT_EQ(stats.documents, 3);
  EXPECT_EQ(stats.questions, 3);

  ReadOptions full;
  full.archival_full_passage = true;
  const auto articles = read_all(fixture("archivalqa.csv"), full);
  ASSERT_EQ(articles.size(), 3u);
  EXPECT_EQ(articles[0].text, "Full article. The Yankees won, 3-2. More.");
}

TEST(ArchivalQa, MissingParaNum) {
  TempDir dir;
  const std::string path = dir.file("arch.csv", "question,answer,ans_paragraph,doc_id\nq,a,p,d\n");
  EXPECT_EQ(engram::data::detect_format(path), Format::ArchivalQaCsv);
  EXPECT_EQ(
      user_error([&] { read_all(path); }),
      path + ": missing column 'para_num' (columns: question, answer, ans_paragraph, doc_id)");
}

TEST(Squad, OneDocumentPerParagraphDistinctAnswersShortestFirst) {
  ReadStats stats;
  const auto docs = read_all(fixture("squad.json"), {}, &stats);
  ASSERT_EQ(docs.size(), 3u);
  EXPECT_EQ(docs[0].id, "Super_Bowl_50-0");
  EXPECT_EQ(docs[0].text, "Super Bowl 50 was played in Santa Clara, California.");
  EXPECT_FALSE(docs[0].time.has_value());
  ASSERT_EQ(docs[0].qa.size(), 2u);
  EXPECT_EQ(docs[0].qa[0].question, "Where was Super Bowl 50 played?");
  EXPECT_EQ(docs[0].qa[0].answers, (Strings{"Santa Clara", "Santa Clara, California"}));
  EXPECT_EQ(docs[0].qa[1].answers, (Strings{"50", "Super Bowl 50"}));
  EXPECT_EQ(docs[1].id, "Super_Bowl_50-1");
  ASSERT_EQ(docs[1].qa.size(), 1u);
  // "the Broncos" -> "The Broncos"; "broncos" -> "Broncos", the same text as the other one.
  EXPECT_EQ(docs[1].qa[0].answers, (Strings{"Broncos", "The Broncos"}));
  EXPECT_EQ(docs[2].id, "Warsaw-0");
  ASSERT_EQ(docs[2].qa.size(), 2u);
  EXPECT_EQ(docs[2].qa[0].answers, (Strings{"The capital", "Capital of Poland"}));
  EXPECT_EQ(docs[2].qa[1].answers, (Strings{"Poland"}));
  EXPECT_EQ(stats.rows, 3);
  EXPECT_EQ(stats.questions, 5);
}

TEST(Squad, BadParagraphsAndArticlesNameTheirPlace) {
  TempDir dir;
  const std::string path =
      dir.file("bad.json",
               R"({"data": [{"title": "A", "paragraphs": [{"context": "c0", "qas": []},
                                                {"context": 5},
                                                {"context": "c2", "qas": [{"question": "q", "answers": [{"text": 3}]}]},
                                                {"context": "c3"}]},
                   {"paragraphs": []},
                   {"title": "C", "paragraphs": [{"context": "c4"}]}]})");
  EXPECT_EQ(user_error([&] { read_all(path); }),
            path + ": data[0].paragraphs[1]: field 'context' must be a string, found number");
  ReadOptions options;
  options.skip_bad_rows = true;
  ReadStats stats;
  const auto docs = read_all(path, options, &stats);
  ASSERT_EQ(docs.size(), 3u);
  EXPECT_EQ(docs[0].id, "A-0");
  EXPECT_EQ(docs[1].id, "A-3");
  EXPECT_EQ(docs[2].id, "C-0");
  EXPECT_EQ(stats.bad_rows, 3);
  EXPECT_EQ(
      stats.first_errors,
      (Strings{path + ": data[0].paragraphs[1]: field 'context' must be a string, found number",
               path + ": data[0].paragraphs[2]: field 'qas[0].answers[0].text' must be a string, "
                      "found number",
               path + ": data[1]: missing field 'title'"}));
}

TEST(JsonlReader, ANumberThatOverflowsIsABadRecordNamingFileAndLine) {
  TempDir dir;
  const std::string path = dir.file("big.jsonl", "{\"id\": \"a\", \"text\": \"x\"}\n{\"id\": \"b\", \"time\": 1e400}\n");
  engram::io::JsonlReader reader(path);
  nlohmann::json value;
  ASSERT_TRUE(reader.next(value));
  try {
    reader.next(value);
    FAIL() << "1e400 was read";
  } catch (const engram::io::BadRecord& e) {
    EXPECT_EQ(std::string(e.what()), path + ":2: invalid JSON: number overflow parsing '1e400'");
  }
}

TEST(Squad, NotSquadAndInvalidJson) {
  TempDir dir;
  const std::string other = dir.file("other.json", "[1, 2]");
  EXPECT_EQ(user_error([&] { read_all(other); }),
            other +
                ": not a SQuAD v1.1 file (expected a \"data\" array of articles with "
                "\"paragraphs\")");
  const std::string broken = dir.file("broken.json", "{\"data\": [\n  {\"title\": }\n]}");
  EXPECT_EQ(user_error([&] { read_all(broken); }),
            broken +
                ": invalid JSON: parse error at line 2, column 13: syntax error while "
                "parsing value - unexpected '}'; expected '[', '{', or a literal");
}

TEST(DocumentReader, StreamsAndReportsFormatAndBytes) {
  const std::string path = fixture("native.jsonl");
  engram::data::DocumentReader reader(path);
  EXPECT_EQ(reader.format(), Format::Jsonl);
  Document doc;
  int count = 0;
  while (reader.next(doc)) ++count;
  EXPECT_EQ(count, 4);
  EXPECT_EQ(reader.bytes_read(), static_cast<int64_t>(fs::file_size(path)));
  EXPECT_EQ(reader.stats().documents, 4);
  EXPECT_FALSE(reader.next(doc));  // stays at the end
}

}  // namespace
