// MAC's memory bank file (bank.h). Three phases per write:
//   1. agree:  every rank checks its rows; an all-gather tells everyone each rank's row count and
//              longest id, or the first rank's error (then every rank throws it, none hangs);
//   2. write:  all ranks open one file with parallel HDF5 and write their hyperslabs: a new bank
//              into a temporary file, an append into the bank itself past its committed rows;
//   3. commit: rank 0 syncs the file to disk, then renames the temporary file over the bank, or
//              (append) writes the new committed row count, the root attribute `rows`, and syncs
//              again. Readers ignore rows past `rows`, so an append that dies before its commit
//              leaves the previous bank as it was, and costs the new rows only.
// Work done by rank 0 alone (inspecting the old bank, the commit) broadcasts its outcome, so an
// error there is thrown on every rank too.
#include "methods/mac/bank.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>
#include <sstream>
#include <unordered_set>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <fmt/format.h>
#include <zlib.h>

#include "core/error.h"
#include "dist/communicator.h"
#include "io/h5file.h"

namespace fs = std::filesystem;

namespace engram::mac {
namespace {

constexpr const char* kFormat = "engram-bank";
// Version 2 checks each row with a CRC-32 column; version 1 (read only) used HDF5's fletcher32
// filter on the summary chunks, which sends parallel writes down HDF5's slow filtered-chunk path
// (a bank write took 0.45x of dd against 0.8x unfiltered, docs/mac.md "Bank writes").
constexpr int64_t kVersion = 2;
constexpr int64_t kFirstVersion = 1;
constexpr const char* kSummaries = "/summaries";
constexpr const char* kDocIds = "/doc_ids";
constexpr const char* kTimes = "/times";
constexpr const char* kKeys = "/keys";
constexpr const char* kSummaryCrc = "/summary_crc32";  // zlib crc32 of each row's stored bytes
constexpr const char* kKeyCrc = "/key_crc32";
constexpr const char* kRowsAttr = "rows";  // committed rows (banks before it: the datasets' length)

// Bounds a reader accepts before it allocates anything from sizes found in a file.
constexpr int64_t kMaxDim = int64_t{1} << 20;      // T and d
constexpr int64_t kMaxIdBytes = int64_t{1} << 16;  // one document id

// Chunks of at most about 1 MiB for summaries (HDF5's default chunk cache holds one whole),
// smaller for the 1-D datasets, and at most 1024 rows, so that a small bank stays small
// (checksummed chunks are stored whole) and reading a few rows reads little more.
constexpr int64_t kSummaryChunkBytes = int64_t{1} << 20;
constexpr int64_t kColumnChunkBytes = int64_t{64} << 10;
constexpr int64_t kMaxChunkRows = 1024;

int64_t chunk_rows(int64_t row_bytes, int64_t target_bytes) {
  return std::clamp<int64_t>(target_bytes / std::max<int64_t>(row_bytes, 1), 1, kMaxChunkRows);
}

// Id datasets hold strings of a fixed width: a multiple of 16 bytes, so that most appends of
// similar ids fit the width chosen by the first write.
int64_t id_width_for(int64_t longest) { return std::max<int64_t>(16, (longest + 15) / 16 * 16); }

at::ScalarType storage_type(const std::string& file, const std::string& dtype) {
  if (dtype == "float32") return at::kFloat;
  if (dtype == "bfloat16") return at::kBFloat16;
  core::fail("bank {}: dtype '{}' is not supported (float32 or bfloat16)", file, dtype);
}

// zlib's CRC-32 of each row's bytes (rows: contiguous, dim 0 = rows), as int64 [rows].
at::Tensor row_crc32(const at::Tensor& rows) {
  const int64_t n = rows.size(0);
  at::Tensor crc = at::empty({n}, at::kLong);
  if (n == 0) return crc;
  const int64_t row_bytes = rows.numel() / n * static_cast<int64_t>(rows.element_size());
  const auto* bytes = static_cast<const Bytef*>(rows.data_ptr());
  int64_t* out = crc.data_ptr<int64_t>();
  at::parallel_for(0, n, 64, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      out[i] = static_cast<int64_t>(::crc32(0L, bytes + i * row_bytes, static_cast<uInt>(row_bytes)));
  });
  return crc;
}

// Throws UserError naming the bank and the first row whose bytes disagree with its stored CRC.
void verify_rows(const std::string& path, const char* dataset, int64_t begin, const at::Tensor& rows,
                 const at::Tensor& stored_crc) {
  const at::Tensor crc = row_crc32(rows);
  const int64_t* want = stored_crc.data_ptr<int64_t>();
  const int64_t* have = crc.data_ptr<int64_t>();
  for (int64_t i = 0; i < crc.numel(); ++i)
    if (have[i] != want[i])
      core::fail("bank {}: row {} of '{}' fails its checksum (crc32 {:08x}, stored {:08x}): the file is damaged",
                 path, begin + i, dataset, have[i], want[i]);
}

std::string shape_text(const at::Tensor& t) {
  std::vector<int64_t> sizes(t.sizes().begin(), t.sizes().end());
  return fmt::format("[{}]", fmt::join(sizes, ", "));
}

// Forces a file's (or a directory's) data to disk: without it, a power cut after the rename could
// leave the new name pointing at blocks that were never written.
void sync_to_disk(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) core::fail("{}: cannot open to sync it: {}", path, std::strerror(errno));
  int rc = ::fsync(fd);
  int saved = errno;
  ::close(fd);
  if (rc != 0) core::fail("{}: fsync failed: {}", path, std::strerror(saved));
}

