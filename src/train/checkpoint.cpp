#include "train/checkpoint.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include <ATen/ATen.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include "core/build_info.h"
#include "core/error.h"
#include "dist/communicator.h"
#include "dist/shard_spec.h"
#include "io/h5file.h"

namespace fs = std::filesystem;

namespace engram::train {
namespace {

constexpr const char* kFormat = "engram-checkpoint";
constexpr int64_t kVersion = 1;

std::string step_name(int64_t step) { return fmt::format("step_{:08d}", step); }

// Writes `text` to `path` durably: a temporary file, fsync, rename.
void write_marker(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) core::fail("{}: cannot write", tmp);
  std::fwrite(text.data(), 1, text.size(), f);
  std::fflush(f);
  fsync(fileno(f));
  std::fclose(f);
  fs::rename(tmp, path);
}

void fsync_file(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return;
  fsync(fileno(f));
  std::fclose(f);
}

// Every rank's copy of `local` (an int64 vector of the same length on each rank).
std::vector<int64_t> all_sizes(dist::Communicator& comm, int64_t local) {
  at::Tensor mine = at::full({1}, local, at::kLong);
  at::Tensor all = comm.all_gather(mine);
  return std::vector<int64_t>(all.data_ptr<int64_t>(), all.data_ptr<int64_t>() + all.numel());
}

}  // namespace

CheckpointStore::CheckpointStore(std::string dir, dist::Communicator& comm, dist::MpiHandle mpi_comm, int keep_last)
    : dir_(std::move(dir)), comm_(comm), mpi_comm_(mpi_comm), keep_last_(keep_last) {
  if (comm_.rank() == 0) fs::create_directories(dir_);
  comm_.barrier();
}

std::string CheckpointStore::file_of(int64_t step) const { return dir_ + "/" + step_name(step) + ".h5"; }

std::vector<int64_t> CheckpointStore::committed_steps() const {
  // Rank 0 looks, everyone gets its answer: ranks never disagree about where to resume.
  std::string answer;
  if (comm_.rank() == 0) {
    std::vector<int64_t> steps;
    static const std::regex done(R"(step_(\d{8})\.done)");
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(dir_, ec)) {
      std::smatch m;
      std::string name = entry.path().filename().string();
      if (!std::regex_match(name, m, done)) continue;
      int64_t step = std::stoll(m[1]);
      if (fs::exists(file_of(step))) steps.push_back(step);
    }
    std::sort(steps.rbegin(), steps.rend());
    answer = fmt::format("{}", fmt::join(steps, " "));
  }
  comm_.broadcast_bytes(answer, 0);
  std::vector<int64_t> steps;
  std::istringstream in(answer);
  for (int64_t step; in >> step;) steps.push_back(step);
  return steps;
}

std::optional<int64_t> CheckpointStore::latest() const {
  const std::vector<int64_t> steps = committed_steps();
  if (steps.empty()) return std::nullopt;
  return steps.front();
}

std::optional<CheckpointData> CheckpointStore::load_latest() const {
  const std::vector<int64_t> steps = committed_steps();
  std::string newest_damage;
  for (int64_t step : steps) {
    CheckpointData data;
    std::string damage;
    try {
      data = load(step);
    } catch (const core::UserError& e) {
      damage = e.what();
    }
    // A step is taken only if every rank read it.
    for (const std::string& why : comm_.all_gather_bytes(damage))
      if (!why.empty() && damage.empty()) damage = why;
    if (damage.empty()) return data;
    if (newest_damage.empty()) newest_damage = damage;
    if (comm_.rank() == 0)
      spdlog::warn("{} cannot be loaded ({}); falling back to the committed checkpoint before it", file_of(step),
                   damage);
  }
  if (!newest_damage.empty())
    core::fail("{}: no committed checkpoint loads ({} tried; the newest: {}); move them away to start afresh", dir_,
               steps.size(), newest_damage);
  return std::nullopt;
}

