#include "io/h5file.h"

#include <hdf5.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>

#include <ATen/ATen.h>

#include "core/error.h"

namespace engram::io {
namespace {

// HDF5 prints its error stack to stderr by default; engram reports errors itself.
void silence_hdf5() {
  static std::once_flag once;
  std::call_once(once, [] { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); });
}

// Closes an HDF5 id of any kind when it goes out of scope.
class Id {
 public:
  Id(hid_t id, herr_t (*closer)(hid_t)) : id_(id), closer_(closer) {}
  ~Id() {
    if (id_ >= 0) closer_(id_);
  }
  Id(const Id&) = delete;
  Id& operator=(const Id&) = delete;
  operator hid_t() const { return id_; }
  bool ok() const { return id_ >= 0; }

 private:
  hid_t id_;
  herr_t (*closer_)(hid_t);
};

hid_t native_type(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return H5T_NATIVE_FLOAT;
    case at::kDouble: return H5T_NATIVE_DOUBLE;
    case at::kInt: return H5T_NATIVE_INT32;
    case at::kLong: return H5T_NATIVE_INT64;
    case at::kByte: case at::kBool: return H5T_NATIVE_UINT8;
    case at::kBFloat16: case at::kHalf: return H5T_NATIVE_UINT16;
    default: ENGRAM_CHECK(false, "no HDF5 type for {}", c10::toString(t));
  }
  return -1;
}

const char* dtype_attr(at::ScalarType t) {
  return t == at::kBFloat16 ? "bfloat16" : t == at::kHalf ? "float16" : t == at::kBool ? "bool" : nullptr;
}

// Why H5Fopen refused `path`, for the message: a folder, a file that does not start with the HDF5
// signature, or an HDF5 file HDF5 cannot read (truncated by a full disk or a broken copy), with
// HDF5's own innermost reason ("truncated file: eof = 3000, ..., stored_eof = 41234").
std::string why_not_readable(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_directory(path, ec)) return "a directory, not an HDF5 file";
  std::ifstream in(path, std::ios::binary);
  if (!in) return fmt::format("cannot read it ({})", std::strerror(errno));
  std::string head(8, '\0');
  in.read(head.data(), 8);
  const auto size = fs::file_size(path, ec);
  if (head != std::string("\x89HDF\r\n\x1a\n", 8))
    return fmt::format("not an HDF5 file ({} bytes, no HDF5 signature at the start)", size);
  std::string detail;
  H5Ewalk2(
      H5E_DEFAULT, H5E_WALK_UPWARD,
      [](unsigned n, const H5E_error2_t* error, void* out) -> herr_t {
        if (n == 0 && error->desc) *static_cast<std::string*>(out) = error->desc;
        return 0;
      },
      &detail);
  return fmt::format("a damaged or truncated HDF5 file ({} bytes{}{})", size, detail.empty() ? "" : "; HDF5: ", detail);
}

}  // namespace

struct H5File::Handles {
  hid_t file = -1;
  hid_t transfer = H5P_DEFAULT;  // dataset transfer properties (collective in parallel files)
};

H5File::H5File(const std::string& path, Mode mode, dist::MpiHandle mpi_comm) : path_(path) {
  silence_hdf5();
  parallel_ = mpi_comm.parallel();
  Id access(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
  if (parallel_) {
#ifdef H5_HAVE_PARALLEL
    MPI_Comm comm = *static_cast<const MPI_Comm*>(mpi_comm.raw());
    H5Pset_fapl_mpio(access, comm, MPI_INFO_NULL);
    // Metadata reads and writes done collectively: one rank reads, the rest receive (scales).
    H5Pset_all_coll_metadata_ops(access, 1);
    H5Pset_coll_metadata_write(access, 1);
#else
    core::fail("{}: parallel access asked for, but HDF5 was built without MPI support", path);
#endif
  }
  if (mode != Mode::Create && !std::filesystem::exists(path)) core::fail("{}: no such file", path);
  hid_t file = -1;
  if (mode == Mode::Create) file = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, access);
  else file = H5Fopen(path.c_str(), mode == Mode::Read ? H5F_ACC_RDONLY : H5F_ACC_RDWR, access);
  if (file < 0 && mode == Mode::Create) core::fail("{}: cannot create it as HDF5 (no permission, or no such folder?)", path);
  if (file < 0) core::fail("{}: cannot open: {}", path, why_not_readable(path));
  h_ = new Handles;
  h_->file = file;
#ifdef H5_HAVE_PARALLEL
  if (parallel_) {
    h_->transfer = H5Pcreate(H5P_DATASET_XFER);
    H5Pset_dxpl_mpio(h_->transfer, H5FD_MPIO_COLLECTIVE);
  }
#endif
}