std::string parent_dir(const std::string& path) {
  fs::path parent = fs::path(path).parent_path();
  return parent.empty() ? std::string(".") : parent.string();
}

// ---- agreement between ranks ---------------------------------------------------------------

// An error travels between ranks as "U<text>" (UserError) or "I<text>" (anything else).
std::string encode_error(const std::exception& e) {
  const bool user = dynamic_cast<const core::UserError*>(&e) != nullptr;
  return std::string(user ? "U" : "I") + e.what();
}

[[noreturn]] void throw_decoded(const std::string& error) {
  if (error[0] == 'U') throw core::UserError(error.substr(1));
  throw core::InternalError(error.substr(1));
}

// Runs `step` on rank 0 and hands its result (a byte string) to every rank. An exception on rank
// 0 is thrown on every rank, so that no rank walks alone into a collective HDF5 call.
template <typename Step>
std::string run_on_root(dist::Communicator& comm, Step step) {
  std::string message;  // "+" payload, or an encoded error
  if (comm.rank() == 0) {
    try {
      message = "+" + step();
    } catch (const std::exception& e) {
      message = encode_error(e);
    }
  }
  comm.broadcast_bytes(message, 0);
  if (message[0] != '+') throw_decoded(message);
  return message.substr(1);
}

// What one rank brings to a write, as seen by all ranks.
struct Contribution {
  int64_t rows = 0;
  int64_t longest_id = 0;
  std::string meta_key;  // T, d, dtype and fingerprint: must be the same on every rank
};

std::string meta_key(const BankMeta& meta) {
  return fmt::format("T {}, d {}, dtype {}, key_dim {}, fingerprint {}", meta.T, meta.d, meta.dtype, meta.key_dim,
                     meta.fingerprint);
}

// This rank's rows, checked against the bank's meta; throws UserError naming the bank.
Contribution check_rows(const std::string& path, const BankMeta& meta, const BankRows& rows, int rank) {
  Contribution c;
  c.rows = static_cast<int64_t>(rows.doc_ids.size());
  c.meta_key = meta_key(meta);
  if (static_cast<int64_t>(rows.times.size()) != c.rows)
    core::fail("bank {}: rank {} offers {} document ids but {} times", path, rank, c.rows, rows.times.size());
  if (!rows.summaries.defined()) {
    if (c.rows > 0) core::fail("bank {}: rank {} offers {} document ids but no summaries", path, rank, c.rows);
  } else {
    const at::Tensor& s = rows.summaries;
    if (!s.is_floating_point())
      core::fail("bank {}: rank {} offers summaries of type {}, expected a floating-point type", path, rank,
                 c10::toString(s.scalar_type()));
    if (s.dim() != 3 || s.size(0) != c.rows || s.size(1) != meta.T || s.size(2) != meta.d)
      core::fail("bank {}: rank {} offers summaries of shape {}, expected [{}, {}, {}] (rows, T, d)", path, rank,
                 shape_text(s), c.rows, meta.T, meta.d);
  }
  if (meta.key_dim > 0 && c.rows > 0) {
    const at::Tensor& k = rows.keys;
    if (!k.defined() || !k.is_floating_point() || k.dim() != 2 || k.size(0) != c.rows || k.size(1) != meta.key_dim)
      core::fail("bank {}: rank {} offers keys of shape {}, expected floating-point [{}, {}] (rows, key_dim)", path,
                 rank, k.defined() ? shape_text(k) : "none", c.rows, meta.key_dim);
  }
  for (const std::string& id : rows.doc_ids) {
    if (id.find('\0') != std::string::npos) core::fail("bank {}: a document id holds a NUL byte", path);
    if (static_cast<int64_t>(id.size()) > kMaxIdBytes)
      core::fail("bank {}: document id '{}...' is {} bytes, at most {} are allowed", path, id.substr(0, 40),
                 id.size(), kMaxIdBytes);
    c.longest_id = std::max<int64_t>(c.longest_id, static_cast<int64_t>(id.size()));
  }
  return c;
}

