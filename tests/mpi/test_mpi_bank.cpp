// MAC's memory bank (src/methods/mac/bank.h) with real ranks (mpirun -np 2 and -np 3): collective
// writes with uneven shares, appends with deduplication, mismatches, bf16, reading at another
// split, bad files, and h5py as an outside reader.
#include <gtest/gtest.h>
#include <mpi.h>
#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>

#include <ATen/ATen.h>
#include <fmt/format.h>

#include "core/error.h"
#include "dist/local_communicator.h"
#include "dist/mpi_communicator.h"
#include "dist/shard_spec.h"
#include "io/h5file.h"
#include "mpi_test_util.h"
#include "methods/mac/bank.h"

namespace fs = std::filesystem;
using namespace engram;

namespace {
using mpi_test::kWorld;
using mpi_test::make_comm;
std::string shared_dir(dist::Communicator& comm, const std::string& name) {
  return mpi_test::shared_dir(comm, "bank_" + name);
}

mac::BankMeta meta(const std::string& fingerprint, int64_t T, int64_t d, const std::string& dtype = "float32") {
  mac::BankMeta m;
  m.fingerprint = fingerprint;
  m.T = T;
  m.d = d;
  m.dtype = dtype;
  return m;
}

// The whole stream a test writes, the same on every rank: summaries from a fixed seed, ids and
// times derived from the global row.
struct Stream {
  at::Tensor summaries;  // [n, T, d]
  std::vector<std::string> ids;
  std::vector<int64_t> times;
};

Stream make_stream(int64_t n, int64_t T, int64_t d, uint64_t seed, const std::string& id_prefix) {
  Stream s;
  at::manual_seed(seed);
  s.summaries = at::randn({n, T, d});
  for (int64_t i = 0; i < n; ++i) {
    s.ids.push_back(fmt::format("{}{}", id_prefix, i));
    s.times.push_back(1700000000 + 97 * i - (i % 3 == 0 ? 5000000000 : 0));  // negative times too
  }
  return s;
}

// Rows [begin, end) of a stream, as one rank's contribution.
mac::BankRows rows_of(const Stream& s, int64_t begin, int64_t end) {
  mac::BankRows r;
  r.summaries = s.summaries.narrow(0, begin, end - begin);
  r.doc_ids.assign(s.ids.begin() + begin, s.ids.begin() + end);
  r.times.assign(s.times.begin() + begin, s.times.begin() + end);
  return r;
}

// Expects the bank at `path` to hold exactly `s` (summaries as stored: pass bf16-rounded values
// for a bf16 bank), reading rows [begin, begin + count).
void expect_rows(const mac::BankReader& bank, const Stream& s, int64_t begin, int64_t count) {
  SCOPED_TRACE(fmt::format("rows [{}, {})", begin, begin + count));
  at::Tensor got = bank.summaries(begin, count);
  EXPECT_EQ(got.scalar_type(), at::kFloat);
  EXPECT_TRUE(got.equal(s.summaries.narrow(0, begin, count)));
  EXPECT_EQ(bank.doc_ids(begin, count), std::vector<std::string>(s.ids.begin() + begin, s.ids.begin() + begin + count));
  EXPECT_EQ(bank.times(begin, count), std::vector<int64_t>(s.times.begin() + begin, s.times.begin() + begin + count));
}

// Runs `fn`, expecting core::UserError whose message holds every one of `parts`.
void expect_user_error(const std::function<void()>& fn, const std::vector<std::string>& parts) {
  try {
    fn();
    ADD_FAILURE() << "no UserError thrown; expected one mentioning " << parts.front();
  } catch (const core::UserError& e) {
    const std::string message = e.what();
    for (const std::string& part : parts)
      EXPECT_NE(message.find(part), std::string::npos) << "'" << part << "' not in: " << message;
  }
}

Stream concat(const Stream& a, const Stream& b) {
  Stream s;
  s.summaries = at::cat({a.summaries, b.summaries});
  s.ids = a.ids;
  s.ids.insert(s.ids.end(), b.ids.begin(), b.ids.end());
  s.times = a.times;
  s.times.insert(s.times.end(), b.times.begin(), b.times.end());
  return s;
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}
}  // namespace