H5File::~H5File() {
  try {
    close();
  } catch (...) {
  }
}

void H5File::close() {
  if (!h_) return;
  if (h_->transfer != H5P_DEFAULT) H5Pclose(h_->transfer);
  herr_t rc = H5Fclose(h_->file);
  delete h_;
  h_ = nullptr;
  if (rc < 0) core::fail("{}: closing failed (disk full?)", path_);
}

bool H5File::exists(const std::string& object) const {
  if (object == "/" || object.empty()) return true;
  // H5Lexists needs every intermediate link to exist: check them in turn.
  size_t pos = 0;
  while (pos != std::string::npos) {
    pos = object.find('/', pos + 1);
    std::string prefix = object.substr(0, pos);
    if (prefix.empty() || prefix == "/") continue;
    if (H5Lexists(h_->file, prefix.c_str(), H5P_DEFAULT) <= 0) return false;
  }
  return true;
}

std::vector<std::string> H5File::list(const std::string& group) const {
  Id g(H5Gopen2(h_->file, group.c_str(), H5P_DEFAULT), H5Gclose);
  if (!g.ok()) core::fail("{}: no group '{}'", path_, group);
  H5G_info_t info;
  H5Gget_info(g, &info);
  std::vector<std::string> names;
  for (hsize_t i = 0; i < info.nlinks; ++i) {
    ssize_t n = H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT);
    std::string name(static_cast<size_t>(std::max<ssize_t>(n, 0)), '\0');
    H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, name.data(), name.size() + 1, H5P_DEFAULT);
    names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  return names;
}

void H5File::create_group(const std::string& group) {
  if (exists(group)) return;
  Id links(H5Pcreate(H5P_LINK_CREATE), H5Pclose);
  H5Pset_create_intermediate_group(links, 1);
  Id g(H5Gcreate2(h_->file, group.c_str(), links, H5P_DEFAULT, H5P_DEFAULT), H5Gclose);
  if (!g.ok()) core::fail("{}: cannot create group '{}'", path_, group);
}