// Every rank's contribution, on every rank; if any rank failed its check, every rank throws
// that rank's error.
std::vector<Contribution> gather_contributions(dist::Communicator& comm, const std::string& path,
                                               const BankMeta& meta, const BankRows& rows) {
  std::string mine;
  try {
    Contribution c = check_rows(path, meta, rows, comm.rank());
    mine = fmt::format("+{} {} {}", c.rows, c.longest_id, c.meta_key);
  } catch (const std::exception& e) {
    mine = encode_error(e);
  }
  std::vector<std::string> all = comm.all_gather_bytes(mine);
  for (const std::string& text : all)
    if (text[0] != '+') throw_decoded(text);
  std::vector<Contribution> out(all.size());
  for (size_t r = 0; r < all.size(); ++r) {
    std::istringstream in(all[r].substr(1));
    in >> out[r].rows >> out[r].longest_id;
    in.get();  // the space before the meta key
    std::getline(in, out[r].meta_key, '\0');
    if (out[r].meta_key != out[0].meta_key)
      core::fail("bank {}: ranks disagree on the bank: rank 0 writes {}, rank {} writes {}", path, out[0].meta_key,
                 r, out[r].meta_key);
  }
  return out;
}

// ---- the file itself -----------------------------------------------------------------------

// Where this rank's rows go and how large the datasets become.
struct Layout {
  int64_t existing_rows = 0;  // rows of the bank before this write
  int64_t existing_width = 0; // bytes per id of the existing bank (0 for a new bank)
  int64_t offset = 0;         // first row of this rank
  int64_t total_rows = 0;     // after the write
  int64_t id_width = 0;       // bytes per id after the write
};

Layout plan_layout(const std::vector<Contribution>& all, int rank, int64_t existing_rows, int64_t existing_width) {
  Layout l;
  l.existing_rows = existing_rows;
  l.existing_width = existing_width;
  l.offset = existing_rows;
  l.total_rows = existing_rows;
  int64_t longest = 0;
  for (size_t r = 0; r < all.size(); ++r) {
    if (static_cast<int>(r) < rank) l.offset += all[r].rows;  // exclusive prefix sum
    l.total_rows += all[r].rows;
    longest = std::max(longest, all[r].longest_id);
  }
  // A new bank gets a width of its own; an existing one keeps its width unless the new ids need more.
  l.id_width = existing_width > 0 && longest <= existing_width ? existing_width : id_width_for(longest);
  return l;
}

