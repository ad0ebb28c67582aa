//===- SafeTensors.cpp - Hugging Face safetensors files -------------------===//
//
// Plain C++17 and POSIX mmap, no exceptions, no MLIR/LLVM. See SafeTensors.h.
//
// Nothing in a file is trusted before it is checked: the header length
// against the file size (and the 100 MB limit) before the header is parsed,
// every offset against the data section, every size computation for
// overflow. Nothing is allocated in proportion to a number read from the
// file, only in proportion to what was actually parsed.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Runtime/SafeTensors.h"

#include "MessageText.h"

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <limits>
#include <sys/mman.h>
#include <sys/stat.h>
#include <system_error>
#include <unistd.h>
#include <utility>

namespace moe_rt {

namespace fs = std::filesystem;

//===----------------------------------------------------------------------===//
// Dtypes
//===----------------------------------------------------------------------===//

namespace {

struct DTypeEntry {
  SafeTensorsDType dtype;
  const char *name;
  size_t size;
};

constexpr DTypeEntry kDTypes[] = {
    {SafeTensorsDType::Bool, "BOOL", 1},
    {SafeTensorsDType::U8, "U8", 1},
    {SafeTensorsDType::I8, "I8", 1},
    {SafeTensorsDType::F8_E5M2, "F8_E5M2", 1},
    {SafeTensorsDType::F8_E4M3, "F8_E4M3", 1},
    {SafeTensorsDType::I16, "I16", 2},
    {SafeTensorsDType::U16, "U16", 2},
    {SafeTensorsDType::F16, "F16", 2},
    {SafeTensorsDType::BF16, "BF16", 2},
    {SafeTensorsDType::I32, "I32", 4},
    {SafeTensorsDType::U32, "U32", 4},
    {SafeTensorsDType::F32, "F32", 4},
    {SafeTensorsDType::F64, "F64", 8},
    {SafeTensorsDType::I64, "I64", 8},
    {SafeTensorsDType::U64, "U64", 8},
};

const DTypeEntry *entryOf(SafeTensorsDType dtype) {
  for (const DTypeEntry &e : kDTypes)
    if (e.dtype == dtype)
      return &e;
  return nullptr;
}

} // namespace

const char *safeTensorsDTypeName(SafeTensorsDType dtype) {
  const DTypeEntry *e = entryOf(dtype);
  return e ? e->name : "?";
}

size_t safeTensorsDTypeSize(SafeTensorsDType dtype) {
  const DTypeEntry *e = entryOf(dtype);
  return e ? e->size : 0;
}

bool parseSafeTensorsDType(const std::string &name, SafeTensorsDType &out) {
  for (const DTypeEntry &e : kDTypes) {
    if (name == e.name) {
      out = e.dtype;
      return true;
    }
  }
  return false;
}

bool toRuntimeDType(SafeTensorsDType dtype, DType &out) {
  switch (dtype) {
  case SafeTensorsDType::F32:
    out = DType::F32;
    return true;
  case SafeTensorsDType::F16:
    out = DType::F16;
    return true;
  case SafeTensorsDType::BF16:
    out = DType::BF16;
    return true;
  case SafeTensorsDType::I32:
    out = DType::I32;
    return true;
  case SafeTensorsDType::I64:
    out = DType::I64;
    return true;
  case SafeTensorsDType::U8:
    out = DType::U8;
    return true;
  case SafeTensorsDType::Bool:
    out = DType::Bool;
    return true;
  default:
    return false;
  }
}

bool TensorInfo::isAligned() const {
  size_t align = safeTensorsDTypeSize(dtype);
  return align != 0 && reinterpret_cast<uintptr_t>(data) % align == 0;
}

//===----------------------------------------------------------------------===//
// Message helpers
//===----------------------------------------------------------------------===//

namespace {

/// A name or string from the file, made safe for a one-line message.
std::string printable(const std::string &text, size_t maxLen = 120) {
  return printableText(text, maxLen, /*escapeQuotes=*/true);
}

/// 'name' for messages.
std::string nameText(const std::string &name) {
  return "'" + printable(name) + "'";
}

std::string shapeText(const std::vector<int64_t> &shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i)
      s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

std::string rangeText(uint64_t begin, uint64_t end) {
  return "[" + std::to_string(begin) + ", " + std::to_string(end) + "]";
}

/// "a string" / "an array" / ... for "X is <kind>, expected ..." messages.
std::string kindWithArticle(const JsonValue &v) {
  const char *name = jsonKindName(v.kind());
  bool vowel = name[0] == 'a' || name[0] == 'i' || name[0] == 'o';
  return std::string(vowel ? "an " : "a ") + name;
}

/// The first member whose key repeats an earlier one, or nullptr. For the
/// small objects of a tensor entry and __metadata__.
const JsonMember *repeatedKey(const JsonValue &object) {
  const std::vector<JsonMember> &m = object.members();
  if (m.size() <= 32) {
    for (size_t j = 1; j < m.size(); ++j)
      for (size_t i = 0; i < j; ++i)
        if (m[i].key == m[j].key)
          return &m[j];
    return nullptr;
  }
  std::vector<const JsonMember *> sorted;
  sorted.reserve(m.size());
  for (const JsonMember &x : m)
    sorted.push_back(&x);
  // By key, then by position in the document.
  std::sort(sorted.begin(), sorted.end(),
            [](const JsonMember *a, const JsonMember *b) {
              int c = a->key.compare(b->key);
              return c != 0 ? c < 0 : a < b;
            });
  const JsonMember *found = nullptr;
  for (size_t i = 1; i < sorted.size(); ++i)
    if (sorted[i]->key == sorted[i - 1]->key && (!found || sorted[i] < found))
      found = sorted[i];
  return found;
}

/// A non-negative integer of the header (a JSON Int >= 0).
bool nonNegative(const JsonValue &v, uint64_t &out) {
  if (!v.isInt() || v.asInt() < 0)
    return false;
  out = static_cast<uint64_t>(v.asInt());
  return true;
}

} // namespace

//===----------------------------------------------------------------------===//
// SafeTensorsFile
//===----------------------------------------------------------------------===//

SafeTensorsFile::~SafeTensorsFile() {
  if (mapped_ && base_)
    ::munmap(const_cast<unsigned char *>(base_), size_);
}

Status SafeTensorsFile::open(const std::string &path,
                             std::unique_ptr<SafeTensorsFile> &out) {
  // O_NONBLOCK: opening a FIFO must not hang; it is rejected below.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0)
    return Status::error(path + ": cannot open: " + std::strerror(errno));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    return Status::error(path + ": cannot stat: " + std::strerror(err));
  }
  if (S_ISDIR(st.st_mode)) {
    ::close(fd);
    return Status::error(path + ": is a directory, not a safetensors file");
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return Status::error(path + ": not a regular file");
  }
  uint64_t fileSize = static_cast<uint64_t>(st.st_size);
  if (fileSize < 8) {
    ::close(fd);
    return Status::error(path + ": file of " + std::to_string(fileSize) +
                         " bytes is shorter than the 8-byte header length");
  }
  if (fileSize > std::numeric_limits<size_t>::max()) {
    ::close(fd);
    return Status::error(path + ": file too large to map");
  }
  void *m = ::mmap(nullptr, static_cast<size_t>(fileSize), PROT_READ,
                   MAP_PRIVATE, fd, 0);
  int mapErr = errno;
  ::close(fd);
  if (m == MAP_FAILED)
    return Status::error(path + ": cannot map: " + std::strerror(mapErr));

