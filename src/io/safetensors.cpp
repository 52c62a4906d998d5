#include "io/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <set>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/jsonl.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.cpp assumes a little-endian host"
#endif

namespace engram::io {
namespace {

using core::fail;
using json = nlohmann::json;

struct DtypeEntry {
  const char* name;
  at::ScalarType type;     // the type the tensor has after reading (BOOL: kBool)
  at::ScalarType storage;  // the type the bytes are read as (BOOL: kByte, then != 0)
  uint64_t size;
  int order;               // the reference writer's ordering (larger alignment first)
};

constexpr DtypeEntry kDtypes[] = {
    {"BOOL", at::kBool, at::kByte, 1, 0}, {"U8", at::kByte, at::kByte, 1, 1},
    {"I8", at::kChar, at::kChar, 1, 2},   {"I16", at::kShort, at::kShort, 2, 3},
    {"F16", at::kHalf, at::kHalf, 2, 4},  {"BF16", at::kBFloat16, at::kBFloat16, 2, 5},
    {"I32", at::kInt, at::kInt, 4, 6},    {"F32", at::kFloat, at::kFloat, 4, 7},
    {"F64", at::kDouble, at::kDouble, 8, 8}, {"I64", at::kLong, at::kLong, 8, 9},
};

const DtypeEntry* dtype_by_name(const std::string& name) {
  for (const auto& d : kDtypes)
    if (name == d.name) return &d;
  return nullptr;
}

const DtypeEntry* dtype_by_type(at::ScalarType type) {
  for (const auto& d : kDtypes)
    if (d.type == type) return &d;
  return nullptr;
}

std::string supported_dtypes() {
  std::string s;
  for (const auto& d : kDtypes) s += (s.empty() ? "" : ", ") + std::string(d.name);
  return s;
}

// A printable form of a name from an untrusted header (control bytes escaped, long names cut).
std::string printable(const std::string& name) {
  std::string out;
  for (unsigned char c : name) {
    if (out.size() > 200) {
      out += "...";
      break;
    }
    if (c < 0x20 || c == 0x7f)
      out += fmt::format("\\x{:02x}", c);
    else
      out += static_cast<char>(c);
  }
  return out;
}

uint64_t read_le64(const unsigned char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// Reads a non-negative integer that fits in int64 from a JSON value, or explains what is wrong.
bool json_to_nonneg(const json& v, uint64_t& out, std::string& why) {
  if (v.is_number_unsigned()) {
    out = v.get<uint64_t>();
    if (out > static_cast<uint64_t>(INT64_MAX)) {
      why = "is too large";
      return false;
    }
    return true;
  }
  if (v.is_number_integer()) {
    int64_t s = v.get<int64_t>();
    if (s < 0) {
      why = fmt::format("is negative ({})", s);
      return false;
    }
    out = static_cast<uint64_t>(s);
    return true;
  }
  why = v.is_number_float() ? "is not an integer (or is too large)" : "is not a number";
  return false;
}

// The JSON text of the header (N bytes after the 8-byte length N), after checking N against the
// limit and the file. `head` holds at least the first 8 + N bytes of the file; `file_size` is the
// whole file's size.
std::string_view header_json_text(std::string_view head, uint64_t file_size, const std::string& file) {
  if (file_size < 8)
    fail("{}: not a safetensors file: {} bytes, shorter than the 8-byte header length", file, file_size);
  const uint64_t n = read_le64(reinterpret_cast<const unsigned char*>(head.data()));
  if (n > kSafetensorsMaxHeaderBytes)
    fail("{}: not a safetensors file: header length {} is larger than the {} byte limit", file, n,
         kSafetensorsMaxHeaderBytes);
  if (n > file_size - 8)
    fail("{}: truncated or not a safetensors file: header length {} is larger than the {} bytes after it",
         file, n, file_size - 8);
  if (n < 2) fail("{}: invalid safetensors header: {} bytes, too short for a JSON object", file, n);
  if (head.size() < 8 + n) fail("{}: internal: header not fully read", file);
  std::string_view text = head.substr(8, n);
  if (text[0] != '{')
    fail("{}: invalid safetensors header: it does not start with '{{' (not a safetensors file?)", file);
  return text;
}

// Parses the header's JSON object with a callback that rejects duplicate keys (nlohmann would keep
// the last one silently) and absurd nesting.
json parse_header_json(std::string_view text, const std::string& file) {
  std::vector<std::set<std::string>> keys;
  int depth = 0;
  std::string duplicate;
  json header;
  try {
    header = json::parse(
        text.begin(), text.end(),
        [&](int, json::parse_event_t event, json& parsed) {
          switch (event) {
            case json::parse_event_t::object_start:
              keys.emplace_back();
              [[fallthrough]];
            case json::parse_event_t::array_start:
              if (++depth > 16) fail("{}: invalid safetensors header: JSON nested deeper than 16 levels", file);
              break;
            case json::parse_event_t::object_end:
              if (!keys.empty()) keys.pop_back();
              [[fallthrough]];
            case json::parse_event_t::array_end:
              --depth;
              break;
            case json::parse_event_t::key:
              if (!keys.empty() && parsed.is_string() &&
                  !keys.back().insert(parsed.get<std::string>()).second && duplicate.empty())
                duplicate = parsed.get<std::string>();
              break;
            default:
              break;
          }
          return true;
        },
        /*allow_exceptions=*/true);
  } catch (const json::exception& e) {
    fail("{}: invalid safetensors header: invalid JSON: {}", file, e.what());
  }
  if (!duplicate.empty())
    fail("{}: invalid safetensors header: duplicate name (tensor '{}')", file, printable(duplicate));
  if (!header.is_object()) fail("{}: invalid safetensors header: the JSON is not an object", file);
  return header;
}

// "__metadata__": an object of strings.
void read_metadata(const json& v, std::map<std::string, std::string>& metadata, const std::string& file) {
  if (!v.is_object())
    fail("{}: invalid safetensors header: \"__metadata__\" is not an object of strings", file);
  for (auto m = v.begin(); m != v.end(); ++m) {
    if (!m.value().is_string())
      fail("{}: invalid safetensors header: \"__metadata__\" entry '{}' is not a string", file,
           printable(m.key()));
    metadata[m.key()] = m.value().get<std::string>();
  }
}

// An entry's "dtype" into info.dtype and info.scalar_type.
const DtypeEntry& read_dtype(const json& v, SafetensorsTensorInfo& info, const std::string& pname,
                             const std::string& file) {
  auto dt = v.find("dtype");
  if (dt == v.end() || !dt->is_string())
    fail("{}: invalid safetensors header: missing or non-string \"dtype\" (tensor '{}')", file, pname);
  info.dtype = dt->get<std::string>();
  const DtypeEntry* dtype = dtype_by_name(info.dtype);
  if (!dtype)
    fail("{}: unknown or unsupported dtype '{}' (tensor '{}'); supported: {}", file, printable(info.dtype),
         pname, supported_dtypes());
  info.scalar_type = dtype->type;
  return *dtype;
}

// An entry's "shape" into info.shape; returns the bytes the tensor needs at `element_size` bytes
// an element (failing when that overflows).
uint64_t read_shape(const json& sh, uint64_t element_size, SafetensorsTensorInfo& info, const std::string& pname,
                    const std::string& file) {
  uint64_t numel = 1;
  bool overflow = false;
  for (size_t i = 0; i < sh.size(); ++i) {
    uint64_t dim = 0;
    std::string why;
    if (!json_to_nonneg(sh[i], dim, why))
      fail("{}: invalid shape: dimension {} {} (tensor '{}')", file, i, why, pname);
    info.shape.push_back(static_cast<int64_t>(dim));
    if (__builtin_mul_overflow(numel, dim, &numel)) overflow = true;
  }
  // A zero dimension makes the product 0 whatever overflowed before it.
  if (std::find(info.shape.begin(), info.shape.end(), 0) != info.shape.end()) {
    numel = 0;
    overflow = false;
  }
  uint64_t nbytes = 0;
  if (overflow || __builtin_mul_overflow(numel, element_size, &nbytes))
    fail("{}: invalid shape: the size of {} overflows (tensor '{}')", file, sh.dump(), pname);
  return nbytes;
}

// An entry's "data_offsets" into info.begin / info.end, within the data buffer of `buffer_size`
// bytes and holding exactly `nbytes`.
void read_offsets(const json& v, const json& sh, uint64_t nbytes, uint64_t buffer_size, SafetensorsTensorInfo& info,
                  const std::string& pname, const std::string& file) {
  auto off = v.find("data_offsets");
  if (off == v.end() || !off->is_array() || off->size() != 2)
    fail("{}: invalid safetensors header: \"data_offsets\" is not an array of two integers (tensor '{}')", file,
         pname);
  std::string why;
  if (!json_to_nonneg((*off)[0], info.begin, why) || !json_to_nonneg((*off)[1], info.end, why))
    fail("{}: invalid data_offsets: an offset {} (tensor '{}')", file, why, pname);
  if (info.end < info.begin)
    fail("{}: invalid data_offsets: end {} is before begin {} (tensor '{}')", file, info.end, info.begin, pname);
  if (info.end > buffer_size)
    fail("{}: data_offsets [{}, {}] out of range: the data buffer has {} bytes (truncated file?) (tensor '{}')",
         file, info.begin, info.end, buffer_size, pname);
  if (info.end - info.begin != nbytes)
    fail("{}: shape {} of dtype {} needs {} bytes but data_offsets [{}, {}] hold {} (tensor '{}')", file,
         sh.dump(), info.dtype, nbytes, info.begin, info.end, info.end - info.begin, pname);
}

// One tensor's entry {"dtype", "shape", "data_offsets"}, checked.
SafetensorsTensorInfo read_tensor_info(const std::string& name, const json& v, uint64_t buffer_size,
                                       const std::string& file) {
  const std::string pname = printable(name);
  if (name.empty()) fail("{}: invalid safetensors header: empty tensor name", file);
  if (!v.is_object())
    fail("{}: invalid safetensors header: entry is not an object (tensor '{}')", file, pname);
  SafetensorsTensorInfo info;
  info.name = name;
  const DtypeEntry& dtype = read_dtype(v, info, pname, file);
  auto sh = v.find("shape");
  if (sh == v.end() || !sh->is_array())
    fail("{}: invalid safetensors header: missing or non-array \"shape\" (tensor '{}')", file, pname);
  const uint64_t nbytes = read_shape(*sh, dtype.size, info, pname, file);
  read_offsets(v, *sh, nbytes, buffer_size, info, pname, file);
  return info;
}

// Sorts the tensors by offset and checks that they tile the data buffer exactly: no overlap, no
// gap, no trailing bytes.
void sort_and_check_layout(std::vector<SafetensorsTensorInfo>& tensors, uint64_t buffer_size, const std::string& file) {
  std::sort(tensors.begin(), tensors.end(), [](const auto& a, const auto& b) {
    return a.begin != b.begin ? a.begin < b.begin : (a.end != b.end ? a.end < b.end : a.name < b.name);
  });
  uint64_t position = 0;
  const SafetensorsTensorInfo* previous = nullptr;
  for (const auto& t : tensors) {
    if (t.begin < position)
      fail("{}: tensor data overlaps: [{}, {}] overlaps tensor '{}' ending at {} (tensor '{}')", file, t.begin,
           t.end, printable(previous->name), position, printable(t.name));
    if (t.begin > position)
      fail("{}: gap of {} unused bytes in the data buffer before offset {} (tensor '{}')", file, t.begin - position,
           t.begin, printable(t.name));
    position = t.end;
    previous = &t;
  }
  if (position != buffer_size)
    fail("{}: {} trailing bytes after the last tensor's data (the data buffer has {} bytes, tensors cover {})",
         file, buffer_size - position, buffer_size, position);
}

// `head` holds at least the first 8 + N bytes of the file; `file_size` is the whole file's size.
SafetensorsHeader parse_header(std::string_view head, uint64_t file_size, const std::string& file) {
  const std::string_view text = header_json_text(head, file_size, file);
  const json header = parse_header_json(text, file);
  SafetensorsHeader out;
  out.data_start = 8 + text.size();
  const uint64_t buffer_size = file_size - out.data_start;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__")
      read_metadata(it.value(), out.metadata, file);
    else
      out.tensors.push_back(read_tensor_info(it.key(), it.value(), buffer_size, file));
  }
  sort_and_check_layout(out.tensors, buffer_size, file);
  return out;
}

at::Tensor make_tensor(const SafetensorsTensorInfo& info, const void* data) {
  const DtypeEntry* dtype = dtype_by_name(info.dtype);
  at::Tensor t = at::empty(info.shape, at::TensorOptions().dtype(dtype->storage));
  if (info.end > info.begin) std::memcpy(t.data_ptr(), data, info.end - info.begin);
  return t;
}

at::Tensor finish_tensor(at::Tensor t, const SafetensorsTensorInfo& info, const SafetensorsReadOptions& options) {
  if (info.scalar_type == at::kBool) t = t.ne(0);
  if (options.to_float32 && at::isFloatingType(t.scalar_type()) && t.scalar_type() != at::kFloat)
    t = t.to(at::kFloat);
  return t;
}

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

void pread_all(int fd, void* dst, uint64_t size, uint64_t offset, const std::string& file) {
  auto* p = static_cast<char*>(dst);
  while (size > 0) {
    size_t chunk = static_cast<size_t>(std::min<uint64_t>(size, uint64_t{1} << 30));
    ssize_t got = ::pread(fd, p, chunk, static_cast<off_t>(offset));
    if (got < 0) {
      if (errno == EINTR) continue;
      fail("{}: read error: {}", file, std::strerror(errno));
    }
    if (got == 0) fail("{}: the file became shorter while it was being read", file);
    p += got;
    size -= static_cast<uint64_t>(got);
    offset += static_cast<uint64_t>(got);
  }
}

struct OpenFile {
  Fd fd;
  uint64_t size = 0;
  SafetensorsHeader header;
};

void open_and_parse(const std::string& path, OpenFile& f) {
  f.fd.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (f.fd.fd < 0) fail("{}: cannot open: {}", path, std::strerror(errno));
  struct stat st {};
  if (::fstat(f.fd.fd, &st) != 0) fail("{}: cannot stat: {}", path, std::strerror(errno));
  if (!S_ISREG(st.st_mode)) fail("{}: not a regular file", path);
  f.size = static_cast<uint64_t>(st.st_size);
  std::string head(8, '\0');
  if (f.size >= 8) {
    pread_all(f.fd.fd, head.data(), 8, 0, path);
    const uint64_t n = read_le64(reinterpret_cast<const unsigned char*>(head.data()));
    if (n <= kSafetensorsMaxHeaderBytes && n <= f.size - 8) {
      head.resize(8 + n);
      pread_all(f.fd.fd, head.data() + 8, n, 8, path);
    }
  }
  f.header = parse_header(head, f.size, path);
}

std::string tmp_error(const std::string& tmp, const char* what) {
  return fmt::format("{}: cannot {}: {}", tmp, what, std::strerror(errno));
}

}  // namespace

const SafetensorsTensorInfo* SafetensorsHeader::find(const std::string& name) const {
  for (const auto& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

SafetensorsHeader parse_safetensors_header(std::string_view bytes, const std::string& file) {
  return parse_header(bytes, bytes.size(), file);
}

SafetensorsContents parse_safetensors(std::string_view bytes, const std::string& file,
                                      const SafetensorsReadOptions& options) {
  SafetensorsHeader header = parse_header(bytes, bytes.size(), file);
  SafetensorsContents out;
  out.metadata = header.metadata;
  for (const auto& info : header.tensors) {
    at::Tensor t = make_tensor(info, bytes.data() + header.data_start + info.begin);
    out.names.push_back(info.name);
    out.tensors[info.name] = finish_tensor(std::move(t), info, options);
  }
  return out;
}

SafetensorsHeader read_safetensors_header(const std::string& path) {
  OpenFile f;
  open_and_parse(path, f);
  return std::move(f.header);
}

SafetensorsContents read_safetensors(const std::string& path, const SafetensorsReadOptions& options) {
  OpenFile f;
  open_and_parse(path, f);
  SafetensorsContents out;
  out.metadata = f.header.metadata;
  for (const auto& info : f.header.tensors) {
    const DtypeEntry* dtype = dtype_by_name(info.dtype);
    at::Tensor t = at::empty(info.shape, at::TensorOptions().dtype(dtype->storage));
    if (info.end > info.begin)
      pread_all(f.fd.fd, t.data_ptr(), info.end - info.begin, f.header.data_start + info.begin, path);
    out.names.push_back(info.name);
    out.tensors[info.name] = finish_tensor(std::move(t), info, options);
  }
  return out;
}

std::string safetensors_dtype_name(at::ScalarType type) {
  const DtypeEntry* d = dtype_by_type(type);
  if (!d) fail("safetensors: unsupported tensor dtype {}; supported: {}", c10::toString(type), supported_dtypes());
  return d->name;
}

void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  struct Item {
    std::string name;
    at::Tensor tensor;
    const DtypeEntry* dtype;
  };
  std::vector<Item> items;
  std::set<std::string> seen;
  for (const auto& [name, tensor] : tensors) {
    if (name.empty()) fail("{}: cannot write a tensor with an empty name", path);
    if (name == "__metadata__") fail("{}: \"__metadata__\" cannot be a tensor name", path);
    if (!seen.insert(name).second) fail("{}: duplicate tensor name (tensor '{}')", path, name);
    if (!tensor.defined()) fail("{}: undefined tensor (tensor '{}')", path, name);
    const DtypeEntry* d = dtype_by_type(tensor.scalar_type());
    if (!d)
      fail("{}: unsupported dtype {} (tensor '{}'); supported: {}", path, c10::toString(tensor.scalar_type()), name,
           supported_dtypes());
    items.push_back({name, tensor.detach().to(at::kCPU).contiguous(), d});
  }
  std::sort(items.begin(), items.end(), [](const Item& a, const Item& b) {
    return a.dtype->order != b.dtype->order ? a.dtype->order > b.dtype->order : a.name < b.name;
  });

  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json m = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) m[k] = v;
    header["__metadata__"] = std::move(m);
  }
  uint64_t offset = 0;
  for (const auto& item : items) {
    const uint64_t nbytes = static_cast<uint64_t>(item.tensor.numel()) * item.dtype->size;
    header[item.name] = {{"dtype", item.dtype->name},
                         {"shape", item.tensor.sizes().vec()},
                         {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::json::exception& e) {
    fail("{}: cannot write the header (names and metadata must be valid UTF-8): {}", path, e.what());
  }
  text.append((8 - text.size() % 8) % 8, ' ');
  unsigned char len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>((uint64_t{text.size()} >> (8 * i)) & 0xff);

  const std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) fail("{}", tmp_error(tmp, "open for writing"));
  bool ok = std::fwrite(len, 1, 8, f) == 8 && std::fwrite(text.data(), 1, text.size(), f) == text.size();
  for (const auto& item : items) {
    if (!ok) break;
    const size_t nbytes = static_cast<size_t>(item.tensor.numel()) * item.dtype->size;
    if (nbytes > 0) ok = std::fwrite(item.tensor.data_ptr(), 1, nbytes, f) == nbytes;
  }
  if (ok) ok = std::fflush(f) == 0 && ::fsync(fileno(f)) == 0;
  const int saved = errno;
  const bool closed = std::fclose(f) == 0;
  if (!ok || !closed) {
    errno = ok ? errno : saved;
    std::string message = tmp_error(tmp, "write");
    std::remove(tmp.c_str());
    fail("{}", message);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::string message = fmt::format("{}: cannot rename {} to it: {}", path, tmp, std::strerror(errno));
    std::remove(tmp.c_str());
    fail("{}", message);
  }
}

void write_safetensors(const std::string& path, const std::map<std::string, at::Tensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  write_safetensors(path, std::vector<std::pair<std::string, at::Tensor>>(tensors.begin(), tensors.end()), metadata);
}

SafetensorsIndex read_safetensors_index(const std::string& path) {
  json j;
  read_json_file(path, j);
  SafetensorsIndex index;
  index.path = path;
  if (!j.is_object()) fail("{}: not a safetensors index: the JSON is not an object", path);
  auto wm = j.find("weight_map");
  if (wm == j.end() || !wm->is_object())
    fail("{}: not a safetensors index: missing or non-object \"weight_map\"", path);
  std::set<std::string> files;
  for (auto it = wm->begin(); it != wm->end(); ++it) {
    if (!it.value().is_string())
      fail("{}: \"weight_map\" entry is not a file name (tensor '{}')", path, printable(it.key()));
    std::string file = it.value().get<std::string>();
    std::filesystem::path p(file);
    bool bad = file.empty() || p.is_absolute();
    for (const auto& part : p)
      if (part == "..") bad = true;
    if (bad)
      fail("{}: \"weight_map\" names an invalid shard file '{}' (it must be a relative path inside the folder) "
           "(tensor '{}')",
           path, printable(file), printable(it.key()));
    index.weight_map[it.key()] = file;
    files.insert(file);
  }
  index.files.assign(files.begin(), files.end());
  auto md = j.find("metadata");
  if (md != j.end() && md->is_object())
    for (auto it = md->begin(); it != md->end(); ++it) {
      if (it.value().is_string())
        index.metadata[it.key()] = it.value().get<std::string>();
      else if (it.value().is_number())
        index.metadata[it.key()] = it.value().dump();
    }
  return index;
}

SafetensorsContents read_safetensors_sharded(const std::string& index_path, const SafetensorsReadOptions& options) {
  SafetensorsIndex index = read_safetensors_index(index_path);
  const std::filesystem::path folder = std::filesystem::path(index_path).parent_path();
  SafetensorsContents out;
  std::map<std::string, std::string> found_in;
  for (const auto& file : index.files) {
    const std::string shard_path = (folder / file).string();
    SafetensorsContents shard = read_safetensors(shard_path, options);
    for (const auto& name : shard.names) {
      auto it = index.weight_map.find(name);
      if (it == index.weight_map.end())
        fail("{}: tensor is in shard {} but not in the index's weight_map (tensor '{}')", index_path, file,
             printable(name));
      if (it->second != file)
        fail("{}: the weight_map puts the tensor in {} but it is (also) in {} (tensor '{}')", index_path,
             it->second, file, printable(name));
      found_in[name] = file;
      out.names.push_back(name);
      out.tensors[name] = std::move(shard.tensors[name]);
    }
    for (const auto& [k, v] : shard.metadata) out.metadata.emplace(k, v);
  }
  for (const auto& [name, file] : index.weight_map)
    if (!found_in.count(name))
      fail("{}: the weight_map puts the tensor in {} but that shard does not contain it (tensor '{}')", index_path,
           file, printable(name));
  return out;
}

}  // namespace engram::io