TEST(MpiBank, UnevenSharesIncludingAnEmptyRankReadBackBitExact) {
  auto comm = make_comm();
  const int world = comm->world_size(), rank = comm->rank();
  const std::string path = shared_dir(*comm, "uneven") + "/bank.h5";
  // Rank 1 brings nothing; the others bring 700, 2500, ... rows. A chunk holds 1024 rows: rank
  // 0's rows end inside the first chunk, and the next rank's start in that same chunk.
  std::vector<int64_t> counts(world), starts(world + 1, 0);
  for (int r = 0; r < world; ++r) counts[r] = r == 1 ? 0 : 700 + 900 * r;
  for (int r = 0; r < world; ++r) starts[r + 1] = starts[r] + counts[r];
  const int64_t n = starts[world], T = 4, d = 6;
  Stream s = make_stream(n, T, d, 11, "doc-");

  int64_t total = mac::write_bank(path, meta("amort-1", T, d), rows_of(s, starts[rank], starts[rank + 1]),
                                  /*append=*/false, *comm, dist::MpiHandle::world());
  EXPECT_EQ(total, n);
  EXPECT_FALSE(fs::exists(path + ".tmp"));

  mac::BankReader bank(path);
  EXPECT_EQ(bank.rows(), n);
  EXPECT_EQ(bank.meta().fingerprint, "amort-1");
  EXPECT_EQ(bank.meta().T, T);
  EXPECT_EQ(bank.meta().d, d);
  EXPECT_EQ(bank.meta().dtype, "float32");
  expect_rows(bank, s, 0, n);
  for (auto [begin, count] : std::vector<std::pair<int64_t, int64_t>>{{0, 1}, {n - 1, 1}, {2, 3}, {1, n - 2}, {n, 0}})
    expect_rows(bank, s, begin, count);
  // Every rank's own rows, at their offsets.
  for (int r = 0; r < world; ++r) expect_rows(bank, s, starts[r], counts[r]);
  expect_user_error([&] { bank.summaries(n - 1, 2); }, {path});
  comm->barrier();
}

TEST(MpiBank, OneProcessWritesSeriallyWithALocalCommunicator) {
  auto world_comm = make_comm();
  const std::string path = shared_dir(*world_comm, "serial") + fmt::format("/rank{}.h5", world_comm->rank());
  auto local = dist::make_local_communicator(std::chrono::milliseconds(60000));
  Stream s = make_stream(5, 2, 3, 100 + world_comm->rank(), "x");
  EXPECT_EQ(mac::write_bank(path, meta("fp", 2, 3), rows_of(s, 0, 5), false, *local, {}), 5);
  Stream more = make_stream(2, 2, 3, 200, "y");
  EXPECT_EQ(mac::write_bank(path, meta("fp", 2, 3), rows_of(more, 0, 2), true, *local, {}), 7);
  mac::BankReader bank(path);
  expect_rows(bank, concat(s, more), 0, 7);
  world_comm->barrier();
}

