// libFuzzer target: the training-checkpoint loader (train/checkpoint.h) on arbitrary bytes written
// as the one committed step of a checkpoint folder: load_latest() on one rank. A bad file must end
// in a UserError ("no committed checkpoint loads ..."); any other exception or a sanitizer report
// in engram's code is a finding. What loads must be self-consistent.
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/error.h"
#include "dist/local_communicator.h"
#include "train/checkpoint.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string dir = "/tmp/engram_fuzz_checkpoints_" + std::to_string(::getpid());
  static const auto comm = engram::dist::make_local_communicator(std::chrono::seconds(60));
  std::filesystem::create_directories(dir);
  {
    std::ofstream out(dir + "/step_00000001.h5", std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
    std::ofstream(dir + "/step_00000001.done") << "1\n";
  }
  try {
    const engram::train::CheckpointStore store(dir, *comm, {}, 2);
    const auto loaded = store.load_latest();
    if (!loaded) __builtin_trap();  // a committed step exists: it loads or it is an error
    for (const auto& [name, tensor] : loaded->model)
      if (!tensor.defined()) __builtin_trap();
  } catch (const engram::core::UserError&) {
  }
  return 0;
}