void create_datasets(io::H5File& file, const BankMeta& meta, const Layout& l) {
  const at::ScalarType stored = storage_type(file.path(), meta.dtype);
  const int64_t row_bytes = meta.T * meta.d * static_cast<int64_t>(c10::elementSize(stored));
  file.set_attr("/", "format", std::string(kFormat));
  file.set_attr("/", "version", kVersion);
  file.set_attr("/", "model_fingerprint", meta.fingerprint);
  file.set_attr("/", "T", meta.T);
  file.set_attr("/", "d", meta.d);
  file.set_attr("/", "dtype", meta.dtype);
  file.set_attr("/", "key_dim", meta.key_dim);
  file.create_dataset(kSummaries, stored, {l.total_rows, meta.T, meta.d}, chunk_rows(row_bytes, kSummaryChunkBytes),
                      /*extendible=*/true);
  file.create_dataset(kSummaryCrc, at::kLong, {l.total_rows}, chunk_rows(8, kColumnChunkBytes), true);
  file.create_string_dataset(kDocIds, l.total_rows, l.id_width, chunk_rows(l.id_width, kColumnChunkBytes), true, true);
  file.create_dataset(kTimes, at::kLong, {l.total_rows}, chunk_rows(8, kColumnChunkBytes), true, true);
  if (meta.key_dim > 0) {
    file.create_dataset(kKeys, at::kFloat, {l.total_rows, meta.key_dim}, chunk_rows(meta.key_dim * 4, kSummaryChunkBytes),
                        true);
    file.create_dataset(kKeyCrc, at::kLong, {l.total_rows}, chunk_rows(8, kColumnChunkBytes), true);
  }
}

// The id dataset cannot change its string width in place: when new ids are longer than the
// existing width, it is rebuilt (in the temporary copy) with the old ids written back by rank 0.
void widen_ids(io::H5File& file, const Layout& l, int rank) {
  std::vector<std::string> old_ids = file.read_string_rows(kDocIds, 0, l.existing_rows);
  file.remove(kDocIds);
  file.create_string_dataset(kDocIds, l.total_rows, l.id_width, chunk_rows(l.id_width, kColumnChunkBytes), true, true);
  if (rank != 0) old_ids.clear();  // one writer; the others take part with an empty selection
  file.write_string_rows(kDocIds, 0, old_ids);
}

// Datasets may already be longer than the committed rows (an append that died before its
// commit): the new rows overwrite those.
void grow_datasets(io::H5File& file, const BankMeta& meta, const Layout& l, int rank) {
  auto grow = [&](const char* name) { file.extend(name, std::max(l.total_rows, file.shape(name)[0])); };
  grow(kSummaries);
  grow(kSummaryCrc);
  if (meta.key_dim > 0) {
    grow(kKeys);
    grow(kKeyCrc);
  }
  grow(kTimes);
  if (l.id_width > l.existing_width) widen_ids(file, l, rank);
  else grow(kDocIds);
}

// Collective: this rank's rows into the open file at its offset.
void write_my_rows(io::H5File& file, const BankMeta& meta, const BankRows& rows, const Layout& l) {
  const at::ScalarType stored = storage_type(file.path(), meta.dtype);
  const int64_t n = static_cast<int64_t>(rows.doc_ids.size());
  at::Tensor summaries = n == 0 ? at::empty({0, meta.T, meta.d}, at::TensorOptions().dtype(stored))
                                : rows.summaries.to(at::kCPU).to(stored).contiguous();
  file.write_rows(kSummaries, l.offset, summaries);
  file.write_rows(kSummaryCrc, l.offset, row_crc32(summaries));
  if (meta.key_dim > 0) {
    at::Tensor keys = n == 0 ? at::empty({0, meta.key_dim}) : rows.keys.to(at::kCPU).to(at::kFloat).contiguous();
    file.write_rows(kKeys, l.offset, keys);
    file.write_rows(kKeyCrc, l.offset, row_crc32(keys));
  }
  file.write_string_rows(kDocIds, l.offset, rows.doc_ids);
  file.write_rows(kTimes, l.offset, at::tensor(at::ArrayRef<int64_t>(rows.times), at::kLong));
}