  std::unique_ptr<SafeTensorsFile> file(new SafeTensorsFile());
  file->path_ = path;
  file->base_ = static_cast<const unsigned char *>(m);
  file->size_ = static_cast<size_t>(fileSize);
  file->mapped_ = true; // unmapped by the destructor on any failure below
  Status s = file->load();
  if (!s)
    return s;
  out = std::move(file);
  return Status::success();
}

Status SafeTensorsFile::parse(const void *bytes, size_t size,
                              const std::string &origin,
                              std::unique_ptr<SafeTensorsFile> &out) {
  std::unique_ptr<SafeTensorsFile> file(new SafeTensorsFile());
  file->path_ = origin;
  file->base_ = static_cast<const unsigned char *>(bytes);
  file->size_ = bytes ? size : 0;
  Status s = file->load();
  if (!s)
    return s;
  out = std::move(file);
  return Status::success();
}

std::vector<std::string> SafeTensorsFile::names() const {
  std::vector<std::string> out;
  out.reserve(tensors_.size());
  for (const TensorInfo &t : tensors_)
    out.push_back(t.name);
  return out;
}

const TensorInfo *SafeTensorsFile::find(const std::string &name) const {
  auto it = byName_.find(name);
  return it == byName_.end() ? nullptr : &tensors_[it->second];
}

