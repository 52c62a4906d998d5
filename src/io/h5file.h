#pragma once
// HDF5 files of engram (checkpoints, memory banks, converted models): one class for serial and
// parallel (MPI-IO) access, tensors in and out, row ranges by hyperslab, attributes.
//
// Parallel use: pass the job's MPI communicator handle (dist::Runtime::mpi_handle()). Then,
// as HDF5 requires, every call that changes the file's structure (create, create_dataset,
// set_attr, extend, close) is collective: every rank makes it with the same arguments. Data
// transfers are collective too: a rank with nothing to write passes an empty row range.
//
// Types: float32, float64, int32, int64, uint8 natively; bfloat16 and float16 as uint16 with the
// dataset attribute dtype = "bfloat16" / "float16" (HDF5 has no bf16), read back as such.
// Strings: fixed-length string datasets (create_string_dataset and friends).
#include <cstdint>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "dist/mpi_handle.h"

namespace engram::io {

class H5File {
 public:
  enum class Mode { Create, Read, ReadWrite };
  // `mpi_comm`: none for one process (serial driver), else the job's communicator (MPI-IO driver).
  // Errors (missing file, not HDF5, no permission) -> core::UserError naming the file.
  H5File(const std::string& path, Mode mode, dist::MpiHandle mpi_comm = {});
  ~H5File();
  H5File(const H5File&) = delete;
  H5File& operator=(const H5File&) = delete;
  void close();
  const std::string& path() const { return path_; }
  bool parallel() const { return parallel_; }

  bool exists(const std::string& object) const;  // "/model/wte.weight"; intermediate groups too
  std::vector<std::string> list(const std::string& group) const;  // child names, sorted
  void create_group(const std::string& group);   // with intermediate groups

  void set_attr(const std::string& object, const std::string& name, const std::string& value);
  void set_attr(const std::string& object, const std::string& name, int64_t value);
  void set_attr(const std::string& object, const std::string& name, double value);
  bool has_attr(const std::string& object, const std::string& name) const;
  std::vector<std::string> attr_names(const std::string& object) const;
  std::string attr_string(const std::string& object, const std::string& name) const;
  int64_t attr_int(const std::string& object, const std::string& name) const;
  double attr_double(const std::string& object, const std::string& name) const;

  // A dataset of `shape` (row-major; dim 0 = rows). chunk_rows > 0: chunked layout (needed for
  // extendible and checksummed datasets); extendible: dim 0 may grow (extend()); checksum:
  // HDF5's fletcher32 filter on every chunk.
  void create_dataset(const std::string& path, at::ScalarType dtype, const std::vector<int64_t>& shape,
                      int64_t chunk_rows = 0, bool extendible = false, bool checksum = false);
  void extend(const std::string& path, int64_t rows);  // new dim-0 size (>= current)
  std::vector<int64_t> shape(const std::string& path) const;
  at::ScalarType dtype(const std::string& path) const;

  // Writes `rows` (shape [n, ...rest]) at rows [begin, begin + n) of the dataset. n may be 0.
  void write_rows(const std::string& path, int64_t begin, const at::Tensor& rows);
  // Rows [begin, begin + count), as a tensor of the dataset's dtype.
  at::Tensor read_rows(const std::string& path, int64_t begin, int64_t count) const;

  // Fixed-length string datasets, 1-D [rows] (h5py reads them as bytes, .asstr() as str): each
  // string takes `width` bytes, null-padded, UTF-8. Layout flags as for create_dataset.
  void create_string_dataset(const std::string& path, int64_t rows, int64_t width, int64_t chunk_rows = 0,
                             bool extendible = false, bool checksum = false);
  // Bytes per string of a fixed-length string dataset (core::UserError if it is not one).
  int64_t string_width(const std::string& path) const;
  // Writes `rows` at rows [begin, begin + n); every string must fit the width and hold no NUL
  // (null padding could not tell it from the end). n may be 0; collective in parallel files.
  void write_string_rows(const std::string& path, int64_t begin, const std::vector<std::string>& rows);
  std::vector<std::string> read_string_rows(const std::string& path, int64_t begin, int64_t count) const;

  // Unlinks a dataset or group (its space is not reclaimed until the file is rewritten).
  void remove(const std::string& object);

  // Whole tensors: create (collectively) and write; in parallel files only `writer` passes data,
  // the others take part with an empty selection.
  void write_tensor(const std::string& path, const at::Tensor& tensor, bool writer = true);
  at::Tensor read_tensor(const std::string& path) const;

 private:
  struct Handles;
  std::string path_;
  bool parallel_ = false;
  Handles* h_ = nullptr;
};

}  // namespace engram::io