// Rank 0, appending: checks that the bank at `path` takes these rows. Returns "rows width" of
// the existing bank.
std::string inspect_for_append(const std::string& path, const BankMeta& meta) {
  if (!fs::exists(path)) core::fail("cannot append to bank {}: no such file (write it without append first)", path);
  int64_t rows = 0, width = 0;
  {
    BankReader reader(path);  // validates the whole structure
    const BankMeta& have = reader.meta();
    if (reader.version() != kVersion)
      core::fail("cannot append to bank {}: it is a version {} bank, appends write version {}: write it anew with "
                 "engram mac-memorize", path, reader.version(), kVersion);
    if (have.fingerprint != meta.fingerprint)
      core::fail("cannot append to bank {}: it was built by amortizer {}, the new summaries by amortizer {}", path,
                 have.fingerprint, meta.fingerprint);
    if (have.T != meta.T)
      core::fail("cannot append to bank {}: its summaries have T = {}, the new ones T = {}", path, have.T, meta.T);
    if (have.d != meta.d)
      core::fail("cannot append to bank {}: its summaries have d = {}, the new ones d = {}", path, have.d, meta.d);
    if (have.dtype != meta.dtype)
      core::fail("cannot append to bank {}: it stores {}, the new summaries are to be stored as {}", path,
                 have.dtype, meta.dtype);
    if (have.key_dim != meta.key_dim)
      core::fail("cannot append to bank {}: it stores retrieval keys of width {}, the new rows have width {}", path,
                 have.key_dim, meta.key_dim);
    rows = reader.rows();
    width = io::H5File(path, io::H5File::Mode::Read).string_width(kDocIds);
  }
  return fmt::format("{} {}", rows, width);
}

// Rank 0: a copy of the bank to append to when the ids must be widened (HDF5 cannot change a
// string dataset's width in place; the copy replaces the bank on commit, as a new bank does).
void copy_for_append(const std::string& path, const std::string& temp) {
  std::error_code ec;
  fs::copy_file(path, temp, fs::copy_options::overwrite_existing, ec);
  if (ec) core::fail("cannot append to bank {}: copying it to {} failed: {}", path, temp, ec.message());
}

// Rank 0, after every rank closed the bank it appended to: the new rows count from now on.
void commit_rows(const std::string& path, int64_t rows) {
  sync_to_disk(path);  // the rows reach the disk before the count that makes them visible
  {
    io::H5File file(path, io::H5File::Mode::ReadWrite);
    file.set_attr("/", kRowsAttr, rows);
  }
  sync_to_disk(path);
}

// Rank 0, after every rank closed the temporary file: makes it the bank.
void commit(const std::string& temp, const std::string& path) {
  sync_to_disk(temp);
  std::error_code ec;
  fs::rename(temp, path, ec);
  if (ec) core::fail("bank {}: renaming {} over it failed: {}", path, temp, ec.message());
  sync_to_disk(parent_dir(path));  // the rename itself reaches the disk
}

}  // namespace

std::vector<int64_t> new_document_indices(const std::string& path, bool append, const std::vector<std::string>& ids) {
  std::unordered_set<std::string> seen;
  if (append) {
    if (!fs::exists(path)) core::fail("cannot append to bank {}: no such file (write it without append first)", path);
    BankReader reader(path);
    for (std::string& id : reader.doc_ids(0, reader.rows())) seen.insert(std::move(id));
  }
  std::vector<int64_t> fresh;
  for (size_t i = 0; i < ids.size(); ++i)
    if (seen.insert(ids[i]).second) fresh.push_back(static_cast<int64_t>(i));
  return fresh;
}

int64_t write_bank(const std::string& path, const BankMeta& meta, const BankRows& rows, bool append,
                   dist::Communicator& comm, dist::MpiHandle mpi_comm) {
  ENGRAM_CHECK(comm.world_size() == 1 || mpi_comm.parallel(),
               "write_bank {}: {} ranks need the MPI communicator for parallel HDF5", path, comm.world_size());
  // The same on every rank (gather_contributions checks), so every rank throws alike.
  if (meta.T <= 0 || meta.d <= 0 || meta.T > kMaxDim || meta.d > kMaxDim)
    core::fail("bank {}: T = {} and d = {} must be in [1, {}]", path, meta.T, meta.d, kMaxDim);
  storage_type(path, meta.dtype);

  std::vector<Contribution> all = gather_contributions(comm, path, meta, rows);
  const std::string temp = path + ".tmp";
  int64_t existing_rows = 0, existing_width = 0;
  if (append) {
    std::istringstream in(run_on_root(comm, [&] { return inspect_for_append(path, meta); }));
    in >> existing_rows >> existing_width;
  }
  const Layout layout = plan_layout(all, comm.rank(), existing_rows, existing_width);
  // In place unless a new bank is made or the ids must be widened (then on a copy).
  const bool in_place = append && layout.id_width == layout.existing_width;
  if (append && !in_place) run_on_root(comm, [&] {
      copy_for_append(path, temp);
      return std::string();
    });

  try {
    io::H5File file(in_place ? path : temp, append ? io::H5File::Mode::ReadWrite : io::H5File::Mode::Create, mpi_comm);
    if (append) grow_datasets(file, meta, layout, comm.rank());
    else create_datasets(file, meta, layout);
    write_my_rows(file, meta, rows, layout);
    if (!in_place) file.set_attr("/", kRowsAttr, layout.total_rows);  // the file becomes the bank whole
    file.close();
    comm.barrier();  // every rank's rows are in the closed file
    run_on_root(comm, [&] {
      if (in_place) commit_rows(path, layout.total_rows);
      else commit(temp, path);
      return std::string();
    });
  } catch (...) {
    // The bank under `path` keeps its committed rows; a temporary file goes.
    if (comm.rank() == 0 && !in_place) {
      std::error_code ignored;
      fs::remove(temp, ignored);
    }
    throw;
  }
  return layout.total_rows;
}