TEST(MpiBank, AppendSkipsKnownIdsAndKeepsStreamOrder) {
  auto comm = make_comm();
  const int world = comm->world_size(), rank = comm->rank();
  const std::string path = shared_dir(*comm, "append") + "/bank.h5";
  const int64_t T = 3, d = 5;
  Stream first = make_stream(6, T, d, 21, "doc-");
  dist::RowRange mine = dist::ShardSpec(6, world).range(rank);
  ASSERT_EQ(mac::write_bank(path, meta("amort-1", T, d), rows_of(first, mine.begin, mine.end), false, *comm, dist::MpiHandle::world()),
            6);

  // The next batch of the stream repeats doc-3 and doc-0 (already stored) and new-a (twice).
  // A 40-byte id is longer than the first write's id width: the id column must widen.
  const std::string long_id = "new-d-" + std::string(34, 'z');
  const std::vector<std::string> offered = {"doc-3", "new-a", "doc-0", "new-b", "new-a", "new-c", long_id};
  EXPECT_EQ(mac::new_document_indices(path, false, offered), (std::vector<int64_t>{0, 1, 2, 3, 5, 6}));
  const std::vector<int64_t> fresh = mac::new_document_indices(path, true, offered);
  ASSERT_EQ(fresh, (std::vector<int64_t>{1, 3, 5, 6}));

  // Encode only the fresh documents, split over the ranks.
  Stream second = make_stream(static_cast<int64_t>(fresh.size()), T, d, 22, "");
  for (size_t k = 0; k < fresh.size(); ++k) second.ids[k] = offered[static_cast<size_t>(fresh[k])];
  dist::RowRange share = dist::ShardSpec(static_cast<int64_t>(fresh.size()), world).range(rank);
  EXPECT_EQ(mac::write_bank(path, meta("amort-1", T, d), rows_of(second, share.begin, share.end), true, *comm, dist::MpiHandle::world()),
            10);
  EXPECT_FALSE(fs::exists(path + ".tmp"));

  mac::BankReader bank(path);
  ASSERT_EQ(bank.rows(), 10);
  expect_rows(bank, concat(first, second), 0, 10);
  EXPECT_EQ(bank.doc_ids(6, 4), (std::vector<std::string>{"new-a", "new-b", "new-c", long_id}));
  // Offering the same batch again brings nothing new.
  EXPECT_TRUE(mac::new_document_indices(path, true, offered).empty());
  comm->barrier();
}

TEST(MpiBank, RetrievalKeysAreStoredBesideTheSummariesAndAppendedInOrder) {
  // A bank of a model with token keys (mac.retriever.keys: tokens): keys [N, K] float32, written
  // by uneven shares, appended, read back bit-exact; an append without keys or of another width
  // is refused, and a bank without keys says so when asked for them.
  auto comm = make_comm();
  const int world = comm->world_size(), rank = comm->rank();
  const std::string path = shared_dir(*comm, "keys") + "/bank.h5";
  const int64_t T = 2, d = 3, K = 4;
  mac::BankMeta with_keys = meta("amort-k", T, d);
  with_keys.key_dim = K;
  at::manual_seed(41);
  const at::Tensor keys = at::randn({7, K});
  Stream first = make_stream(5, T, d, 42, "doc-"), more = make_stream(2, T, d, 43, "more-");
  auto rows_with_keys = [&](const Stream& s, int64_t key_offset, dist::RowRange r) {
    mac::BankRows rows = rows_of(s, r.begin, r.end);
    rows.keys = keys.narrow(0, key_offset + r.begin, r.size());
    return rows;
  };
  EXPECT_EQ(mac::write_bank(path, with_keys, rows_with_keys(first, 0, dist::ShardSpec(5, world).range(rank)), false,
                            *comm, dist::MpiHandle::world()), 5);
  EXPECT_EQ(mac::write_bank(path, with_keys, rows_with_keys(more, 5, dist::ShardSpec(2, world).range(rank)), true,
                            *comm, dist::MpiHandle::world()), 7);
  {
    mac::BankReader bank(path);
    EXPECT_EQ(bank.meta().key_dim, K);
    expect_rows(bank, concat(first, more), 0, 7);
    EXPECT_TRUE(bank.keys(0, 7).equal(keys));
    EXPECT_TRUE(bank.keys(4, 2).equal(keys.narrow(0, 4, 2)));
  }
  comm->barrier();
  dist::RowRange share = dist::ShardSpec(2, world).range(rank);
  expect_user_error([&] { mac::write_bank(path, meta("amort-k", T, d), rows_of(more, share.begin, share.end), true,
                                          *comm, dist::MpiHandle::world()); }, {path, "retrieval keys of width 4", "width 0"});
  mac::BankMeta wider = with_keys;
  wider.key_dim = K + 1;
  mac::BankRows wrong = rows_of(more, share.begin, share.end);
  wrong.keys = at::zeros({share.size(), K});
  expect_user_error([&] { mac::write_bank(path, wider, wrong, true, *comm, dist::MpiHandle::world()); },
                    {path, "keys of shape", "key_dim"});
  const std::string plain = shared_dir(*comm, "keys") + "/plain.h5";
  mac::write_bank(plain, meta("amort-k", T, d), rows_of(first, 0, rank == 0 ? 5 : 0), false, *comm, dist::MpiHandle::world());
  mac::BankReader no_keys(plain);
  EXPECT_EQ(no_keys.meta().key_dim, 0);
  expect_user_error([&] { no_keys.keys(0, 1); }, {plain, "stores no retrieval keys"});
  comm->barrier();
}