Status SafeTensorsFile::load() {
  const std::string &p = path_;
  if (size_ < 8)
    return Status::error(p + ": file of " + std::to_string(size_) +
                         " bytes is shorter than the 8-byte header length");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i)
    n = (n << 8) | base_[i];
  if (n > kMaxHeaderSize)
    return Status::error(p + ": header length " + std::to_string(n) +
                         " exceeds the limit of " +
                         std::to_string(kMaxHeaderSize) + " bytes");
  uint64_t afterLength = static_cast<uint64_t>(size_) - 8;
  if (n > afterLength)
    return Status::error(p + ": header length " + std::to_string(n) +
                         " runs past the end of the file (" +
                         std::to_string(afterLength) +
                         " bytes follow the 8-byte length)");
  headerSize_ = n;
  uint64_t dataSize = afterLength - n;
  const unsigned char *data = base_ + 8 + n;

  // The header. Duplicate keys are let through the JSON parser so that they
  // are reported below in the format's terms.
  JsonValue root;
  JsonParseOptions options;
  options.maxSize = kMaxHeaderSize;
  options.allowDuplicateKeys = true;
  size_t at = 0;
  Status js = parseJson(reinterpret_cast<const char *>(base_ + 8),
                        static_cast<size_t>(n), root, options, &at);
  if (!js) {
    // js.message is "at byte N: <problem>".
    size_t colon = js.message.find(": ");
    std::string problem =
        colon == std::string::npos ? js.message : js.message.substr(colon + 2);
    return Status::error(p + ": header is not valid JSON: at byte " +
                         std::to_string(at) + " of the header (file offset " +
                         std::to_string(at + 8) + "): " + problem);
  }
  if (!root.isObject())
    return Status::error(p + ": header is " + kindWithArticle(root) +
                         ", expected a JSON object");

  std::vector<TensorInfo> tensors;
  std::unordered_map<std::string, size_t> byName;
  std::map<std::string, std::string> metadata;
  bool sawMetadata = false;
  tensors.reserve(root.size());
  byName.reserve(root.size());

  for (const JsonMember &member : root.members()) {
    const JsonValue &v = member.value;
    if (member.key == "__metadata__") {
      if (sawMetadata)
        return Status::error(p + ": header has two \"__metadata__\" entries");
      sawMetadata = true;
      if (v.isNull())
        continue; // the reference implementation reads null as absent
      if (!v.isObject())
        return Status::error(p + ": \"__metadata__\" is " + kindWithArticle(v) +
                             ", expected an object");
      if (const JsonMember *dup = repeatedKey(v))
        return Status::error(p + ": \"__metadata__\" has the key " +
                             nameText(dup->key) + " twice");
      for (const JsonMember &m : v.members()) {
        if (!m.value.isString())
          return Status::error(
              p + ": \"__metadata__\" value of " + nameText(m.key) + " is " +
              kindWithArticle(m.value) + ", expected a string");
        metadata[m.key] = m.value.asString();
      }
      continue;
    }

    const std::string prefix = p + ": tensor " + nameText(member.key) + ": ";
    if (!byName.emplace(member.key, tensors.size()).second)
      return Status::error(p + ": duplicate tensor name " +
                           nameText(member.key));
    if (!v.isObject())
      return Status::error(prefix + "entry is " + kindWithArticle(v) +
                           ", expected an object");
    if (const JsonMember *dup = repeatedKey(v))
      return Status::error(prefix + "entry has the field " +
                           jsonQuote(dup->key) + " twice");
    TensorInfo info;
    info.name = member.key;

    const JsonValue *dtype = v.get("dtype");
    const JsonValue *shape = v.get("shape");
    const JsonValue *offsets = v.get("data_offsets");
    if (!dtype)
      return Status::error(prefix + "missing \"dtype\"");
    if (!shape)
      return Status::error(prefix + "missing \"shape\"");
    if (!offsets)
      return Status::error(prefix + "missing \"data_offsets\"");

    if (!dtype->isString())
      return Status::error(prefix + "\"dtype\" is " + kindWithArticle(*dtype) +
                           ", expected a string");
    if (!parseSafeTensorsDType(dtype->asString(), info.dtype))
      return Status::error(prefix + "unknown dtype " +
                           nameText(dtype->asString()));

    if (!shape->isArray())
      return Status::error(prefix + "\"shape\" is " + kindWithArticle(*shape) +
                           ", expected an array");
    info.shape.reserve(shape->size());
    for (size_t i = 0; i < shape->size(); ++i) {
      const JsonValue &d = shape->items()[i];
      if (d.isInt() && d.asInt() < 0)
        return Status::error(prefix + "negative dimension " +
                             std::to_string(d.asInt()) + " in \"shape\"");
      if (!d.isInt())
        return Status::error(
            prefix + "\"shape\"[" + std::to_string(i) + "] is " +
            kindWithArticle(d) +
            (d.isDouble() ? " (not integral, or beyond int64)" : "") +
            ", expected a non-negative integer");
      info.shape.push_back(d.asInt());
    }

    if (!offsets->isArray())
      return Status::error(prefix + "\"data_offsets\" is " +
                           kindWithArticle(*offsets) + ", expected an array");
    if (offsets->size() != 2)
      return Status::error(prefix + "\"data_offsets\" has " +
                           std::to_string(offsets->size()) +
                           " elements, expected 2 (begin, end)");
    for (size_t i = 0; i < 2; ++i) {
      uint64_t &slot = i == 0 ? info.begin : info.end;
      const JsonValue &o = offsets->items()[i];
      if (!nonNegative(o, slot))
        return Status::error(
            prefix + "\"data_offsets\"[" + std::to_string(i) + "] is " +
            (o.isInt() ? std::string("negative")
                       : kindWithArticle(o) +
                             (o.isDouble() ? " (not integral, or beyond int64)"
                                           : "")) +
            ", expected a non-negative integer");
    }
    if (info.begin > info.end)
      return Status::error(prefix + "\"data_offsets\" " +
                           rangeText(info.begin, info.end) +
                           ": begin is past end");
    if (info.end > dataSize)
      return Status::error(prefix + "\"data_offsets\" " +
                           rangeText(info.begin, info.end) +
                           " run past the end of the data section (" +
                           std::to_string(dataSize) + " bytes)");

    // Element count and byte size, without overflow.
    uint64_t count = 1;
    bool overflow = false;
    for (int64_t d : info.shape) {
      uint64_t ud = static_cast<uint64_t>(d);
      if (ud != 0 &&
          count >
              static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) / ud) {
        overflow = true;
        break;
      }
      count *= ud;
    }
    // As in the reference implementation, the product is formed left to
    // right and checked at each step (so a zero dimension ends the check).
    if (overflow)
      return Status::error(prefix + "element count of shape " +
                           shapeText(info.shape) + " overflows int64");
    size_t elementSize = safeTensorsDTypeSize(info.dtype);
    if (count > std::numeric_limits<uint64_t>::max() / elementSize)
      return Status::error(prefix + "byte size of " +
                           safeTensorsDTypeName(info.dtype) + " shape " +
                           shapeText(info.shape) + " overflows");
    uint64_t expected = count * elementSize;
    if (expected != info.byteSize())
      return Status::error(
          prefix + "byte size mismatch: " + safeTensorsDTypeName(info.dtype) +
          " shape " + shapeText(info.shape) + " needs " +
          std::to_string(expected) + " bytes (expected) but \"data_offsets\" " +
          rangeText(info.begin, info.end) + " span " +
          std::to_string(info.byteSize()) + " bytes (actual)");
    info.numElements = static_cast<int64_t>(count);
    info.data = data + info.begin;
    tensors.push_back(std::move(info));
  }

  // Sorted by offset, the tensors must tile the data section exactly.
  std::vector<size_t> order(tensors.size());
  for (size_t i = 0; i < order.size(); ++i)
    order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (tensors[a].begin != tensors[b].begin)
      return tensors[a].begin < tensors[b].begin;
    if (tensors[a].end != tensors[b].end)
      return tensors[a].end < tensors[b].end;
    return a < b; // header order
  });
  uint64_t next = 0;
  const TensorInfo *prev = nullptr;
  for (size_t i : order) {
    const TensorInfo &t = tensors[i];
    if (t.begin < next)
      return Status::error(p + ": tensors " + nameText(prev->name) + " " +
                           rangeText(prev->begin, prev->end) + " and " +
                           nameText(t.name) + " " + rangeText(t.begin, t.end) +
                           " overlap");
    if (t.begin > next) {
      if (!prev)
        return Status::error(p + ": " + std::to_string(t.begin) +
                             " unused bytes before the first tensor " +
                             nameText(t.name) + " " +
                             rangeText(t.begin, t.end) +
                             " (the data must be contiguous from offset 0)");
      return Status::error(p + ": hole of " + std::to_string(t.begin - next) +
                           " bytes between tensors " + nameText(prev->name) +
                           " " + rangeText(prev->begin, prev->end) + " and " +
                           nameText(t.name) + " " + rangeText(t.begin, t.end) +
                           " (the data must be contiguous)");
    }
    next = t.end;
    prev = &t;
  }
  if (next != dataSize) {
    if (!prev)
      return Status::error(p + ": data section of " + std::to_string(dataSize) +
                           " bytes but no tensors");
    return Status::error(
        p + ": " + std::to_string(dataSize - next) +
        " unused bytes after the last tensor " + nameText(prev->name) + " " +
        rangeText(prev->begin, prev->end) + " (the data section is " +
        std::to_string(dataSize) + " bytes)");
  }

  tensors_.clear();
  tensors_.reserve(tensors.size());
  byName_.clear();
  byName_.reserve(tensors.size());
  for (size_t i : order) {
    byName_.emplace(tensors[i].name, tensors_.size());
    tensors_.push_back(std::move(tensors[i]));
  }
  metadata_ = std::move(metadata);
  return Status::success();
}

