// io/safetensors: exact round trips, a hand-built file, malformed files (always a UserError with a
// clear message, never a crash), random byte flips, and sharded indexes.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include <ATen/ATen.h>

#include "core/error.h"
#include "io/safetensors.h"

namespace fs = std::filesystem;
using engram::core::UserError;
using namespace engram::io;

namespace {

class TempDir {
 public:
  TempDir() {
    std::random_device rd;
    path_ = fs::temp_directory_path() / ("engram_st_" + std::to_string(::getpid()) + "_" + std::to_string(rd()));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

std::string le64(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  return s;
}

// A file image from a header text and a data buffer.
std::string image(const std::string& header, const std::string& data) { return le64(header.size()) + header + data; }

template <typename T>
std::string bytes_of(std::initializer_list<T> values) {
  std::string s;
  for (T v : values) s.append(reinterpret_cast<const char*>(&v), sizeof(T));
  return s;
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Both the in-memory parser and the file reader must reject `bytes` with a UserError whose message
// names the file and contains `fragment`.
void expect_bad(const std::string& bytes, const std::string& fragment) {
  TempDir dir;
  const std::string path = dir.file("bad.safetensors");
  write_bytes(path, bytes);
  for (int mode = 0; mode < 2; ++mode) {
    SCOPED_TRACE(mode == 0 ? "parse_safetensors" : "read_safetensors");
    try {
      if (mode == 0)
        parse_safetensors(bytes, path);
      else
        read_safetensors(path);
      ADD_FAILURE() << "no error; expected one containing: " << fragment;
    } catch (const UserError& e) {
      std::string what = e.what();
      EXPECT_NE(what.find(path + ": "), std::string::npos) << what;
      EXPECT_NE(what.find(fragment), std::string::npos) << "message: " << what << "\nexpected: " << fragment;
    }
  }
}

const std::string kGoodHeader =
    R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"I64","shape":[1,1],"data_offsets":[8,16]}})";

}  // namespace

TEST(Safetensors, RoundTripIsExact) {
  TempDir dir;
  at::manual_seed(7);
  std::vector<std::pair<std::string, at::Tensor>> tensors = {
      {"f32", at::randn({3, 5})},
      {"f16", at::randn({4, 2, 3}).to(at::kHalf)},
      {"bf16", at::randn({7}).to(at::kBFloat16)},
      {"f64", at::randn({2, 2}, at::kDouble)},
      {"i64", at::randint(-1000, 1000, {6}, at::kLong)},
      {"i32", at::randint(-1000, 1000, {2, 3}, at::kInt)},
      {"u8", at::randint(0, 255, {5}, at::kByte)},
      {"bool", at::randint(0, 2, {9}, at::kByte).ne(0)},
      {"scalar", at::scalar_tensor(3.25f)},
      {"empty", at::empty({0, 4})},
      {"strided", at::randn({4, 6}).t()},  // non-contiguous input
  };
  std::map<std::string, std::string> metadata = {{"format", "pt"}, {"note", "héllo"}};
  const std::string path = dir.file("model.safetensors");
  write_safetensors(path, tensors, metadata);
  EXPECT_FALSE(fs::exists(path + ".tmp"));

  std::string bytes = read_bytes(path);
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ((8 + n) % 8, 0u) << "header is padded to 8 bytes";
  EXPECT_EQ(bytes[8], '{');

  SafetensorsContents got = read_safetensors(path);
  EXPECT_EQ(got.metadata, metadata);
  ASSERT_EQ(got.tensors.size(), tensors.size());
  for (const auto& [name, t] : tensors) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(got.tensors.count(name));
    const at::Tensor& g = got.tensors.at(name);
    EXPECT_EQ(g.scalar_type(), t.scalar_type());
    EXPECT_EQ(g.sizes(), t.sizes());
    EXPECT_TRUE(g.equal(t));
  }
  // The reference layout: larger dtypes first, then by name.
  SafetensorsHeader header = read_safetensors_header(path);
  EXPECT_EQ(header.tensors.front().dtype, "I64");
  EXPECT_EQ(header.tensors.back().dtype, "BOOL");
  EXPECT_EQ(header.data_start, 8 + n);

  // to_float32 converts floating tensors only.
  SafetensorsContents f32 = read_safetensors(path, {/*to_float32=*/true});
  EXPECT_EQ(f32.tensors.at("f16").scalar_type(), at::kFloat);
  EXPECT_EQ(f32.tensors.at("bf16").scalar_type(), at::kFloat);
  EXPECT_EQ(f32.tensors.at("f64").scalar_type(), at::kFloat);
  EXPECT_EQ(f32.tensors.at("i64").scalar_type(), at::kLong);
  EXPECT_TRUE(f32.tensors.at("f16").equal(tensors[1].second.to(at::kFloat)));
  EXPECT_TRUE(f32.tensors.at("bf16").equal(tensors[2].second.to(at::kFloat)));

  // Overwriting an existing file works (atomic rename).
  write_safetensors(path, std::map<std::string, at::Tensor>{{"x", at::ones({2})}});
  EXPECT_EQ(read_safetensors(path).names, std::vector<std::string>{"x"});
}