// ---- reading -------------------------------------------------------------------------------

struct BankReader::File {
  explicit File(const std::string& path) : h5(path, io::H5File::Mode::Read) {}
  io::H5File h5;
};

namespace {

// Checks that `name` is a dataset of `want` dimensions; returns its shape.
std::vector<int64_t> dataset_shape(const io::H5File& h5, const std::string& name, size_t want) {
  if (!h5.exists(name)) core::fail("bank {}: dataset '{}' is missing", h5.path(), name);
  std::vector<int64_t> shape = h5.shape(name);
  if (shape.size() != want)
    core::fail("bank {}: dataset '{}' has {} dimensions, expected {}", h5.path(), name, shape.size(), want);
  return shape;
}

int64_t positive_attr(const io::H5File& h5, const std::string& name) {
  if (!h5.has_attr("/", name)) core::fail("bank {}: root attribute '{}' is missing", h5.path(), name);
  int64_t value = h5.attr_int("/", name);
  if (value < 1 || value > kMaxDim)
    core::fail("bank {}: root attribute {} = {} is outside [1, {}]", h5.path(), name, value, kMaxDim);
  return value;
}

std::string string_attr(const io::H5File& h5, const std::string& name) {
  if (!h5.has_attr("/", name)) core::fail("bank {}: root attribute '{}' is missing", h5.path(), name);
  return h5.attr_string("/", name);
}

}  // namespace