TEST(MpiBank, AppendsWriteInPlaceAndAnUncommittedAppendIsIgnored) {
  auto comm = make_comm();
  const int world = comm->world_size(), rank = comm->rank();
  const std::string path = shared_dir(*comm, "in_place") + "/bank.h5";
  const int64_t T = 2, d = 3;
  Stream first = make_stream(6, T, d, 31, "doc-");
  dist::RowRange mine = dist::ShardSpec(6, world).range(rank);
  mac::write_bank(path, meta("amort-1", T, d), rows_of(first, mine.begin, mine.end), false, *comm,
                  dist::MpiHandle::world());
  auto inode = [&] {
    struct stat st {};
    EXPECT_EQ(::stat(path.c_str(), &st), 0);
    return st.st_ino;
  };
  const auto before = inode();
  comm->barrier();
  // What an append that died before its commit leaves: rows past the committed count.
  if (rank == 0) {
    io::H5File file(path, io::H5File::Mode::ReadWrite);
    for (const char* name : {"/summaries", "/times", "/doc_ids"}) file.extend(name, 9);
    file.write_rows("/summaries", 6, at::full({3, T, d}, 7.0));
    file.write_string_rows("/doc_ids", 6, {"lost-0", "lost-1", "lost-2"});
  }
  comm->barrier();
  {
    mac::BankReader bank(path);
    EXPECT_EQ(bank.rows(), 6);
    expect_rows(bank, first, 0, 6);
    // The lost documents are not in the bank: offered again, they are new.
    EXPECT_EQ(mac::new_document_indices(path, true, {"doc-1", "lost-0"}), (std::vector<int64_t>{1}));
  }
  comm->barrier();
  // The next append writes over them, in place (same file), and commits 8 rows; the datasets
  // keep their 9 rows, the reader 8.
  Stream second = make_stream(2, T, d, 32, "new-");
  dist::RowRange share = dist::ShardSpec(2, world).range(rank);
  EXPECT_EQ(mac::write_bank(path, meta("amort-1", T, d), rows_of(second, share.begin, share.end), true, *comm,
                            dist::MpiHandle::world()),
            8);
  EXPECT_EQ(inode(), before);
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  {
    mac::BankReader bank(path);
    ASSERT_EQ(bank.rows(), 8);
    expect_rows(bank, concat(first, second), 0, 8);
    EXPECT_EQ(io::H5File(path, io::H5File::Mode::Read).shape("/summaries")[0], 9);
    EXPECT_EQ(io::H5File(path, io::H5File::Mode::Read).attr_int("/", "rows"), 8);
  }
  comm->barrier();
}