TEST(Safetensors, HandBuiltFileParsesToExactValues) {
  const std::string header =
      R"({"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},)"
      R"("h":{"dtype":"F16","shape":[2],"data_offsets":[16,20]},"b":{"dtype":"BF16","shape":[2],"data_offsets":[20,24]},)"
      R"("n":{"dtype":"I64","shape":[],"data_offsets":[24,32]},"z":{"dtype":"F32","shape":[0,3],"data_offsets":[32,32]}})";
  std::string data = bytes_of<float>({1.5f, -2.0f, 0.25f, 1e-3f});
  data += bytes_of<uint16_t>({0x3C00, 0xC000});  // F16 1.0, -2.0
  data += bytes_of<uint16_t>({0x3F80, 0x4040});  // BF16 1.0, 3.0
  data += bytes_of<int64_t>({-1234567890123LL});
  std::string bytes = image(header, data);
  for (int mode = 0; mode < 2; ++mode) {
    TempDir dir;
    SafetensorsContents c;
    if (mode == 0) {
      c = parse_safetensors(bytes, "mem");
    } else {
      write_bytes(dir.file("h.safetensors"), bytes);
      c = read_safetensors(dir.file("h.safetensors"));
    }
    EXPECT_EQ(c.metadata.at("format"), "pt");
    EXPECT_EQ(c.names, (std::vector<std::string>{"w", "h", "b", "n", "z"}));
    at::Tensor w = c.tensors.at("w");
    ASSERT_EQ(w.sizes(), (std::vector<int64_t>{2, 2}));
    EXPECT_EQ(w[0][0].item<float>(), 1.5f);
    EXPECT_EQ(w[0][1].item<float>(), -2.0f);
    EXPECT_EQ(w[1][0].item<float>(), 0.25f);
    EXPECT_EQ(w[1][1].item<float>(), 1e-3f);
    EXPECT_EQ(c.tensors.at("h").scalar_type(), at::kHalf);
    EXPECT_TRUE(c.tensors.at("h").to(at::kFloat).equal(at::tensor({1.0f, -2.0f})));
    EXPECT_EQ(c.tensors.at("b").scalar_type(), at::kBFloat16);
    EXPECT_TRUE(c.tensors.at("b").to(at::kFloat).equal(at::tensor({1.0f, 3.0f})));
    EXPECT_EQ(c.tensors.at("n").dim(), 0);
    EXPECT_EQ(c.tensors.at("n").item<int64_t>(), -1234567890123LL);
    EXPECT_EQ(c.tensors.at("z").numel(), 0);
  }
}