namespace {
// Opens a group or a dataset by path.
hid_t open_object(hid_t file, const std::string& object) { return H5Oopen(file, object.c_str(), H5P_DEFAULT); }

template <typename WriteFn>
void write_attr(hid_t file, const std::string& path, const std::string& object, const std::string& name, hid_t type,
                WriteFn write) {
  Id obj(open_object(file, object), H5Oclose);
  if (!obj.ok()) core::fail("{}: no object '{}' for attribute '{}'", path, object, name);
  if (H5Aexists(obj, name.c_str()) > 0) H5Adelete(obj, name.c_str());
  Id space(H5Screate(H5S_SCALAR), H5Sclose);
  Id attr(H5Acreate2(obj, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  if (!attr.ok() || write(attr) < 0) core::fail("{}: cannot write attribute '{}' of '{}'", path, name, object);
}
}  // namespace

void H5File::set_attr(const std::string& object, const std::string& name, const std::string& value) {
  Id type(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(type, std::max<size_t>(1, value.size()));
  H5Tset_strpad(type, H5T_STR_NULLPAD);
  std::string padded = value.empty() ? std::string(1, '\0') : value;
  write_attr(h_->file, path_, object, name, type, [&](hid_t a) { return H5Awrite(a, type, padded.data()); });
}

void H5File::set_attr(const std::string& object, const std::string& name, int64_t value) {
  write_attr(h_->file, path_, object, name, H5T_NATIVE_INT64,
             [&](hid_t a) { return H5Awrite(a, H5T_NATIVE_INT64, &value); });
}

void H5File::set_attr(const std::string& object, const std::string& name, double value) {
  write_attr(h_->file, path_, object, name, H5T_NATIVE_DOUBLE,
             [&](hid_t a) { return H5Awrite(a, H5T_NATIVE_DOUBLE, &value); });
}

bool H5File::has_attr(const std::string& object, const std::string& name) const {
  if (!exists(object)) return false;
  Id obj(open_object(h_->file, object), H5Oclose);
  return obj.ok() && H5Aexists(obj, name.c_str()) > 0;
}

std::vector<std::string> H5File::attr_names(const std::string& object) const {
  Id obj(open_object(h_->file, object), H5Oclose);
  if (!obj.ok()) core::fail("{}: no object '{}'", path_, object);
  H5O_info_t info;
  H5Oget_info2(obj, &info, H5O_INFO_NUM_ATTRS);
  std::vector<std::string> names;
  for (hsize_t i = 0; i < info.num_attrs; ++i) {
    ssize_t n = H5Aget_name_by_idx(obj, ".", H5_INDEX_NAME, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT);
    std::string name(static_cast<size_t>(std::max<ssize_t>(n, 0)), '\0');
    H5Aget_name_by_idx(obj, ".", H5_INDEX_NAME, H5_ITER_INC, i, name.data(), name.size() + 1, H5P_DEFAULT);
    names.push_back(name);
  }
  return names;
}

namespace {
Id open_attr(hid_t file, const std::string& path, const std::string& object, const std::string& name) {
  Id obj(open_object(file, object), H5Oclose);
  if (!obj.ok() || H5Aexists(obj, name.c_str()) <= 0) core::fail("{}: missing attribute '{}' on '{}'", path, name, object);
  return Id(H5Aopen(obj, name.c_str(), H5P_DEFAULT), H5Aclose);
}
}  // namespace

std::string H5File::attr_string(const std::string& object, const std::string& name) const {
  Id attr = open_attr(h_->file, path_, object, name);
  Id type(H5Aget_type(attr), H5Tclose);
  if (H5Tget_class(type) != H5T_STRING) core::fail("{}: attribute '{}' of '{}' is not a string", path_, name, object);
  if (H5Tis_variable_str(type) > 0) {  // written by h5py, say
    char* text = nullptr;
    Id mem(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(mem, H5T_VARIABLE);
    H5Aread(attr, mem, &text);
    std::string out = text ? text : "";
    H5free_memory(text);
    return out;
  }
  std::string value(H5Tget_size(type), '\0');
  H5Aread(attr, type, value.data());
  value.erase(std::find(value.begin(), value.end(), '\0'), value.end());
  return value;
}

int64_t H5File::attr_int(const std::string& object, const std::string& name) const {
  Id attr = open_attr(h_->file, path_, object, name);
  int64_t value = 0;
  if (H5Aread(attr, H5T_NATIVE_INT64, &value) < 0) core::fail("{}: attribute '{}' of '{}' is not an integer", path_, name, object);
  return value;
}

double H5File::attr_double(const std::string& object, const std::string& name) const {
  Id attr = open_attr(h_->file, path_, object, name);
  double value = 0;
  if (H5Aread(attr, H5T_NATIVE_DOUBLE, &value) < 0) core::fail("{}: attribute '{}' of '{}' is not a number", path_, name, object);
  return value;
}

namespace {
// Creates dataset `path` of file type `type` with the layout create_dataset describes; false on failure.
bool create_typed_dataset(hid_t file, const std::string& path, hid_t type, const std::vector<int64_t>& shape,
                          int64_t chunk_rows, bool extendible, bool checksum) {
  std::vector<hsize_t> dims(shape.begin(), shape.end()), max_dims = dims, chunk(dims.size());
  if (extendible) max_dims[0] = H5S_UNLIMITED;
  Id space(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), max_dims.data()), H5Sclose);
  Id create(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  if (chunk_rows > 0) {
    chunk[0] = static_cast<hsize_t>(chunk_rows);
    for (size_t d = 1; d < dims.size(); ++d) chunk[d] = std::max<hsize_t>(1, dims[d]);
    H5Pset_chunk(create, static_cast<int>(chunk.size()), chunk.data());
    if (checksum) H5Pset_fletcher32(create);
  }
  Id links(H5Pcreate(H5P_LINK_CREATE), H5Pclose);
  H5Pset_create_intermediate_group(links, 1);
  Id dataset(H5Dcreate2(file, path.c_str(), type, space, links, create, H5P_DEFAULT), H5Dclose);
  return dataset.ok();
}

// The file and memory type of fixed-length strings of `width` bytes: null-padded like numpy's
// 'S' dtype (what h5py maps them to), UTF-8 so that h5py's .asstr() decodes any document id.
hid_t fixed_string_type(int64_t width) {
  hid_t type = H5Tcopy(H5T_C_S1);
  H5Tset_size(type, static_cast<size_t>(width));
  H5Tset_strpad(type, H5T_STR_NULLPAD);
  H5Tset_cset(type, H5T_CSET_UTF8);
  return type;
}

// The memory type for transfers with an existing string dataset: its own type (same width and
// character set: HDF5 does not convert between ASCII and UTF-8), null-padded.
hid_t memory_string_type(hid_t dataset) {
  hid_t type = H5Dget_type(dataset);
  H5Tset_strpad(type, H5T_STR_NULLPAD);
  return type;
}
}  // namespace

void H5File::create_dataset(const std::string& path, at::ScalarType dtype, const std::vector<int64_t>& shape,
                            int64_t chunk_rows, bool extendible, bool checksum) {
  ENGRAM_CHECK(!shape.empty(), "create_dataset {}: use write_tensor for scalars", path);
  ENGRAM_CHECK(chunk_rows > 0 || (!extendible && !checksum), "{}: extendible/checksummed datasets need chunks", path);
  if (!create_typed_dataset(h_->file, path, native_type(dtype), shape, chunk_rows, extendible, checksum))
    core::fail("{}: cannot create dataset '{}'", path_, path);
  if (const char* name = dtype_attr(dtype)) set_attr(path, "dtype", std::string(name));
}

void H5File::extend(const std::string& path, int64_t rows) {
  Id dataset(H5Dopen2(h_->file, path.c_str(), H5P_DEFAULT), H5Dclose);
  if (!dataset.ok()) core::fail("{}: no dataset '{}'", path_, path);
  std::vector<int64_t> dims = shape(path);
  ENGRAM_CHECK(rows >= dims[0], "extend {}: {} rows < current {}", path, rows, dims[0]);
  std::vector<hsize_t> size(dims.begin(), dims.end());
  size[0] = static_cast<hsize_t>(rows);
  if (H5Dset_extent(dataset, size.data()) < 0) core::fail("{}: cannot extend '{}' (not extendible?)", path_, path);
}

std::vector<int64_t> H5File::shape(const std::string& path) const {
  Id dataset(H5Dopen2(h_->file, path.c_str(), H5P_DEFAULT), H5Dclose);
  if (!dataset.ok()) core::fail("{}: no dataset '{}'", path_, path);
  Id space(H5Dget_space(dataset), H5Sclose);
  int rank = H5Sget_simple_extent_ndims(space);
  std::vector<hsize_t> dims(static_cast<size_t>(std::max(rank, 0)));
  H5Sget_simple_extent_dims(space, dims.data(), nullptr);
  return std::vector<int64_t>(dims.begin(), dims.end());
}

at::ScalarType H5File::dtype(const std::string& path) const {
  Id dataset(H5Dopen2(h_->file, path.c_str(), H5P_DEFAULT), H5Dclose);
  if (!dataset.ok()) core::fail("{}: no dataset '{}'", path_, path);
  Id type(H5Dget_type(dataset), H5Tclose);
  const H5T_class_t cls = H5Tget_class(type);
  const size_t size = H5Tget_size(type);
  if (cls == H5T_FLOAT) return size == 8 ? at::kDouble : at::kFloat;
  if (cls == H5T_INTEGER) {
    if (size == 8) return at::kLong;
    if (size == 4) return at::kInt;
    if (size == 1) return has_attr(path, "dtype") && attr_string(path, "dtype") == "bool" ? at::kBool : at::kByte;
    if (size == 2 && has_attr(path, "dtype")) {
      std::string name = attr_string(path, "dtype");
      if (name == "bfloat16") return at::kBFloat16;
      if (name == "float16") return at::kHalf;
    }
  }
  core::fail("{}: dataset '{}' has a type engram does not read", path_, path);
}

namespace {
// Selects rows [begin, begin + count) of `file_space` and returns the matching memory space.
hid_t select_rows(hid_t file_space, int64_t begin, int64_t count) {
  int rank = H5Sget_simple_extent_ndims(file_space);
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  H5Sget_simple_extent_dims(file_space, dims.data(), nullptr);
  if (count == 0) {
    H5Sselect_none(file_space);
    hid_t mem = H5Scopy(file_space);
    H5Sselect_none(mem);
    return mem;
  }
  std::vector<hsize_t> start(dims.size(), 0), counts = dims;
  start[0] = static_cast<hsize_t>(begin);
  counts[0] = static_cast<hsize_t>(count);
  H5Sselect_hyperslab(file_space, H5S_SELECT_SET, start.data(), nullptr, counts.data(), nullptr);
  return H5Screate_simple(rank, counts.data(), nullptr);
}
}  // namespace

void H5File::write_rows(const std::string& path, int64_t begin, const at::Tensor& rows) {
  Id dataset(H5Dopen2(h_->file, path.c_str(), H5P_DEFAULT), H5Dclose);
  if (!dataset.ok()) core::fail("{}: no dataset '{}'", path_, path);
  std::vector<int64_t> dims = shape(path);
  const int64_t n = rows.dim() == 0 ? 0 : rows.size(0);
  ENGRAM_CHECK(begin >= 0 && begin + n <= dims[0], "write_rows {}: rows [{}, {}) outside {}", path, begin, begin + n,
               dims[0]);
  at::Tensor data = rows.contiguous();
  if (data.scalar_type() == at::kBool) data = data.to(at::kByte);
  if (n > 0) {
    int64_t per_row = 1;
    for (size_t d = 1; d < dims.size(); ++d) per_row *= dims[d];
    ENGRAM_CHECK(data.numel() == n * per_row, "write_rows {}: {} values for {} rows of {}", path, data.numel(), n, per_row);
  }
  Id file_space(H5Dget_space(dataset), H5Sclose);
  Id mem_space(select_rows(file_space, begin, n), H5Sclose);
  static const uint8_t nothing = 0;  // a valid pointer for an empty selection
  const void* buffer = n > 0 ? data.data_ptr() : &nothing;
  if (H5Dwrite(dataset, native_type(data.scalar_type()), mem_space, file_space, h_->transfer, buffer) < 0)
    core::fail("{}: writing rows of '{}' failed (disk full?)", path_, path);
}

at::Tensor H5File::read_rows(const std::string& path, int64_t begin, int64_t count) const {
  Id dataset(H5Dopen2(h_->file, path.c_str(), H5P_DEFAULT), H5Dclose);
  if (!dataset.ok()) core::fail("{}: no dataset '{}'", path_, path);
  std::vector<int64_t> dims = shape(path);
  if (dims.empty()) core::fail("{}: '{}' is a scalar, not rows", path_, path);
  if (begin < 0 || count < 0 || begin + count > dims[0])
    core::fail("{}: rows [{}, {}) of '{}' are outside its {} rows", path_, begin, begin + count, path, dims[0]);
  const at::ScalarType type = dtype(path);
  std::vector<int64_t> out_shape = dims;
  out_shape[0] = count;
  at::Tensor out = at::empty(out_shape, at::TensorOptions().dtype(type == at::kBool ? at::kByte : type));
  Id file_space(H5Dget_space(dataset), H5Sclose);
  Id mem_space(select_rows(file_space, begin, count), H5Sclose);
  static uint8_t nothing = 0;
  void* buffer = count > 0 ? out.data_ptr() : &nothing;
  if (H5Dread(dataset, native_type(type), mem_space, file_space, h_->transfer, buffer) < 0)
    core::fail("{}: reading '{}' failed (corrupt file or checksum mismatch)", path_, path);
  return type == at::kBool ? out.to(at::kBool) : out;
}

void H5File::create_string_dataset(const std::string& path, int64_t rows, int64_t width, int64_t chunk_rows,
                                   bool extendible, bool checksum) {
  ENGRAM_CHECK(rows >= 0 && width > 0, "create_string_dataset {}: {} rows of width {}", path, rows, width);
  ENGRAM_CHECK(chunk_rows > 0 || (!extendible && !checksum), "{}: extendible/checksummed datasets need chunks", path);
  Id type(fixed_string_type(width), H5Tclose);
  if (!create_typed_dataset(h_->file, path, type, {rows}, chunk_rows, extendible, checksum))
    core::fail("{}: cannot create string dataset '{}'", path_, path);
}

int64_t H5File::string_width(const std::string& path) const {
  Id dataset(H5Dopen2(h_->file, path.c_str(), H5P_DEFAULT), H5Dclose);
  if (!dataset.ok()) core::fail("{}: no dataset '{}'", path_, path);
  Id type(H5Dget_type(dataset), H5Tclose);
  if (H5Tget_class(type) != H5T_STRING || H5Tis_variable_str(type) > 0)
    core::fail("{}: dataset '{}' is not a fixed-length string dataset", path_, path);
  return static_cast<int64_t>(H5Tget_size(type));
}

void H5File::write_string_rows(const std::string& path, int64_t begin, const std::vector<std::string>& rows) {
  const int64_t width = string_width(path);
  std::vector<int64_t> dims = shape(path);
  if (dims.size() != 1) core::fail("{}: string dataset '{}' is not one-dimensional", path_, path);
  const int64_t n = static_cast<int64_t>(rows.size());
  ENGRAM_CHECK(begin >= 0 && begin + n <= dims[0], "write_string_rows {}: rows [{}, {}) outside {}", path, begin,
               begin + n, dims[0]);
  // Pack into one zero-filled buffer of n x width bytes: the zeros are the null padding.
  std::vector<char> packed(static_cast<size_t>(std::max<int64_t>(n, 1) * width), '\0');
  for (int64_t i = 0; i < n; ++i) {
    const std::string& text = rows[static_cast<size_t>(i)];
    if (static_cast<int64_t>(text.size()) > width)
      core::fail("{}: string '{}' of {} bytes does not fit dataset '{}' ({} bytes per string)", path_, text,
                 text.size(), path, width);
    if (text.find('\0') != std::string::npos)
      core::fail("{}: string of row {} for dataset '{}' holds a NUL byte", path_, begin + i, path);
    std::copy(text.begin(), text.end(), packed.begin() + i * width);
  }
  Id dataset(H5Dopen2(h_->file, path.c_str(), H5P_DEFAULT), H5Dclose);
  Id type(memory_string_type(dataset), H5Tclose);
  Id file_space(H5Dget_space(dataset), H5Sclose);
  Id mem_space(select_rows(file_space, begin, n), H5Sclose);
  if (H5Dwrite(dataset, type, mem_space, file_space, h_->transfer, packed.data()) < 0)
    core::fail("{}: writing rows of '{}' failed (disk full?)", path_, path);
}

std::vector<std::string> H5File::read_string_rows(const std::string& path, int64_t begin, int64_t count) const {
  const int64_t width = string_width(path);
  std::vector<int64_t> dims = shape(path);
  if (dims.size() != 1) core::fail("{}: string dataset '{}' is not one-dimensional", path_, path);
  if (begin < 0 || count < 0 || begin + count > dims[0])
    core::fail("{}: rows [{}, {}) of '{}' are outside its {} rows", path_, begin, begin + count, path, dims[0]);
  std::vector<char> packed(static_cast<size_t>(std::max<int64_t>(count, 1) * width), '\0');
  Id dataset(H5Dopen2(h_->file, path.c_str(), H5P_DEFAULT), H5Dclose);
  Id type(memory_string_type(dataset), H5Tclose);
  Id file_space(H5Dget_space(dataset), H5Sclose);
  Id mem_space(select_rows(file_space, begin, count), H5Sclose);
  if (H5Dread(dataset, type, mem_space, file_space, h_->transfer, packed.data()) < 0)
    core::fail("{}: reading '{}' failed (corrupt file or checksum mismatch)", path_, path);
  std::vector<std::string> out;
  out.reserve(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) {
    const char* text = packed.data() + i * width;
    out.emplace_back(text, std::find(text, text + width, '\0'));  // strip the null padding
  }
  return out;
}

void H5File::remove(const std::string& object) {
  if (H5Ldelete(h_->file, object.c_str(), H5P_DEFAULT) < 0) core::fail("{}: cannot remove '{}'", path_, object);
}

void H5File::write_tensor(const std::string& path, const at::Tensor& tensor, bool writer) {
  std::vector<int64_t> shape(tensor.sizes().begin(), tensor.sizes().end());
  const bool scalar = shape.empty();
  if (scalar) shape = {1};  // stored as one row; the attribute restores the 0-d shape on read
  create_dataset(path, tensor.scalar_type(), shape);
  if (scalar) set_attr(path, "scalar", int64_t{1});
  at::Tensor rows = tensor.reshape(shape);
  write_rows(path, 0, writer ? rows : rows.narrow(0, 0, 0));
}

at::Tensor H5File::read_tensor(const std::string& path) const {
  std::vector<int64_t> dims = shape(path);
  at::Tensor out = read_rows(path, 0, dims[0]);
  if (has_attr(path, "scalar")) return out.reshape({});
  return out;
}

}  // namespace engram::io