TEST(MpiBank, AnEmptyFirstWriteMakesABankThatAppendsGrow) {
  auto comm = make_comm();
  const int world = comm->world_size(), rank = comm->rank();
  const std::string path = shared_dir(*comm, "empty") + "/bank.h5";
  EXPECT_EQ(mac::write_bank(path, meta("amort-1", 2, 2), mac::BankRows{}, false, *comm, dist::MpiHandle::world()), 0);
  {
    mac::BankReader bank(path);
    EXPECT_EQ(bank.rows(), 0);
    EXPECT_TRUE(bank.doc_ids(0, 0).empty());
  }
  comm->barrier();  // every rank has read the empty bank before it is replaced
  Stream s = make_stream(world + 2, 2, 2, 81, "doc-");
  dist::RowRange mine = dist::ShardSpec(world + 2, world).range(rank);
  EXPECT_EQ(mac::write_bank(path, meta("amort-1", 2, 2), rows_of(s, mine.begin, mine.end), true, *comm, dist::MpiHandle::world()),
            world + 2);
  mac::BankReader bank(path);
  expect_rows(bank, s, 0, world + 2);
  comm->barrier();
}

TEST(MpiBank, MismatchedAppendIsAUserErrorAndLeavesTheBankIntact) {
  auto comm = make_comm();
  const int world = comm->world_size(), rank = comm->rank();
  const std::string dir = shared_dir(*comm, "mismatch");
  const std::string path = dir + "/bank.h5";
  Stream s = make_stream(4, 2, 3, 31, "doc-");
  dist::RowRange mine = dist::ShardSpec(4, world).range(rank);
  mac::write_bank(path, meta("amort-A", 2, 3), rows_of(s, mine.begin, mine.end), false, *comm, dist::MpiHandle::world());
  comm->barrier();
  const std::string before = read_bytes(path);

  Stream other = make_stream(2, 4, 5, 32, "new-");
  dist::RowRange share = dist::ShardSpec(2, world).range(rank);
  auto append = [&](const mac::BankMeta& m, const Stream& rows) {
    mac::write_bank(path, m, rows_of(rows, share.begin, share.end), true, *comm, dist::MpiHandle::world());
  };
  Stream same_shape = make_stream(2, 2, 3, 33, "new-");
  expect_user_error([&] { append(meta("amort-B", 2, 3), same_shape); }, {path, "amort-A", "amort-B"});
  Stream t4 = make_stream(2, 4, 3, 34, "new-");
  expect_user_error([&] { append(meta("amort-A", 4, 3), t4); }, {path, "T = 2", "T = 4"});
  Stream d5 = make_stream(2, 2, 5, 35, "new-");
  expect_user_error([&] { append(meta("amort-A", 2, 5), d5); }, {path, "d = 3", "d = 5"});
  expect_user_error([&] { append(meta("amort-A", 2, 3, "bfloat16"), same_shape); }, {path, "float32", "bfloat16"});
  expect_user_error([&] { append(meta("amort-A", 4, 5), other); }, {path, "T = 2", "T = 4"});
  const std::string missing = dir + "/absent.h5";
  expect_user_error([&] { mac::write_bank(missing, meta("amort-A", 2, 3), rows_of(same_shape, share.begin, share.end),
                                          true, *comm, dist::MpiHandle::world()); },
                    {missing, "no such file"});
  expect_user_error([&] { mac::new_document_indices(missing, true, {"a"}); }, {missing});

  // One rank's rows disagree with the meta: every rank gets the error (none is left waiting).
  const int bad = world - 1;
  Stream wrong_d = make_stream(2, 2, 4, 36, "new-");
  mac::BankRows rows = rows_of(rank == bad ? wrong_d : same_shape, share.begin, share.end);
  if (rank == bad && rows.doc_ids.empty()) rows = rows_of(wrong_d, 0, 1);  // the bad rank must bring a row
  expect_user_error([&] { mac::write_bank(path, meta("amort-A", 2, 3), rows, true, *comm, dist::MpiHandle::world()); },
                    {path, fmt::format("rank {}", bad), ", 2, 4]", ", 2, 3]"});

  comm->barrier();
  EXPECT_EQ(read_bytes(path), before);
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  mac::BankReader bank(path);
  expect_rows(bank, s, 0, 4);
  bank.require_fingerprint("amort-A");
  try {
    bank.require_fingerprint("amort-B");
    ADD_FAILURE() << "require_fingerprint accepted another amortizer";
  } catch (const core::UserError& e) {
    EXPECT_EQ(std::string(e.what()), "bank " + path +
                                         " was built by amortizer amort-A, this model's is amort-B: rebuild it with "
                                         "engram mac-memorize");
  }
  comm->barrier();
}