TEST(Safetensors, MalformedFilesAreUserErrors) {
  const std::string good_data = bytes_of<float>({1.f, 2.f}) + bytes_of<int64_t>({3});
  const std::string good = image(kGoodHeader, good_data);
  EXPECT_NO_THROW(parse_safetensors(good, "good"));

  expect_bad("", "shorter than the 8-byte header length");
  expect_bad("abc", "shorter than the 8-byte header length");
  expect_bad(good.substr(0, good.size() - 3), "out of range");                   // truncated data
  expect_bad(good.substr(0, 8 + kGoodHeader.size() / 2), "is larger than the");  // truncated header
  expect_bad(le64(1000) + "{}", "header length 1000 is larger than the 2 bytes after it");
  expect_bad(le64(uint64_t{1} << 40) + "{}", "byte limit");
  expect_bad(le64(~uint64_t{0}) + "{}", "byte limit");
  expect_bad(image("{\"a\":", ""), "invalid JSON");
  expect_bad(image("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}xyz", "abcd"), "invalid JSON");
  expect_bad(image("[1,2]", ""), "does not start with '{'");
  expect_bad(image("{\"a\":\"\xff\xfe\"}", ""), "invalid JSON");  // invalid UTF-8
  expect_bad(image(std::string(100, '['), ""), "does not start with");
  expect_bad(image("{\"a\":" + std::string(100, '[') + std::string(100, ']') + "}", ""), "nested deeper");
  expect_bad(image(R"({"a":{"dtype":"F8_E4M3","shape":[1],"data_offsets":[0,1]}})", "x"),
             "unknown or unsupported dtype 'F8_E4M3' (tensor 'a')");
  expect_bad(image(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", good_data.substr(0, 8)),
             "needs 12 bytes but data_offsets [0, 8] hold 8 (tensor 'a')");
  expect_bad(image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"I64","shape":[1],"data_offsets":[8,16]}})",
                   good_data.substr(0, 12)),
             "out of range: the data buffer has 12 bytes (truncated file?) (tensor 'b')");
  expect_bad(image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                   good_data.substr(0, 12)),
             "overlaps tensor 'a'");
  expect_bad(image(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                   good_data.substr(0, 12)),
             "gap of 4 unused bytes");
  expect_bad(image(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", good_data.substr(0, 12)),
             "8 trailing bytes");
  expect_bad(image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
                   good_data),
             "duplicate name (tensor 'a')");
  expect_bad(image(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", good_data.substr(0, 8)),
             "dimension 0 is negative (-2) (tensor 'a')");
  expect_bad(image(R"({"a":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}})", good_data.substr(0, 8)),
             "not an integer");
  expect_bad(image(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,8]}})",
                   good_data.substr(0, 8)),
             "overflows (tensor 'a')");
  expect_bad(image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", good_data.substr(0, 8)),
             "end 0 is before begin 8");
  expect_bad(image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", good_data.substr(0, 8)),
             "\"data_offsets\" is not an array of two integers (tensor 'a')");
  expect_bad(image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}})", good_data.substr(0, 8)),
             "is negative");
  expect_bad(image(R"({"a":{"shape":[2],"data_offsets":[0,8]}})", good_data.substr(0, 8)), "\"dtype\" (tensor 'a')");
  expect_bad(image(R"({"a":{"dtype":"F32","data_offsets":[0,8]}})", good_data.substr(0, 8)), "\"shape\" (tensor 'a')");
  expect_bad(image(R"({"a":[1,2]})", ""), "entry is not an object (tensor 'a')");
  expect_bad(image(R"({"__metadata__":{"k":1}})", ""), "\"__metadata__\" entry 'k' is not a string");
  expect_bad(image(R"({"__metadata__":[]})", ""), "\"__metadata__\" is not an object");

  TempDir dir;
  EXPECT_THROW(read_safetensors(dir.file("missing.safetensors")), UserError);
  try {
    read_safetensors(dir.file(""));  // a directory
    ADD_FAILURE();
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("not a regular file"), std::string::npos) << e.what();
  }
}

TEST(Safetensors, RandomByteFlipsNeverCrash) {
  TempDir dir;
  at::manual_seed(1);
  const std::string path = dir.file("small.safetensors");
  write_safetensors(path,
                    std::vector<std::pair<std::string, at::Tensor>>{{"a", at::randn({3})},
                                                                    {"bb", at::randn({2, 2}).to(at::kHalf)},
                                                                    {"c", at::randint(0, 9, {2}, at::kLong)},
                                                                    {"d", at::ones({1}, at::kBool)}},
                    {{"format", "pt"}});
  const std::string good = read_bytes(path);
  std::mt19937_64 rng(12345);
  int ok = 0, errors = 0;
  auto attempt = [&](const std::string& bytes) {
    try {
      SafetensorsContents c = parse_safetensors(bytes, "fuzz");
      for (auto& [name, t] : c.tensors) (void)t.sum();  // the tensors are usable
      ++ok;
    } catch (const UserError&) {
      ++errors;
    }
  };
  for (int iter = 0; iter < 4000; ++iter) {
    std::string bytes = good;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips; ++f) {
      // Mostly the length and the header, where the structure is.
      size_t limit = (rng() % 4 == 0) ? bytes.size() : std::min<size_t>(bytes.size(), 8 + 200);
      size_t pos = rng() % limit;
      if (rng() % 2)
        bytes[pos] = static_cast<char>(bytes[pos] ^ (1 << (rng() % 8)));
      else
        bytes[pos] = "0123456789{}[],:\"-eE. \x00\xff"[rng() % 24];
    }
    ASSERT_NO_FATAL_FAILURE(attempt(bytes)) << iter;
  }
  for (size_t cut = 0; cut < good.size(); ++cut) attempt(good.substr(0, cut));
  EXPECT_GT(errors, 100);
  EXPECT_GT(ok, 0);
}