void CheckpointStore::save(const CheckpointData& data) {
  const int world = comm_.world_size(), rank = comm_.rank();
  const std::string final_path = file_of(data.step), tmp_path = final_path + ".tmp";
  {
    io::H5File file(tmp_path, io::H5File::Mode::Create, world > 1 ? mpi_comm_ : dist::MpiHandle());
    file.create_group("/meta");
    file.set_attr("/meta", "format", std::string(kFormat));
    file.set_attr("/meta", "version", kVersion);
    file.set_attr("/meta", "step", data.step);
    file.set_attr("/meta", "world", static_cast<int64_t>(world));
    file.set_attr("/meta", "config", data.config_yaml);
    file.set_attr("/meta", "build", core::build_description());
    for (const auto& [name, value] : data.counters) file.set_attr("/meta", "counter." + name, value);
    for (const auto& [name, value] : data.values) file.set_attr("/meta", "value." + name, value);

    for (const auto& [name, tensor] : data.model) file.write_tensor("/model/" + name, tensor.detach().cpu(), rank == 0);
    // Optimizer state as global 1-D tensors; each rank writes its share of the rows.
    for (const auto& [name, tensor] : data.optim) {
      at::Tensor flat = tensor.detach().cpu().reshape(-1);
      const std::string path = "/optim/" + name;
      file.create_dataset(path, flat.scalar_type(), {flat.numel()});
      dist::RowRange mine = dist::ShardSpec(flat.numel(), world).range(rank);
      file.write_rows(path, mine.begin, flat.narrow(0, mine.begin, mine.size()));
    }
    for (const auto& piece : data.optim_pieces) {
      const std::string path = "/optim/" + piece.name;
      file.create_dataset(path, piece.rows.scalar_type(), {piece.numel});
      file.write_rows(path, piece.offset, piece.rows.detach().cpu().contiguous());
    }
    // Per-rank state: every rank creates every rank's dataset (HDF5 metadata is collective).
    auto write_per_rank = [&](const std::string& group, const at::Tensor& mine) {
      at::Tensor local = mine.defined() ? mine.detach().cpu().contiguous().reshape(-1) : at::empty({0}, at::kLong);
      // Every rank's (size, dtype) in one gather: [W, 2].
      at::Tensor mine_shape = at::tensor({local.numel(), static_cast<int64_t>(local.scalar_type())}, at::kLong);
      at::Tensor all = comm_.all_gather(mine_shape).view({world, 2});
      if (!all.select(1, 1).eq(static_cast<int64_t>(local.scalar_type())).all().item<bool>())
        core::fail("checkpoint: per-rank state '{}' has different dtypes on different ranks", group);
      for (int r = 0; r < world; ++r) {
        const std::string path = fmt::format("/{}/{}", group, r);
        const int64_t size = all[r][0].item<int64_t>();
        file.create_dataset(path, local.scalar_type(), {size});
        // An empty dataset takes no write (HDF5 refuses a selection in it); every rank knows.
        if (size > 0) file.write_rows(path, 0, r == rank ? local : local.narrow(0, 0, 0));
      }
    };
    write_per_rank("rng", data.rng);
    write_per_rank("data", data.data);
    if (all_sizes(comm_, static_cast<int64_t>(data.rank_state.size())) !=
        std::vector<int64_t>(static_cast<size_t>(world), static_cast<int64_t>(data.rank_state.size())))
      core::fail("checkpoint: ranks save different numbers of per-rank state tensors");
    for (const auto& [name, tensor] : data.rank_state) write_per_rank("state/" + name, tensor);
    file.close();
  }
  comm_.barrier();
  if (rank == 0) {
    fsync_file(tmp_path);
    fs::rename(tmp_path, final_path);
    write_marker(dir_ + "/" + step_name(data.step) + ".done",
                 fmt::format("step {}\nworld {}\n", data.step, world));
    // Keep the newest `keep_last_` committed steps; drop older ones and stale temporaries.
    std::vector<int64_t> committed;
    static const std::regex done(R"(step_(\d{8})\.done)"), tmp(R"(step_\d{8}\.h5\.tmp)");
    for (const auto& entry : fs::directory_iterator(dir_)) {
      std::smatch m;
      std::string name = entry.path().filename().string();
      if (std::regex_match(name, m, done)) committed.push_back(std::stoll(m[1]));
      else if (std::regex_match(name, tmp) && entry.path().string() != tmp_path) fs::remove(entry.path());
    }
    std::sort(committed.rbegin(), committed.rend());
    for (size_t k = static_cast<size_t>(std::max(1, keep_last_)); k < committed.size(); ++k) {
      fs::remove(dir_ + "/" + step_name(committed[k]) + ".done");  // uncommit first, then delete
      fs::remove(file_of(committed[k]));
    }
  }
  comm_.barrier();
}

CheckpointData CheckpointStore::load(int64_t step) const {
  const int world = comm_.world_size(), rank = comm_.rank();
  const std::string path = file_of(step);
  // Each rank opens the file on its own (serial HDF5, read only), as a bank is read: it reads
  // its own per-rank datasets, which a collective transfer cannot do when one of them is empty
  // (an empty retriever pool failed with "corrupt file or checksum mismatch" on resume).
  io::H5File file(path, io::H5File::Mode::Read);
  if (!file.has_attr("/meta", "format") || file.attr_string("/meta", "format") != kFormat)
    core::fail("{}: not an engram checkpoint (no /meta format = {})", path, kFormat);
  if (file.attr_int("/meta", "version") != kVersion)
    core::fail("{}: checkpoint version {} (this engram reads version {})", path, file.attr_int("/meta", "version"),
               kVersion);
  CheckpointData data;
  data.step = file.attr_int("/meta", "step");
  data.world = static_cast<int>(file.attr_int("/meta", "world"));
  data.config_yaml = file.attr_string("/meta", "config");
  for (const auto& name : file.attr_names("/meta")) {
    if (name.rfind("counter.", 0) == 0) data.counters[name.substr(8)] = file.attr_int("/meta", name);
    if (name.rfind("value.", 0) == 0) data.values[name.substr(6)] = file.attr_double("/meta", name);
  }
  for (const auto& name : file.list("/model")) data.model.emplace_back(name, file.read_tensor("/model/" + name));
  if (file.exists("/optim"))
    for (const auto& param : file.list("/optim"))
      for (const auto& state : file.list("/optim/" + param))
        data.optim.emplace_back(param + "/" + state, file.read_tensor("/optim/" + param + "/" + state));
  if (data.world == world) {
    data.rng = file.read_tensor(fmt::format("/rng/{}", rank));
    data.data = file.read_tensor(fmt::format("/data/{}", rank));
    if (file.exists("/state"))
      for (const auto& name : file.list("/state"))
        data.rank_state[name] = file.read_tensor(fmt::format("/state/{}/{}", name, rank));
  }
  return data;
}

}  // namespace engram::train
