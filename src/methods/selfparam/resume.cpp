#include "methods/selfparam/resume.h"

#include <filesystem>
#include <fstream>
#include <iterator>

#include <spdlog/spdlog.h>

#include "core/error.h"
#include "dist/communicator.h"
#include "train/training_state.h"

namespace fs = std::filesystem;

namespace engram::selfparam {

InjectionCheckpoints::InjectionCheckpoints(std::string dir, dist::Communicator& comm, dist::MpiHandle mpi_comm,
                                           int64_t save_every, std::string config_yaml)
    : comm_(comm), store_(std::move(dir), comm, mpi_comm, 2), save_every_(save_every),
      config_yaml_(std::move(config_yaml)) {
  resumed_ = store_.load_latest();
  if (!resumed_) return;
  const std::string file = store_.file_of(resumed_->step);
  resumed_at_ = {resumed_->counters.at("part"), resumed_->counters.at("part_step"), resumed_->step};
  last_saved_ = resumed_->step;
  if (resumed_->world != comm.world_size())
    core::fail("{}: saved by {} ranks, this run has {}: resume an injection at the world size that saved it",
               file, resumed_->world, comm.world_size());
  if (comm.rank() == 0)
    spdlog::info("inject: resuming from {} ({} parts done, {} steps into the next)", file,
                 resumed_at_.part, resumed_at_.step);
}

InjectionCheckpoints::~InjectionCheckpoints() = default;

const train::CheckpointData* InjectionCheckpoints::inside(int64_t part) const {
  return resumed_ && resumed_at_.part == part && resumed_at_.step > 0 ? &*resumed_ : nullptr;
}

const train::CheckpointData* InjectionCheckpoints::between_parts() const {
  return resumed_ && resumed_at_.step == 0 ? &*resumed_ : nullptr;
}

std::string InjectionCheckpoints::resumed_file() const { return resumed_ ? store_.file_of(resumed_->step) : ""; }

bool InjectionCheckpoints::save_due(int64_t job_step) {
  stop_ = train::stop_requested_on_any_rank(comm_);
  return stop_ || (save_every_ > 0 && job_step - last_saved_ >= save_every_);
}

void InjectionCheckpoints::save(const Position& at, train::CheckpointData data) {
  data.step = at.job_step;
  data.world = comm_.world_size();
  data.config_yaml = config_yaml_;
  data.counters["part"] = at.part;
  data.counters["part_step"] = at.step;
  store_.save(data);
  last_saved_ = at.job_step;
  if (comm_.rank() == 0)
    spdlog::info("inject: checkpoint {} ({} parts done, {} steps into the next)", store_.file_of(at.job_step), at.part,
                 at.step);
}

namespace {

std::string targets_file(const std::string& dir, int64_t part) {
  return (fs::path(dir) / ("targets_" + std::to_string(part) + ".json")).string();
}

}  // namespace

std::optional<TargetSet> InjectionCheckpoints::kept_targets(int64_t part) const {
  const std::string path = targets_file(store_.dir(), part);
  if (!resumed_ || !fs::exists(path)) return std::nullopt;
  std::ifstream in(path);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return targets_from_json(text, path + " (remove it to sample the targets again)");
}

void InjectionCheckpoints::keep_targets(int64_t part, const TargetSet& t) {
  if (comm_.rank() == 0) {
    fs::create_directories(store_.dir());
    const std::string path = targets_file(store_.dir(), part);
    {  // written whole, then renamed: a kill leaves the old file or none
      std::ofstream out(path + ".tmp");
      out << targets_to_json(t);
      if (!out) core::fail("{}: cannot write", path + ".tmp");
    }
    fs::rename(path + ".tmp", path);
  }
  comm_.barrier();
}

}  // namespace engram::selfparam