TEST(Safetensors, WriterRejectsBadInput) {
  TempDir dir;
  const std::string path = dir.file("w.safetensors");
  using Vec = std::vector<std::pair<std::string, at::Tensor>>;
  EXPECT_THROW(write_safetensors(path, Vec{{"a", at::ones({1})}, {"a", at::ones({1})}}), UserError);
  EXPECT_THROW(write_safetensors(path, Vec{{"", at::ones({1})}}), UserError);
  EXPECT_THROW(write_safetensors(path, Vec{{"__metadata__", at::ones({1})}}), UserError);
  EXPECT_THROW(write_safetensors(path, Vec{{"c", at::ones({1}, at::kComplexFloat)}}), UserError);
  EXPECT_THROW(write_safetensors(dir.file("no/such/dir/w.safetensors"), Vec{{"a", at::ones({1})}}), UserError);
  EXPECT_FALSE(fs::exists(path));
  EXPECT_FALSE(fs::exists(path + ".tmp"));
}

TEST(Safetensors, ShardedIndex) {
  TempDir dir;
  at::manual_seed(3);
  at::Tensor a = at::randn({2, 3}), b = at::randn({4}), c = at::randn({1, 1});
  write_safetensors(dir.file("model-00001-of-00002.safetensors"), std::map<std::string, at::Tensor>{{"a", a}, {"b", b}});
  write_safetensors(dir.file("model-00002-of-00002.safetensors"), std::map<std::string, at::Tensor>{{"c", c}});
  const std::string index = dir.file("model.safetensors.index.json");
  write_bytes(index, R"({"metadata":{"total_size":40},"weight_map":{"a":"model-00001-of-00002.safetensors",)"
                     R"("b":"model-00001-of-00002.safetensors","c":"model-00002-of-00002.safetensors"}})");
  SafetensorsIndex idx = read_safetensors_index(index);
  EXPECT_EQ(idx.files.size(), 2u);
  EXPECT_EQ(idx.metadata.at("total_size"), "40");
  SafetensorsContents got = read_safetensors_sharded(index);
  ASSERT_EQ(got.tensors.size(), 3u);
  EXPECT_TRUE(got.tensors.at("a").equal(a));
  EXPECT_TRUE(got.tensors.at("b").equal(b));
  EXPECT_TRUE(got.tensors.at("c").equal(c));

  auto expect_index_error = [&](const std::string& text, const std::string& fragment) {
    write_bytes(index, text);
    try {
      read_safetensors_sharded(index);
      ADD_FAILURE() << "no error for " << text;
    } catch (const UserError& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
  };
  expect_index_error(R"({"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00001-of-00002.safetensors",)"
                     R"("c":"model-00002-of-00002.safetensors","d":"model-00002-of-00002.safetensors"}})",
                     "that shard does not contain it (tensor 'd')");
  expect_index_error(R"({"weight_map":{"a":"model-00001-of-00002.safetensors"}})",
                     "not in the index's weight_map (tensor 'b')");
  expect_index_error(R"({"weight_map":{"a":"../x.safetensors"}})", "invalid shard file '../x.safetensors'");
  expect_index_error(R"({"weight_map":{"a":"/etc/passwd"}})", "invalid shard file");
  expect_index_error(R"({"weight_map":{"a":3}})", "is not a file name (tensor 'a')");
  expect_index_error(R"({"weights":{}})", "\"weight_map\"");
  expect_index_error(R"({"weight_map":{"a":"missing.safetensors"}})", "cannot open");
  expect_index_error("{oops", "invalid JSON");
}
