#pragma once
// The job's MPI communicator, as the code that opens shared HDF5 files needs it (checkpoints,
// MAC banks), without mpi.h in any header outside dist/. Only dist makes a parallel one; the
// default is a one-process run (no MPI: files are opened serially).
namespace engram::dist {

class MpiHandle {
 public:
  MpiHandle() = default;
  // MPI_COMM_WORLD (defined in runtime.cpp, which owns MPI).
  static MpiHandle world();
  bool parallel() const { return comm_ != nullptr; }
  // A const MPI_Comm*, for io::H5File, which hands it to HDF5's MPI-IO driver.
  const void* raw() const { return comm_; }

 private:
  explicit MpiHandle(const void* comm) : comm_(comm) {}
  const void* comm_ = nullptr;
};

}  // namespace engram::dist