BankReader::BankReader(const std::string& path) : path_(path) {
  // Owned here until every check passed: a constructor that throws runs no destructor.
  auto file = std::make_unique<File>(path);
  const io::H5File& h5 = file->h5;
  if (!h5.has_attr("/", "format"))
    core::fail("bank {}: not an engram memory bank (no root attribute 'format')", path);
  const std::string format = h5.attr_string("/", "format");
  if (format != kFormat) core::fail("bank {}: format is '{}', expected '{}'", path, format, kFormat);
  version_ = h5.attr_int("/", "version");
  if (version_ < kFirstVersion || version_ > kVersion)
    core::fail("bank {}: version {} is not supported (this engram reads versions {} to {})", path, version_,
               kFirstVersion, kVersion);
  meta_.fingerprint = string_attr(h5, "model_fingerprint");
  meta_.T = positive_attr(h5, "T");
  meta_.d = positive_attr(h5, "d");
  meta_.dtype = string_attr(h5, "dtype");
  const at::ScalarType stored = storage_type(path, meta_.dtype);

  std::vector<int64_t> summaries = dataset_shape(h5, kSummaries, 3);
  // Rows past the committed count belong to an append that did not finish.
  rows_ = h5.has_attr("/", kRowsAttr) ? h5.attr_int("/", kRowsAttr) : summaries[0];
  if (rows_ < 0 || rows_ > summaries[0])
    core::fail("bank {}: root attribute rows = {}, but summaries hold {} rows", path, rows_, summaries[0]);
  if (summaries[1] != meta_.T || summaries[2] != meta_.d)
    core::fail("bank {}: summaries are [{}, {}, {}], but T = {} and d = {}", path, summaries[0], summaries[1],
               summaries[2], meta_.T, meta_.d);
  if (h5.dtype(kSummaries) != stored)
    core::fail("bank {}: summaries are stored as {}, but the bank says {}", path,
               c10::toString(h5.dtype(kSummaries)), meta_.dtype);
  // Summaries are stored uncompressed: a file smaller than its rows is truncated or lying, and
  // this bound keeps a bad row count from turning into a huge allocation later.
  const int64_t row_bytes = meta_.T * meta_.d * static_cast<int64_t>(c10::elementSize(stored));
  const auto file_bytes = static_cast<int64_t>(fs::file_size(path));
  if (rows_ > file_bytes / row_bytes)
    core::fail("bank {}: {} rows of {} bytes cannot fit in its {} bytes (truncated file?)", path, rows_, row_bytes,
               file_bytes);

  meta_.key_dim = h5.has_attr("/", "key_dim") ? h5.attr_int("/", "key_dim") : 0;  // banks before keys have none
  if (meta_.key_dim < 0 || meta_.key_dim > kMaxDim)
    core::fail("bank {}: root attribute key_dim = {} is outside [0, {}]", path, meta_.key_dim, kMaxDim);
  // One row per bank row in each column: ids, times, and (version 2) the CRC of each summary and key.
  std::vector<const char*> columns = {kDocIds, kTimes};
  if (version_ >= 2) columns.push_back(kSummaryCrc);
  if (version_ >= 2 && meta_.key_dim > 0) columns.push_back(kKeyCrc);
  for (const char* column : columns) {
    int64_t n = dataset_shape(h5, column, 1)[0];
    if (n < rows_) core::fail("bank {}: '{}' has {} rows, the bank {}", path, column, n, rows_);
    if (column != kDocIds && h5.dtype(column) != at::kLong) core::fail("bank {}: '{}' is not int64", path, column);
  }
  const int64_t width = h5.string_width(kDocIds);
  if (width < 1 || width > kMaxIdBytes)
    core::fail("bank {}: document ids are {} bytes wide, at most {} are allowed", path, width, kMaxIdBytes);
  if (meta_.key_dim > 0) {
    std::vector<int64_t> keys = dataset_shape(h5, kKeys, 2);
    if (keys[0] < rows_ || keys[1] != meta_.key_dim)
      core::fail("bank {}: keys are [{}, {}], expected [{}, {}] (rows, key_dim)", path, keys[0], keys[1], rows_,
                 meta_.key_dim);
    if (h5.dtype(kKeys) != at::kFloat) core::fail("bank {}: keys are not float32", path);
  }
  file_ = file.release();
}

BankReader::~BankReader() { delete file_; }

void BankReader::require_fingerprint(const std::string& fingerprint) const {
  if (meta_.fingerprint != fingerprint)
    core::fail("bank {} was built by amortizer {}, this model's is {}: rebuild it with engram mac-memorize", path_,
               meta_.fingerprint, fingerprint);
}

namespace {
// Rows of `dataset`, checked against their CRC column (version 2; version 1 banks were checked
// by HDF5's fletcher32 filter while reading). read_rows checks the range and names the file.
at::Tensor read_checked(const io::H5File& h5, int64_t version, const char* dataset, const char* crc_column,
                        int64_t begin, int64_t count) {
  at::Tensor rows = h5.read_rows(dataset, begin, count).contiguous();
  if (version >= 2) verify_rows(h5.path(), dataset, begin, rows, h5.read_rows(crc_column, begin, count).contiguous());
  return rows.to(at::kFloat);
}
}  // namespace

at::Tensor BankReader::summaries(int64_t begin, int64_t count) const {
  return read_checked(file_->h5, version_, kSummaries, kSummaryCrc, begin, count);
}

at::Tensor BankReader::keys(int64_t begin, int64_t count) const {
  if (meta_.key_dim == 0)
    core::fail("bank {} stores no retrieval keys: it was built by a model without token keys (mac.retriever.keys)",
               path_);
  return read_checked(file_->h5, version_, kKeys, kKeyCrc, begin, count);
}

std::vector<std::string> BankReader::doc_ids(int64_t begin, int64_t count) const {
  return file_->h5.read_string_rows(kDocIds, begin, count);
}

std::vector<int64_t> BankReader::times(int64_t begin, int64_t count) const {
  at::Tensor t = file_->h5.read_rows(kTimes, begin, count).contiguous();
  const int64_t* data = t.data_ptr<int64_t>();
  return std::vector<int64_t>(data, data + t.numel());
}

}  // namespace engram::mac