TEST(MpiBank, Bfloat16BankStoresRoundedValuesAndReadsFloat32) {
  auto comm = make_comm();
  const int world = comm->world_size(), rank = comm->rank();
  const std::string path = shared_dir(*comm, "bf16") + "/bank.h5";
  const int64_t n = 9, T = 2, d = 8;
  Stream s = make_stream(n, T, d, 41, "doc-");
  dist::RowRange mine = dist::ShardSpec(n, world).range(rank);
  mac::write_bank(path, meta("amort-1", T, d, "bfloat16"), rows_of(s, mine.begin, mine.end), false, *comm, dist::MpiHandle::world());
  // Appended rows arrive already in bf16: stored as they are.
  Stream more = make_stream(world, T, d, 42, "more-");
  more.summaries = more.summaries.to(at::kBFloat16);
  mac::write_bank(path, meta("amort-1", T, d, "bfloat16"), rows_of(more, rank, rank + 1), true, *comm, dist::MpiHandle::world());

  mac::BankReader bank(path);
  EXPECT_EQ(bank.meta().dtype, "bfloat16");
  Stream expected = concat(s, more);
  expected.summaries = expected.summaries.to(at::kBFloat16).to(at::kFloat);
  expect_rows(bank, expected, 0, n + world);
  EXPECT_FALSE(bank.summaries(0, n).equal(s.summaries));  // the values really were rounded
  {
    io::H5File h5(path, io::H5File::Mode::Read);
    EXPECT_EQ(h5.dtype("/summaries"), at::kBFloat16);  // uint16 on disk with dtype = "bfloat16"
  }
  comm->barrier();
}

TEST(MpiBank, RowsWrittenByWRanksReadAtAnyOtherSplit) {
  auto comm = make_comm();
  const int world = comm->world_size(), rank = comm->rank();
  const std::string path = shared_dir(*comm, "reslice") + "/bank.h5";
  const int64_t n = 17, T = 3, d = 4;
  Stream s = make_stream(n, T, d, 51, "doc-");
  dist::RowRange mine = dist::ShardSpec(n, world).range(rank);
  mac::write_bank(path, meta("amort-1", T, d), rows_of(s, mine.begin, mine.end), false, *comm, dist::MpiHandle::world());

  mac::BankReader bank(path);
  for (int readers = 1; readers <= 5; ++readers) {
    if (readers == world) continue;
    // What rank r of a job of `readers` ranks would read, gathered: the whole bank, in order.
    dist::ShardSpec split(n, readers);
    std::vector<at::Tensor> parts;
    std::vector<std::string> ids;
    for (int r = 0; r < readers; ++r) {
      dist::RowRange range = split.range(r);
      parts.push_back(bank.summaries(range.begin, range.size()));
      for (auto& id : bank.doc_ids(range.begin, range.size())) ids.push_back(id);
    }
    EXPECT_TRUE(at::cat(parts).equal(s.summaries)) << readers << " readers";
    EXPECT_EQ(ids, s.ids) << readers << " readers";
    // Each piece of the plan from the writers' split to this one holds the writer's rows.
    for (const dist::ReslicePiece& p : dist::reslice_plan(n, world, readers)) {
      const int64_t row = dist::ShardSpec(n, world).range(p.from_rank).begin + p.from_offset;
      EXPECT_EQ(row, split.range(p.to_rank).begin + p.to_offset);
      EXPECT_TRUE(bank.summaries(row, p.count).equal(s.summaries.narrow(0, row, p.count)));
    }
  }
  comm->barrier();
}

