#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <ATen/ATen.h>

#include "core/error.h"
#include "io/h5file.h"

using engram::io::H5File;

namespace {
std::string temp(const std::string& name) { return ::testing::TempDir() + name; }
}  // namespace

TEST(H5File, TensorsOfEveryDtypeRoundTrip) {
  const std::string path = temp("tensors.h5");
  at::manual_seed(3);
  std::vector<std::pair<std::string, at::Tensor>> tensors = {
      {"/a/f32", at::randn({3, 4})},
      {"/a/f64", at::randn({5}, at::kDouble)},
      {"/b/i64", at::arange(12, at::kLong).view({2, 2, 3})},
      {"/b/i32", at::arange(7, at::kInt)},
      {"/c/bf16", at::randn({4, 2}).to(at::kBFloat16)},
      {"/c/f16", at::randn({3}).to(at::kHalf)},
      {"/c/u8", at::arange(200, at::kByte)},
      {"/c/bool", at::tensor({1, 0, 1}).to(at::kBool)},
      {"/scalar", at::scalar_tensor(2.5)},
  };
  {
    H5File file(path, H5File::Mode::Create);
    for (const auto& [name, t] : tensors) file.write_tensor(name, t);
  }
  H5File file(path, H5File::Mode::Read);
  for (const auto& [name, t] : tensors) {
    at::Tensor back = file.read_tensor(name);
    EXPECT_EQ(back.scalar_type(), t.scalar_type()) << name;
    EXPECT_TRUE(back.equal(t)) << name;
  }
  EXPECT_EQ(file.list("/c"), (std::vector<std::string>{"bf16", "bool", "f16", "u8"}));
  EXPECT_TRUE(file.exists("/b/i64"));
  EXPECT_FALSE(file.exists("/b/nothing"));
  EXPECT_FALSE(file.exists("/zz/nothing"));
}

TEST(H5File, EmptyDatasetsReadBackEmpty) {
  // A dataset of no rows, created and never written (as a checkpoint stores a rank's empty
  // state), reads back as an empty tensor of its type, whole or as rows.
  const std::string path = temp("empty.h5");
  {
    H5File file(path, H5File::Mode::Create);
    file.create_dataset("/state/i64", at::kLong, {0});
    file.create_dataset("/state/f32", at::kFloat, {0, 3});
  }
  H5File file(path, H5File::Mode::Read);
  at::Tensor ids = file.read_tensor("/state/i64");
  EXPECT_EQ(ids.scalar_type(), at::kLong);
  EXPECT_EQ(ids.numel(), 0);
  at::Tensor rows = file.read_rows("/state/f32", 0, 0);
  EXPECT_EQ(rows.sizes(), (std::vector<int64_t>{0, 3}));
  EXPECT_THROW(file.read_rows("/state/f32", 0, 1), engram::core::UserError);
}

TEST(H5File, RowsExtendAndChecksum) {
  const std::string path = temp("rows.h5");
  {
    H5File file(path, H5File::Mode::Create);
    file.create_dataset("/bank/summaries", at::kFloat, {4, 2, 3}, 2, true, true);
    file.write_rows("/bank/summaries", 0, at::arange(24, at::kFloat).view({4, 2, 3}));
    file.extend("/bank/summaries", 6);
    file.write_rows("/bank/summaries", 4, at::full({2, 2, 3}, 7.0f));
    file.write_rows("/bank/summaries", 2, at::zeros({0, 2, 3}));  // an empty write is allowed
  }
  H5File file(path, H5File::Mode::ReadWrite);
  EXPECT_EQ(file.shape("/bank/summaries"), (std::vector<int64_t>{6, 2, 3}));
  at::Tensor rows = file.read_rows("/bank/summaries", 1, 4);
  EXPECT_EQ(rows[0][0][0].item<float>(), 6.0f);
  EXPECT_EQ(rows[3][1][2].item<float>(), 7.0f);
  EXPECT_THROW(file.read_rows("/bank/summaries", 5, 2), engram::core::UserError);
}

TEST(H5File, Attributes) {
  const std::string path = temp("attrs.h5");
  {
    H5File file(path, H5File::Mode::Create);
    file.create_group("/meta");
    file.set_attr("/meta", "format", std::string("engram-x"));
    file.set_attr("/meta", "empty", std::string());
    file.set_attr("/meta", "step", int64_t{42});
    file.set_attr("/meta", "lr", 0.125);
    file.set_attr("/meta", "step", int64_t{43});  // overwrite
  }
  H5File file(path, H5File::Mode::Read);
  EXPECT_EQ(file.attr_string("/meta", "format"), "engram-x");
  EXPECT_EQ(file.attr_string("/meta", "empty"), "");
  EXPECT_EQ(file.attr_int("/meta", "step"), 43);
  EXPECT_DOUBLE_EQ(file.attr_double("/meta", "lr"), 0.125);
  EXPECT_EQ(file.attr_names("/meta"), (std::vector<std::string>{"empty", "format", "lr", "step"}));
  EXPECT_THROW(file.attr_int("/meta", "missing"), engram::core::UserError);
}

TEST(H5File, BadFilesAreUserErrors) {
  EXPECT_THROW(H5File(temp("missing.h5"), H5File::Mode::Read), engram::core::UserError);
  const std::string junk = temp("junk.h5");
  std::ofstream(junk) << "not hdf5 at all";
  try {
    H5File file(junk, H5File::Mode::Read);
    FAIL();
  } catch (const engram::core::UserError& e) {
    EXPECT_NE(std::string(e.what()).find("not an HDF5 file"), std::string::npos) << e.what();
  }
}

TEST(H5File, CorruptedChunkFailsItsChecksum) {
  const std::string path = temp("corrupt.h5");
  {
    H5File file(path, H5File::Mode::Create);
    file.create_dataset("/x", at::kFloat, {64, 16}, 64, false, true);
    file.write_rows("/x", 0, at::full({64, 16}, 1.5f));
  }
  // Flip bytes of the data: the 4 KB chunk of 1.5f values is the only long run of 0x3fc00000.
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  const std::string pattern("\x00\x00\xc0\x3f\x00\x00\xc0\x3f", 8);
  auto at = bytes.find(pattern);
  ASSERT_NE(at, std::string::npos);
  f.seekp(static_cast<std::streamoff>(at + 100));
  f.write("\x12\x34", 2);
  f.close();
  H5File file(path, H5File::Mode::Read);
  try {
    file.read_tensor("/x");
    FAIL() << "corruption not detected";
  } catch (const engram::core::UserError& e) {
    EXPECT_NE(std::string(e.what()).find("checksum"), std::string::npos) << e.what();
  }
}