//===----------------------------------------------------------------------===//
// SafeTensorsIndex
//===----------------------------------------------------------------------===//

namespace {

bool endsWith(const std::string &s, const std::string &suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

/// A weight_map value must name a file under the index's directory.
bool isSafeRelativePath(const std::string &file) {
  if (file.empty() || file.find('\0') != std::string::npos)
    return false;
  fs::path p(file);
  if (p.is_absolute() || p.has_root_name() || p.has_root_directory())
    return false;
  for (const fs::path &part : p)
    if (part == "..")
      return false;
  return true;
}

} // namespace

Status
SafeTensorsIndex::openSingleFile(const std::string &path,
                                 std::unique_ptr<SafeTensorsIndex> &out) {
  std::unique_ptr<SafeTensorsFile> file;
  Status s = SafeTensorsFile::open(path, file);
  if (!s)
    return s;
  std::unique_ptr<SafeTensorsIndex> index(new SafeTensorsIndex());
  index->path_ = path;
  index->sharded_ = false;
  index->byName_.reserve(file->size());
  for (const TensorInfo &t : file->tensors()) {
    index->names_.push_back(t.name);
    index->byName_.emplace(t.name, Entry{0, &t});
  }
  index->shards_.push_back(std::move(file));
  out = std::move(index);
  return Status::success();
}

Status SafeTensorsIndex::open(const std::string &indexPath,
                              std::unique_ptr<SafeTensorsIndex> &out) {
  const std::string &p = indexPath;
  JsonValue root;
  JsonParseOptions options;
  options.allowDuplicateKeys = true; // reported below, in the index's terms
  Status s = readJsonFile(indexPath, root, options);
  if (!s)
    return s;
  if (!root.isObject())
    return Status::error(p + ": index is " + kindWithArticle(root) +
                         ", expected a JSON object");
  if (const JsonMember *dup = repeatedKey(root))
    return Status::error(p + ": index has the member " + jsonQuote(dup->key) +
                         " twice");
  const JsonValue *weightMap = root.get("weight_map");
  if (!weightMap)
    return Status::error(p + ": missing \"weight_map\"");
  if (!weightMap->isObject())
    return Status::error(p + ": \"weight_map\" is " +
                         kindWithArticle(*weightMap) + ", expected an object");
  const JsonValue *metadata = root.get("metadata");
  if (metadata && !metadata->isObject() && !metadata->isNull())
    return Status::error(p + ": \"metadata\" is " + kindWithArticle(*metadata) +
                         ", expected an object");

  std::unique_ptr<SafeTensorsIndex> index(new SafeTensorsIndex());
  index->path_ = indexPath;
  index->sharded_ = true;
  if (metadata)
    index->metadata_ = *metadata;
  fs::path dir = fs::path(indexPath).parent_path();

  std::unordered_map<std::string, size_t> shardByFile; // normalized name
  std::vector<std::string> shardFile;                  // as written
  index->byName_.reserve(weightMap->size());
  index->names_.reserve(weightMap->size());

  for (const JsonMember &m : weightMap->members()) {
    const std::string tensor = "tensor " + nameText(m.key);
    if (!m.value.isString())
      return Status::error(p + ": \"weight_map\" value of " + tensor + " is " +
                           kindWithArticle(m.value) +
                           ", expected a shard file name");
    const std::string &file = m.value.asString();
    if (!isSafeRelativePath(file))
      return Status::error(p + ": " + tensor + " is mapped to " +
                           nameText(file) +
                           ", not a relative path inside the index's "
                           "directory");
    std::string key = fs::path(file).lexically_normal().string();
    size_t shard;
    auto it = shardByFile.find(key);
    if (it != shardByFile.end()) {
      shard = it->second;
    } else {
      std::string shardPath = (dir / fs::path(file)).string();
      std::error_code ec;
      if (!fs::exists(fs::path(shardPath), ec))
        return Status::error(p + ": " + tensor + " is mapped to the shard " +
                             nameText(file) + ", which does not exist (" +
                             shardPath + ")");
      std::unique_ptr<SafeTensorsFile> f;
      Status fs2 = SafeTensorsFile::open(shardPath, f);
      if (!fs2)
        return Status::error(p + ": shard " + nameText(file) + " of " + tensor +
                             " is invalid: " + fs2.message);
      shard = index->shards_.size();
      index->shards_.push_back(std::move(f));
      shardFile.push_back(file);
      shardByFile.emplace(key, shard);
    }
    auto prior = index->byName_.find(m.key);
    if (prior != index->byName_.end()) {
      if (prior->second.shard == shard)
        return Status::error(p + ": " + tensor +
                             " appears twice in the \"weight_map\"");
      return Status::error(p + ": " + tensor + " is mapped to two shards, " +
                           nameText(shardFile[prior->second.shard]) + " and " +
                           nameText(file));
    }
    const TensorInfo *info = index->shards_[shard]->find(m.key);
    if (!info)
      return Status::error(p + ": " + tensor + " is not in its shard " +
                           nameText(file) + " (" +
                           index->shards_[shard]->path() + ")");
    index->byName_.emplace(m.key, Entry{shard, info});
    index->names_.push_back(m.key);
  }

  // Every tensor of every shard must be the one the weight_map names.
  for (size_t shard = 0; shard < index->shards_.size(); ++shard) {
    for (const TensorInfo &t : index->shards_[shard]->tensors()) {
      auto it = index->byName_.find(t.name);
      if (it == index->byName_.end())
        return Status::error(p + ": tensor " + nameText(t.name) + " of shard " +
                             nameText(shardFile[shard]) +
                             " is not in the \"weight_map\"");
      if (it->second.shard != shard)
        return Status::error(
            p + ": tensor " + nameText(t.name) + " is in two shards, " +
            nameText(shardFile[it->second.shard]) +
            " (per the \"weight_map\") and " + nameText(shardFile[shard]));
    }
  }
  out = std::move(index);
  return Status::success();
}

const TensorInfo *SafeTensorsIndex::find(const std::string &name,
                                         const SafeTensorsFile **file) const {
  auto it = byName_.find(name);
  if (it == byName_.end())
    return nullptr;
  if (file)
    *file = shards_[it->second.shard].get();
  return it->second.info;
}

Status SafeTensorsIndex::lookup(const std::string &name,
                                const TensorInfo *&info,
                                const SafeTensorsFile **file) const {
  const TensorInfo *t = find(name, file);
  if (!t)
    return Status::error(path_ + ": no tensor named " + nameText(name));
  info = t;
  return Status::success();
}

Status openSafeTensorsCheckpoint(const std::string &path,
                                 std::unique_ptr<SafeTensorsIndex> &out) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0)
    return Status::error(path + ": cannot open: " + std::strerror(errno));
  if (S_ISDIR(st.st_mode)) {
    fs::path dir(path);
    std::error_code ec;
    fs::path single = dir / "model.safetensors";
    if (fs::exists(single, ec))
      return SafeTensorsIndex::openSingleFile(single.string(), out);
    fs::path index = dir / "model.safetensors.index.json";
    if (fs::exists(index, ec))
      return SafeTensorsIndex::open(index.string(), out);
    return Status::error(path + ": directory holds neither model.safetensors "
                                "nor model.safetensors.index.json");
  }
  if (endsWith(path, ".json"))
    return SafeTensorsIndex::open(path, out);
  return SafeTensorsIndex::openSingleFile(path, out);
}

} // namespace moe_rt