TEST(MpiBank, BadFilesAreUserErrorsNamingTheFile) {
  auto comm = make_comm();
  const int world = comm->world_size(), rank = comm->rank();
  const std::string dir = shared_dir(*comm, "bad");
  const std::string path = dir + "/bank.h5";
  // A distinctive first summary value, to find its bytes in the file below.
  Stream s = make_stream(8, 2, 4, 61, "doc-");
  s.summaries[0][0][0] = 12345.678f;
  dist::RowRange mine = dist::ShardSpec(8, world).range(rank);
  mac::write_bank(path, meta("amort-1", 2, 4), rows_of(s, mine.begin, mine.end), false, *comm, dist::MpiHandle::world());
  comm->barrier();

  // Every rank makes its own bad copies (serial reads need no agreement).
  const std::string mine_dir = dir + fmt::format("/rank{}", rank);
  fs::create_directories(mine_dir);
  const std::string bank_bytes = read_bytes(path);

  const std::string missing = mine_dir + "/missing.h5";
  expect_user_error([&] { mac::BankReader r(missing); }, {missing, "no such file"});

  const std::string garbage = mine_dir + "/garbage.h5";
  write_bytes(garbage, "this is not an HDF5 file, just some text\n");
  expect_user_error([&] { mac::BankReader r(garbage); }, {garbage});

  const std::string empty = mine_dir + "/empty.h5";
  write_bytes(empty, "");
  expect_user_error([&] { mac::BankReader r(empty); }, {empty});

  for (size_t keep : {bank_bytes.size() / 2, bank_bytes.size() - 100, size_t{600}}) {
    const std::string truncated = mine_dir + fmt::format("/truncated{}.h5", keep);
    write_bytes(truncated, bank_bytes.substr(0, keep));
    expect_user_error([&] { mac::BankReader r(truncated); }, {truncated});
  }

  // Valid HDF5, but not a bank / a newer version / shapes that disagree with T.
  const std::string other = mine_dir + "/other.h5";
  {
    io::H5File h5(other, io::H5File::Mode::Create);
    h5.write_tensor("/weights", at::ones({2, 2}));
  }
  expect_user_error([&] { mac::BankReader r(other); }, {other, "format"});
  // A copy of the bank with one edit: the reader refuses it, naming the copy and the cause.
  auto refused_after = [&](const std::string& name, const std::function<void(io::H5File&)>& edit,
                           const std::string& cause) {
    const std::string copy = mine_dir + "/" + name + ".h5";
    write_bytes(copy, bank_bytes);
    {
      io::H5File h5(copy, io::H5File::Mode::ReadWrite);
      edit(h5);
    }
    expect_user_error([&] { mac::BankReader r(copy); }, {copy, cause});
  };
  refused_after("v3", [](io::H5File& h5) { h5.set_attr("/", "version", int64_t{3}); }, "version 3");
  refused_after("no_crc", [](io::H5File& h5) { h5.remove("/summary_crc32"); }, "summary_crc32");
  refused_after("int32_crc", [](io::H5File& h5) {
    h5.remove("/summary_crc32");
    h5.write_tensor("/summary_crc32", at::zeros({8}, at::kInt));
  }, "'/summary_crc32' is not int64");
  refused_after("bad_t", [](io::H5File& h5) { h5.set_attr("/", "T", int64_t{3}); }, "T = 3");
  refused_after("no_times", [](io::H5File& h5) { h5.remove("/times"); }, "times");

  // A flipped byte inside a summary row: the file opens, reading that row fails its checksum.
  float marker = 12345.678f;
  const size_t at = bank_bytes.find(std::string(reinterpret_cast<const char*>(&marker), sizeof marker));
  ASSERT_NE(at, std::string::npos);
  std::string flipped = bank_bytes;
  flipped[at + 1] = static_cast<char>(flipped[at + 1] ^ 0x40);
  const std::string corrupt = mine_dir + "/corrupt.h5";
  write_bytes(corrupt, flipped);
  mac::BankReader reader(corrupt);
  expect_user_error([&] { reader.summaries(0, reader.rows()); }, {corrupt, "row 0 of", "checksum", "damaged"});
  EXPECT_TRUE(reader.summaries(1, 7).equal(s.summaries.narrow(0, 1, 7)));  // the damage is local

  // A version 1 bank (fletcher32 chunks, no CRC columns) is read; appending to it is refused.
  const std::string v1 = dir + "/v1.h5";
  if (rank == 0) {
    write_bytes(v1, bank_bytes);
    io::H5File h5(v1, io::H5File::Mode::ReadWrite);
    h5.set_attr("/", "version", int64_t{1});
    h5.remove("/summary_crc32");
  }
  comm->barrier();
  EXPECT_TRUE(mac::BankReader(v1).summaries(0, 8).equal(s.summaries));
  expect_user_error(
      [&] {
        mac::write_bank(v1, meta("amort-1", 2, 4), rows_of(s, mine.begin, mine.end), true, *comm,
                        dist::MpiHandle::world());
      },
      {v1, "version 1", "mac-memorize"});
  comm->barrier();
}

TEST(MpiBank, H5pyReadsTheBank) {
  auto comm = make_comm();
  const int world = comm->world_size(), rank = comm->rank();
  const std::string path = shared_dir(*comm, "h5py") + "/bank.h5";
  const int64_t n = 7, T = 2, d = 3;
  Stream s = make_stream(n, T, d, 71, "doc-");
  dist::RowRange mine = dist::ShardSpec(n, world).range(rank);
  mac::write_bank(path, meta("amort-1", T, d), rows_of(s, mine.begin, mine.end), false, *comm, dist::MpiHandle::world());
  if (rank == 0) {
    // Debian's python3-h5py (tools/setup.sh) lives under /usr/bin/python3, which a pyenv or venv
    // python3 earlier on PATH would hide.
    std::string python = "python3";
    if (std::system("/usr/bin/python3 -c 'import h5py' 2>/dev/null") == 0) python = "/usr/bin/python3";
    const std::string script =
        "import sys, h5py, numpy as np\n"
        "f = h5py.File(sys.argv[1], 'r')\n"
        "s = f['summaries']\n"
        "assert s.shape == (7, 2, 3), s.shape\n"
        "assert s.chunks is not None and s.maxshape[0] is None\n"
        "import zlib\n"
        "assert all(zlib.crc32(s[i].tobytes()) == int(f['summary_crc32'][i]) for i in range(7))\n"
        "assert f.attrs['format'] == b'engram-bank' or f.attrs['format'] == 'engram-bank', f.attrs['format']\n"
        "assert int(f.attrs['T']) == 2 and int(f.attrs['d']) == 3\n"
        "assert f['doc_ids'][4] == b'doc-4', f['doc_ids'][4]\n"
        "assert f['doc_ids'].asstr()[6] == 'doc-6'\n"
        "assert int(f['times'][5]) == int(sys.argv[3]), f['times'][5]\n"
        "assert s[5, 1, 2] == np.float32(sys.argv[2]), (s[5, 1, 2], sys.argv[2])\n";
    const std::string script_path = fs::path(path).parent_path().string() + "/check.py";
    write_bytes(script_path, script);
    const std::string command = fmt::format("{} {} {} {:.9g} {}", python, script_path, path,
                                            s.summaries[5][1][2].item<float>(), s.times[5]);
    EXPECT_EQ(std::system(command.c_str()), 0) << command << " failed (is python3-h5py installed?)";
  }
  comm->barrier();
}
