//===- OnnxFile.cpp - initializers of ONNX model files --------------------===//
//
// Plain C++17 and POSIX mmap, no exceptions, no MLIR/LLVM, no protobuf. See
// OnnxFile.h.
//
// Nothing in a file is trusted before it is checked: every tag, varint,
// length and fixed-width value against the end of its enclosing message,
// every size computation for overflow, every external range against the
// size of its file. Nothing is allocated in proportion to a number read
// from the file, only in proportion to the values actually present in it.
//
// An initializer is read in two passes over its TensorProto: the first
// checks the wire format and notes each field (the name usually comes after
// dims and data_type, so it is known only then); the second, whose messages
// can name the initializer, decodes dims and the data.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Runtime/OnnxFile.h"

#include "MessageText.h"

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <initializer_list>
#include <limits>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <utility>

namespace moe_rt {

namespace fs = std::filesystem;

//===----------------------------------------------------------------------===//
// Data types
//===----------------------------------------------------------------------===//

namespace {

struct OnnxDTypeEntry {
  const char *name;
  unsigned bits;  // per element; 0: no fixed size (UNDEFINED, STRING)
  unsigned align; // of one component: complex numbers align as their parts
};

// Indexed by code.
constexpr OnnxDTypeEntry kOnnxDTypes[] = {
    {"UNDEFINED", 0, 1},      {"FLOAT", 32, 4},     {"UINT8", 8, 1},
    {"INT8", 8, 1},           {"UINT16", 16, 2},    {"INT16", 16, 2},
    {"INT32", 32, 4},         {"INT64", 64, 8},     {"STRING", 0, 1},
    {"BOOL", 8, 1},           {"FLOAT16", 16, 2},   {"DOUBLE", 64, 8},
    {"UINT32", 32, 4},        {"UINT64", 64, 8},    {"COMPLEX64", 64, 4},
    {"COMPLEX128", 128, 8},   {"BFLOAT16", 16, 2},  {"FLOAT8E4M3FN", 8, 1},
    {"FLOAT8E4M3FNUZ", 8, 1}, {"FLOAT8E5M2", 8, 1}, {"FLOAT8E5M2FNUZ", 8, 1},
    {"UINT4", 4, 1},          {"INT4", 4, 1},
};
constexpr int32_t kNumOnnxDTypes =
    static_cast<int32_t>(sizeof(kOnnxDTypes) / sizeof(kOnnxDTypes[0]));

const OnnxDTypeEntry *entryOf(int32_t code) {
  return code >= 0 && code < kNumOnnxDTypes ? &kOnnxDTypes[code] : nullptr;
}

} // namespace

std::string onnxDTypeName(int32_t code) {
  const OnnxDTypeEntry *e = entryOf(code);
  return e ? std::string(e->name) : "code " + std::to_string(code);
}

bool isFixedSizeOnnxDType(int32_t code) {
  const OnnxDTypeEntry *e = entryOf(code);
  return e && e->bits != 0;
}

bool onnxDataBytes(int32_t code, uint64_t count, uint64_t &bytes) {
  const OnnxDTypeEntry *e = entryOf(code);
  if (!e || e->bits == 0)
    return false;
  if (e->bits == 4) {
    bytes = count / 2 + count % 2;
    return true;
  }
  uint64_t size = e->bits / 8;
  if (count > std::numeric_limits<uint64_t>::max() / size)
    return false;
  bytes = count * size;
  return true;
}

bool onnxToRuntimeDType(int32_t code, DType &out) {
  switch (static_cast<OnnxDType>(code)) {
  case OnnxDType::Float:
    out = DType::F32;
    return true;
  case OnnxDType::Float16:
    out = DType::F16;
    return true;
  case OnnxDType::BFloat16:
    out = DType::BF16;
    return true;
  case OnnxDType::Int32:
    out = DType::I32;
    return true;
  case OnnxDType::Int64:
    out = DType::I64;
    return true;
  case OnnxDType::UInt8:
    out = DType::U8;
    return true;
  case OnnxDType::Bool:
    out = DType::Bool;
    return true;
  default:
    return false;
  }
}

const char *onnxDataSourceName(OnnxDataSource source) {
  switch (source) {
  case OnnxDataSource::None:
    return "none";
  case OnnxDataSource::RawData:
    return "raw_data";
  case OnnxDataSource::FloatData:
    return "float_data";
  case OnnxDataSource::Int32Data:
    return "int32_data";
  case OnnxDataSource::Int64Data:
    return "int64_data";
  case OnnxDataSource::DoubleData:
    return "double_data";
  case OnnxDataSource::UInt64Data:
    return "uint64_data";
  case OnnxDataSource::External:
    return "external data";
  }
  return "?";
}

bool OnnxTensorInfo::isAligned() const {
  const OnnxDTypeEntry *e = entryOf(dataType);
  size_t align = e ? e->align : 1;
  return !data || reinterpret_cast<uintptr_t>(data) % align == 0;
}

//===----------------------------------------------------------------------===//
// Protobuf wire format
//===----------------------------------------------------------------------===//

namespace {

/// Bytes [begin, end) of the model file (offsets from its first byte).
struct Span {
  size_t begin = 0;
  size_t end = 0;
  size_t size() const { return end - begin; }
};

enum WireType : unsigned {
  kVarint = 0,
  kFixed64 = 1,
  kLengthDelimited = 2,
  kStartGroup = 3,
  kEndGroup = 4,
  kFixed32 = 5,
};

const char *wireTypeName(unsigned wireType) {
  switch (wireType) {
  case kVarint:
    return "varint";
  case kFixed64:
    return "fixed64";
  case kLengthDelimited:
    return "length-delimited";
  case kStartGroup:
    return "start-group";
  case kEndGroup:
    return "end-group";
  case kFixed32:
    return "fixed32";
  default:
    return "invalid";
  }
}

std::string at(size_t offset) { return "at byte " + std::to_string(offset); }

/// One field of a message.
struct WireField {
  uint32_t number = 0;
  unsigned wireType = 0;
  size_t at = 0;      // file offset of the tag
  uint64_t value = 0; // a varint, fixed32 or fixed64 value
  Span bytes;         // a length-delimited payload
};

/// Reads the fields of one message (or the values of one packed run),
/// never past its end. Problems are phrased "... at byte N ..." (file
/// offsets) and name the end that was hit ("the file", "the graph", ...).
class WireReader {
public:
  WireReader(const unsigned char *base, Span span, const char *what)
      : base_(base), pos_(span.begin), end_(span.end), what_(what) {}

  bool done() const { return pos_ >= end_; }
  size_t pos() const { return pos_; }

  /// Whether the last failure was running into the end (rather than
  /// malformed bytes).
  bool hitEnd() const { return hitEnd_; }
  /// After next() failed because a length-delimited payload ran past the
  /// end: its field number, tag offset, length, where the payload began and
  /// how many bytes were left.
  uint32_t overrunField() const { return overrunField_; }
  size_t overrunAt() const { return overrunAt_; }
  uint64_t overrunLength() const { return overrunLength_; }
  size_t overrunBegin() const { return overrunBegin_; }
  size_t overrunLeft() const { return end_ - overrunBegin_; }

  bool varint(uint64_t &out, std::string &problem) {
    size_t start = pos_;
    uint64_t v = 0;
    for (unsigned i = 0;; ++i) {
      if (pos_ >= end_) {
        hitEnd_ = true;
        problem = "varint " + at(start) + " runs past the end of " + what_;
        return false;
      }
      unsigned char b = base_[pos_++];
      if (i == 9 && (b & 0x80)) {
        problem = "varint " + at(start) + " is longer than 10 bytes";
        return false;
      }
      if (i == 9 && b > 1) {
        problem = "varint " + at(start) + " overflows 64 bits";
        return false;
      }
      v |= static_cast<uint64_t>(b & 0x7f) << (7 * i);
      if (!(b & 0x80)) {
        out = v;
        return true;
      }
    }
  }

  bool fixed(unsigned width, uint64_t &out, std::string &problem) {
    if (end_ - pos_ < width) {
      hitEnd_ = true;
      problem = std::string(width == 4 ? "fixed32" : "fixed64") + " value " +
                at(pos_) + " runs past the end of " + what_;
      return false;
    }
    uint64_t v = 0;
    for (unsigned i = 0; i < width; ++i)
      v |= static_cast<uint64_t>(base_[pos_ + i]) << (8 * i);
    pos_ += width;
    out = v;
    return true;
  }

  bool next(WireField &f, std::string &problem) {
    f = WireField();
    f.at = pos_;
    uint64_t tag;
    if (!varint(tag, problem))
      return false;
    if (tag > 0xffffffffu) {
      problem = "tag " + at(f.at) + " does not fit in 32 bits";
      return false;
    }
    f.number = static_cast<uint32_t>(tag >> 3);
    f.wireType = static_cast<unsigned>(tag & 7);
    if (f.number == 0) {
      problem = "field number 0 " + at(f.at);
      return false;
    }
    std::string field = "field " + std::to_string(f.number) + " " + at(f.at);
    switch (f.wireType) {
    case kVarint:
      return varint(f.value, problem);
    case kFixed64:
      return fixed(8, f.value, problem);
    case kFixed32:
      return fixed(4, f.value, problem);
    case kLengthDelimited: {
      uint64_t length;
      if (!varint(length, problem))
        return false;
      uint64_t left = end_ - pos_;
      if (length > left) {
        hitEnd_ = true;
        overrunField_ = f.number;
        overrunAt_ = f.at;
        overrunLength_ = length;
        overrunBegin_ = pos_;
        problem = field + " is " + std::to_string(length) +
                  " bytes long, past the end of " + what_ + " (" +
                  std::to_string(left) + " bytes left)";
        return false;
      }
      f.bytes = Span{pos_, pos_ + static_cast<size_t>(length)};
      pos_ += static_cast<size_t>(length);
      return true;
    }
    case kStartGroup:
    case kEndGroup:
      problem = field + " has the " + wireTypeName(f.wireType) + " wire type " +
                std::to_string(f.wireType) +
                " (protobuf groups are not supported)";
      return false;
    default:
      problem =
          field + " has the invalid wire type " + std::to_string(f.wireType);
      return false;
    }
  }

private:
  const unsigned char *base_;
  size_t pos_;
  size_t end_;
  const char *what_;
  bool hitEnd_ = false;
  uint32_t overrunField_ = 0;
  size_t overrunAt_ = 0;
  uint64_t overrunLength_ = 0;
  size_t overrunBegin_ = 0;
};

enum class Scalar { Varint, Fixed32, Fixed64 };

unsigned scalarWireType(Scalar kind) {
  return kind == Scalar::Varint    ? kVarint
         : kind == Scalar::Fixed32 ? kFixed32
                                   : kFixed64;
}

/// Calls `fn(value, offset)` for each value, in order, of the repeated
/// scalar field `number` of the message `span`, packed runs and single
/// values alike; `fn` returns false (with `problem` set) to stop.
template <typename Fn>
bool forEachValue(const unsigned char *base, Span span, uint32_t number,
                  Scalar kind, std::string &problem, Fn &&fn) {
  WireReader message(base, span, "the initializer");
  while (!message.done()) {
    WireField f;
    if (!message.next(f, problem))
      return false;
    if (f.number != number)
      continue;
    if (f.wireType != kLengthDelimited) {
      if (!fn(f.value, f.at))
        return false;
      continue;
    }
    WireReader run(base, f.bytes, "its packed run");
    while (!run.done()) {
      size_t offset = run.pos();
      uint64_t v;
      bool ok = kind == Scalar::Varint    ? run.varint(v, problem)
                : kind == Scalar::Fixed32 ? run.fixed(4, v, problem)
                                          : run.fixed(8, v, problem);
      if (!ok || !fn(v, offset))
        return false;
    }
  }
  return true;
}

//===----------------------------------------------------------------------===//
// TensorProto
//===----------------------------------------------------------------------===//

enum TensorField : uint32_t {
  kDims = 1,
  kDataType = 2,
  kSegment = 3,
  kFloatData = 4,
  kInt32Data = 5,
  kStringData = 6,
  kInt64Data = 7,
  kName = 8,
  kRawData = 9,
  kDoubleData = 10,
  kUInt64Data = 11,
  kExternalData = 13,
  kDataLocation = 14,
};

/// A repeated scalar field of a TensorProto as the first pass saw it.
struct Repeated {
  Repeated(const char *name, uint32_t number, Scalar kind)
      : name(name), number(number), kind(kind) {}

  const char *name;
  uint32_t number;
  Scalar kind;
  uint64_t values = 0; // packed and single values together
  unsigned packedRuns = 0;
  bool single = false; // some value was not packed
  Span firstRun;       // payload of the first packed run
  size_t firstAt = 0;  // the field's first tag

  bool present() const { return values != 0; }
  /// All values in one packed run: the bytes may be viewed in place.
  bool oneRun() const { return packedRuns == 1 && !single; }
};

/// The fields of one TensorProto, from the first pass.
struct TensorScan {
  bool hasName = false;
  std::string name;
  bool hasDataType = false;
  uint64_t dataType = 0; // as read: an int32 enum, sign-extended
  bool hasRaw = false;
  Span raw;
  size_t rawAt = 0;
  bool hasDataLocation = false;
  uint64_t dataLocation = 0;
  bool hasSegment = false;
  std::vector<Span> externalData;
  size_t externalAt = 0;
  Repeated dims{"dims", kDims, Scalar::Varint};
  Repeated floatData{"float_data", kFloatData, Scalar::Fixed32};
  Repeated int32Data{"int32_data", kInt32Data, Scalar::Varint};
  Repeated int64Data{"int64_data", kInt64Data, Scalar::Varint};
  Repeated doubleData{"double_data", kDoubleData, Scalar::Fixed64};
  Repeated uint64Data{"uint64_data", kUInt64Data, Scalar::Varint};
  bool hasStringData = false;

  Repeated *typed(uint32_t number) {
    switch (number) {
    case kFloatData:
      return &floatData;
    case kInt32Data:
      return &int32Data;
    case kInt64Data:
      return &int64Data;
    case kDoubleData:
      return &doubleData;
    case kUInt64Data:
      return &uint64Data;
    default:
      return nullptr;
    }
  }
};

/// How a data_type is held by the typed fields: which field, how many
/// values per element (or two elements per value), the range of int32_data
/// and uint64_data values, and the bytes each value becomes.
struct TypedLayout {
  uint32_t field = 0; // 0: no typed field holds the type
  OnnxDataSource source = OnnxDataSource::None;
  unsigned valuesPerElement = 1;
  bool twoPerValue = false; // the 4-bit types
  unsigned outBytes = 0;
  int64_t min = 0, max = 0; // for int32_data
  uint64_t umax = 0;        // for uint64_data
};

TypedLayout typedLayout(int32_t code) {
  TypedLayout l;
  auto int32Field = [&](unsigned bytes, int64_t min, int64_t max) {
    l.field = kInt32Data;
    l.source = OnnxDataSource::Int32Data;
    l.outBytes = bytes;
    l.min = min;
    l.max = max;
  };
  switch (static_cast<OnnxDType>(code)) {
  case OnnxDType::Float:
  case OnnxDType::Complex64:
    l.field = kFloatData;
    l.source = OnnxDataSource::FloatData;
    l.outBytes = 4;
    l.valuesPerElement = code == static_cast<int32_t>(OnnxDType::Float) ? 1 : 2;
    break;
  case OnnxDType::Double:
  case OnnxDType::Complex128:
    l.field = kDoubleData;
    l.source = OnnxDataSource::DoubleData;
    l.outBytes = 8;
    l.valuesPerElement =
        code == static_cast<int32_t>(OnnxDType::Double) ? 1 : 2;
    break;
  case OnnxDType::Int32:
    int32Field(4, std::numeric_limits<int32_t>::min(),
               std::numeric_limits<int32_t>::max());
    break;
  case OnnxDType::Int16:
    int32Field(2, -32768, 32767);
    break;
  case OnnxDType::UInt16:
  case OnnxDType::Float16:
  case OnnxDType::BFloat16:
    int32Field(2, 0, 65535);
    break;
  case OnnxDType::Int8:
    int32Field(1, -128, 127);
    break;
  case OnnxDType::Bool:
    int32Field(1, 0, 1);
    break;
  case OnnxDType::UInt8:
  case OnnxDType::Float8E4M3FN:
  case OnnxDType::Float8E4M3FNUZ:
  case OnnxDType::Float8E5M2:
  case OnnxDType::Float8E5M2FNUZ:
    int32Field(1, 0, 255);
    break;
  case OnnxDType::UInt4:
  case OnnxDType::Int4:
    int32Field(1, 0, 255);
    l.twoPerValue = true;
    break;
  case OnnxDType::Int64:
    l.field = kInt64Data;
    l.source = OnnxDataSource::Int64Data;
    l.outBytes = 8;
    break;
  case OnnxDType::UInt32:
  case OnnxDType::UInt64:
    l.field = kUInt64Data;
    l.source = OnnxDataSource::UInt64Data;
    l.outBytes = code == static_cast<int32_t>(OnnxDType::UInt32) ? 4 : 8;
    l.umax = code == static_cast<int32_t>(OnnxDType::UInt32)
                 ? 0xffffffffu
                 : std::numeric_limits<uint64_t>::max();
    break;
  default:
    break;
  }
  return l;
}

const char *typedFieldName(uint32_t number) {
  switch (number) {
  case kFloatData:
    return "float_data";
  case kInt32Data:
    return "int32_data";
  case kInt64Data:
    return "int64_data";
  case kDoubleData:
    return "double_data";
  case kUInt64Data:
    return "uint64_data";
  default:
    return "?";
  }
}

/// The TensorProto field names, for messages about wire types.
const char *tensorFieldName(uint32_t number) {
  switch (number) {
  case kDims:
    return "dims";
  case kDataType:
    return "data_type";
  case kSegment:
    return "segment";
  case kStringData:
    return "string_data";
  case kName:
    return "name";
  case kRawData:
    return "raw_data";
  case kExternalData:
    return "external_data";
  case kDataLocation:
    return "data_location";
  default:
    return typedFieldName(number);
  }
}

//===----------------------------------------------------------------------===//
// Message helpers
//===----------------------------------------------------------------------===//

/// A name or string from the file, made safe for a one-line message.
std::string nameText(const std::string &name) {
  return "'" + printableText(name, 120, /*escapeQuotes=*/true) + "'";
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

/// "FLOAT dims [2, 3]"
std::string typeText(int32_t code, const std::vector<int64_t> &shape) {
  return onnxDTypeName(code) + " dims " + shapeText(shape);
}

/// "field 4 (float_data) at byte 17 is a varint, expected fixed32 or
/// length-delimited (packed)"
std::string wireMismatch(const WireField &f, const char *expected) {
  return "field " + std::to_string(f.number) + " (" +
         tensorFieldName(f.number) + ") " + at(f.at) + " has wire type " +
         wireTypeName(f.wireType) + ", expected " + expected;
}

/// A decimal offset or length of external_data: digits only.
bool parseDecimal(const std::string &text, uint64_t &out) {
  if (text.empty() || text.size() > 20)
    return false;
  uint64_t v = 0;
  for (char c : text) {
    if (c < '0' || c > '9')
      return false;
    uint64_t digit = static_cast<uint64_t>(c - '0');
    if (v > (std::numeric_limits<uint64_t>::max() - digit) / 10)
      return false;
    v = v * 10 + digit;
  }
  out = v;
  return true;
}

/// An external data location must name a file under the model's
/// directory.
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

/// Maps the regular file at `path` read-only. An empty file is not mapped
/// (base stays null).
bool mapFile(const std::string &path, const unsigned char *&base, size_t &size,
             std::string &problem) {
  // O_NONBLOCK: opening a FIFO must not hang; it is rejected below.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    problem = std::string("cannot open: ") + std::strerror(errno);
    return false;
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    problem = std::string("cannot stat: ") + std::strerror(errno);
    ::close(fd);
    return false;
  }
  if (S_ISDIR(st.st_mode)) {
    ::close(fd);
    problem = "is a directory";
    return false;
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    problem = "not a regular file";
    return false;
  }
  uint64_t fileSize = static_cast<uint64_t>(st.st_size);
  if (fileSize > std::numeric_limits<size_t>::max()) {
    ::close(fd);
    problem = "file too large to map";
    return false;
  }
  base = nullptr;
  size = static_cast<size_t>(fileSize);
  if (size == 0) {
    ::close(fd);
    return true;
  }
  void *m = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  int mapErr = errno;
  ::close(fd);
  if (m == MAP_FAILED) {
    problem = std::string("cannot map: ") + std::strerror(mapErr);
    return false;
  }
  base = static_cast<const unsigned char *>(m);
  return true;
}

} // namespace

//===----------------------------------------------------------------------===//
// OnnxFile
//===----------------------------------------------------------------------===//

OnnxFile::~OnnxFile() {
  if (mapped_ && base_)
    ::munmap(const_cast<unsigned char *>(base_), size_);
  for (const auto &m : external_)
    if (m->base)
      ::munmap(const_cast<unsigned char *>(m->base), m->size);
}

Status OnnxFile::open(const std::string &path, std::unique_ptr<OnnxFile> &out) {
  const unsigned char *base = nullptr;
  size_t size = 0;
  std::string problem;
  if (!mapFile(path, base, size, problem))
    return Status::error(path + ": " + problem);
  std::unique_ptr<OnnxFile> file(new OnnxFile());
  file->path_ = path;
  file->base_ = base;
  file->size_ = size;
  file->mapped_ = true; // unmapped by the destructor on any failure below
  Status s = file->load();
  if (!s)
    return s;
  out = std::move(file);
  return Status::success();
}

Status OnnxFile::parse(const void *bytes, size_t size,
                       const std::string &origin,
                       std::unique_ptr<OnnxFile> &out) {
  std::unique_ptr<OnnxFile> file(new OnnxFile());
  file->path_ = origin;
  file->base_ = static_cast<const unsigned char *>(bytes);
  file->size_ = bytes ? size : 0;
  Status s = file->load();
  if (!s)
    return s;
  out = std::move(file);
  return Status::success();
}

std::vector<std::string> OnnxFile::names() const {
  std::vector<std::string> out;
  out.reserve(initializers_.size());
  for (const OnnxTensorInfo &t : initializers_)
    out.push_back(t.name);
  return out;
}

const OnnxTensorInfo *OnnxFile::find(const std::string &name) const {
  auto it = byName_.find(name);
  return it == byName_.end() ? nullptr : &initializers_[it->second];
}

bool OnnxFile::mapExternal(const std::string &location, const Mapping *&out,
                           std::string &problem) {
  fs::path full = fs::path(path_).parent_path() / fs::path(location);
  std::string key = full.lexically_normal().string();
  auto it = externalByPath_.find(key);
  if (it != externalByPath_.end()) {
    out = external_[it->second].get();
    return true;
  }
  auto m = std::make_unique<Mapping>();
  m->path = full.string();
  if (!mapFile(m->path, m->base, m->size, problem)) {
    problem = "external data file " + nameText(location) + " (" + m->path +
              "): " + problem;
    return false;
  }
  externalByPath_.emplace(key, external_.size());
  external_.push_back(std::move(m));
  out = external_.back().get();
  return true;
}

namespace {

/// The first pass over one TensorProto: the wire format, the singular
/// fields, and where each repeated field's values are.
bool scanTensor(const unsigned char *base, Span span, TensorScan &scan,
                std::string &problem) {
  WireReader r(base, span, "the initializer");
  while (!r.done()) {
    WireField f;
    if (!r.next(f, problem))
      return false;
    auto singular = [&](bool &seen) {
      if (seen) {
        problem = "field " + std::to_string(f.number) + " (" +
                  tensorFieldName(f.number) + ") " + at(f.at) +
                  " appears twice";
        return false;
      }
      seen = true;
      return true;
    };
    switch (f.number) {
    case kDataType:
      if (f.wireType != kVarint) {
        problem = wireMismatch(f, "varint");
        return false;
      }
      if (!singular(scan.hasDataType))
        return false;
      scan.dataType = f.value;
      break;
    case kDataLocation:
      if (f.wireType != kVarint) {
        problem = wireMismatch(f, "varint");
        return false;
      }
      if (!singular(scan.hasDataLocation))
        return false;
      scan.dataLocation = f.value;
      break;
    case kSegment:
      if (!singular(scan.hasSegment))
        return false;
      break;
    case kName:
      if (f.wireType != kLengthDelimited) {
        problem = wireMismatch(f, "length-delimited");
        return false;
      }
      if (!singular(scan.hasName))
        return false;
      scan.name.assign(reinterpret_cast<const char *>(base + f.bytes.begin),
                       f.bytes.size());
      break;
    case kRawData:
      if (f.wireType != kLengthDelimited) {
        problem = wireMismatch(f, "length-delimited");
        return false;
      }
      if (!singular(scan.hasRaw))
        return false;
      scan.raw = f.bytes;
      scan.rawAt = f.at;
      break;
    case kStringData:
      if (f.wireType != kLengthDelimited) {
        problem = wireMismatch(f, "length-delimited");
        return false;
      }
      scan.hasStringData = true;
      break;
    case kExternalData:
      if (f.wireType != kLengthDelimited) {
        problem = wireMismatch(f, "length-delimited");
        return false;
      }
      if (scan.externalData.empty())
        scan.externalAt = f.at;
      scan.externalData.push_back(f.bytes);
      break;
    case kDims:
    case kFloatData:
    case kInt32Data:
    case kInt64Data:
    case kDoubleData:
    case kUInt64Data: {
      Repeated &rep = f.number == kDims ? scan.dims : *scan.typed(f.number);
      unsigned single = scalarWireType(rep.kind);
      if (rep.values == 0 && rep.packedRuns == 0 && !rep.single)
        rep.firstAt = f.at;
      if (f.wireType == single) {
        rep.single = true;
        ++rep.values;
        break;
      }
      if (f.wireType != kLengthDelimited) {
        problem = wireMismatch(f, (std::string(wireTypeName(single)) +
                                   " or length-delimited (packed)")
                                      .c_str());
        return false;
      }
      if (rep.packedRuns++ == 0)
        rep.firstRun = f.bytes;
      size_t n = f.bytes.size();
      if (rep.kind == Scalar::Varint) {
        // A value ends at each byte without the continuation bit.
        for (size_t i = f.bytes.begin; i < f.bytes.end; ++i)
          rep.values += (base[i] & 0x80) ? 0 : 1;
        if (n && (base[f.bytes.end - 1] & 0x80)) {
          problem = "packed " + std::string(rep.name) + " " + at(f.at) +
                    " ends inside a varint";
          return false;
        }
      } else {
        size_t width = rep.kind == Scalar::Fixed32 ? 4 : 8;
        if (n % width) {
          problem = "packed " + std::string(rep.name) + " " + at(f.at) +
                    " is " + std::to_string(n) + " bytes, not a multiple of " +
                    std::to_string(width);
          return false;
        }
        rep.values += n / width;
      }
      break;
    }
    default:
      break; // doc_string, metadata_props, fields of newer versions
    }
  }
  return true;
}

/// Where, inside a graph cut short by the end of the file, the file ends:
/// "; the file ends inside initializer 'x'" when an initializer is cut (its
/// name read when it is still there), "" otherwise.
std::string describeCut(const unsigned char *base, Span graphPrefix) {
  WireReader g(base, graphPrefix, "the file");
  size_t index = 0;
  while (!g.done()) {
    WireField f;
    std::string problem;
    if (!g.next(f, problem)) {
      if (g.overrunField() != 5)
        return "";
      // The cut initializer: look for its name in what is left.
      WireReader t(base, Span{g.overrunBegin(), graphPrefix.end}, "the file");
      while (!t.done()) {
        WireField tf;
        if (!t.next(tf, problem))
          break;
        if (tf.number == kName && tf.wireType == kLengthDelimited)
          return "; the file ends inside initializer " +
                 nameText(std::string(
                     reinterpret_cast<const char *>(base + tf.bytes.begin),
                     tf.bytes.size()));
      }
      return "; the file ends inside initializer #" + std::to_string(index) +
             " (its name is cut off)";
    }
    if (f.number == 5)
      ++index;
  }
  return "";
}

} // namespace

Status OnnxFile::load() {
  const std::string &p = path_;
  if (size_ == 0)
    return Status::error(p + ": empty file, not an ONNX model");

  // ModelProto.
  Span graph;
  size_t graphAt = 0;
  bool haveGraph = false;
  {
    WireReader model(base_, Span{0, size_}, "the file");
    bool haveProducer = false, haveIrVersion = false;
    while (!model.done()) {
      WireField f;
      std::string problem;
      if (!model.next(f, problem)) {
        if (model.overrunField() == 7)
          return Status::error(
              p + ": truncated: the graph (ModelProto field 7 " +
              at(model.overrunAt()) + ") is " +
              std::to_string(model.overrunLength()) + " bytes long but " +
              std::to_string(model.overrunLeft()) +
              " bytes are left in the file" +
              describeCut(base_, Span{model.overrunBegin(), size_}));
        if (model.hitEnd())
          return Status::error(p +
                               ": truncated, or not an ONNX model: " + problem);
        return Status::error(p + ": not an ONNX model: " + problem);
      }
      const char *expected = nullptr;
      if (f.number == 1 && f.wireType != kVarint)
        expected = "varint";
      else if ((f.number == 2 || f.number == 7) &&
               f.wireType != kLengthDelimited)
        expected = "length-delimited";
      if (expected)
        return Status::error(p + ": not an ONNX model: field " +
                             std::to_string(f.number) + " (" +
                             (f.number == 1   ? "ir_version"
                              : f.number == 2 ? "producer_name"
                                              : "graph") +
                             ") " + at(f.at) + " has wire type " +
                             wireTypeName(f.wireType) + ", expected " +
                             expected);
      if (f.number == 1) {
        if (haveIrVersion)
          return Status::error(p + ": not an ONNX model: ir_version " +
                               at(f.at) + " appears twice");
        haveIrVersion = true;
        irVersion_ = static_cast<int64_t>(f.value);
      } else if (f.number == 2) {
        if (haveProducer)
          return Status::error(p + ": not an ONNX model: producer_name " +
                               at(f.at) + " appears twice");
        haveProducer = true;
        producerName_.assign(
            reinterpret_cast<const char *>(base_ + f.bytes.begin),
            f.bytes.size());
      } else if (f.number == 7) {
        if (haveGraph)
          return Status::error(p + ": ModelProto has a second graph " +
                               at(f.at) + " (field 7 appears twice)");
        haveGraph = true;
        graph = f.bytes;
        graphAt = f.at;
      }
    }
  }
  if (!haveGraph)
    return Status::error(p + ": not an ONNX model: no graph (ModelProto "
                             "field 7)");

  // GraphProto: the initializers.
  std::vector<Span> spans;
  std::vector<size_t> spanAt;
  {
    WireReader g(base_, graph, "the graph");
    while (!g.done()) {
      WireField f;
      std::string problem;
      if (!g.next(f, problem))
        return Status::error(p + ": graph (ModelProto field 7 " + at(graphAt) +
                             "): " + problem);
      if (f.number != 5)
        continue;
      if (f.wireType != kLengthDelimited)
        return Status::error(p + ": graph: initializer #" +
                             std::to_string(spans.size()) + " " + at(f.at) +
                             " has wire type " + wireTypeName(f.wireType) +
                             ", expected length-delimited");
      spans.push_back(f.bytes);
      spanAt.push_back(f.at);
    }
  }

  std::vector<OnnxTensorInfo> initializers;
  std::unordered_map<std::string, size_t> byName;
  initializers.reserve(spans.size());
  byName.reserve(spans.size());
  for (size_t i = 0; i < spans.size(); ++i) {
    TensorScan scan;
    std::string problem;
    const std::string index = "initializer #" + std::to_string(i);
    if (!scanTensor(base_, spans[i], scan, problem))
      return Status::error(p + ": " +
                           (scan.hasName ? "initializer " + nameText(scan.name)
                                         : index + " (" + at(spanAt[i]) + ")") +
                           ": " + problem);
    if (!scan.hasName)
      return Status::error(p + ": " + index + " (" + at(spanAt[i]) +
                           ") has no name (field 8)");
    if (scan.name.empty())
      return Status::error(p + ": " + index + " (" + at(spanAt[i]) +
                           ") has an empty name");
    const std::string prefix =
        p + ": initializer " + nameText(scan.name) + ": ";
    auto fail = [&](const std::string &what) {
      return Status::error(prefix + what);
    };

    OnnxTensorInfo info;
    info.name = scan.name;
    info.index = i;
    if (scan.hasSegment)
      return fail("segment (field 3) is not supported");
    if (!scan.hasDataType)
      return fail("no data_type (field 2)");
    int64_t code = static_cast<int64_t>(scan.dataType);
    if (code <= 0 || code > std::numeric_limits<int32_t>::max())
      return fail("data_type " + std::to_string(code) +
                  (code == 0 ? " (UNDEFINED)" : "") + " is not a data type");
    info.dataType = static_cast<int32_t>(code);

    // dims and the element count.
    info.shape.reserve(static_cast<size_t>(scan.dims.values));
    size_t k = 0;
    bool ok = forEachValue(base_, spans[i], kDims, Scalar::Varint, problem,
                           [&](uint64_t v, size_t offset) {
                             int64_t d = static_cast<int64_t>(v);
                             if (d < 0) {
                               problem = "dims[" + std::to_string(k) + "] " +
                                         at(offset) + " is negative (" +
                                         std::to_string(d) + ")";
                               return false;
                             }
                             info.shape.push_back(d);
                             ++k;
                             return true;
                           });
    if (!ok)
      return fail(problem);
    uint64_t count = 1;
    bool zero = false;
    for (int64_t d : info.shape)
      zero = zero || d == 0;
    if (zero) {
      count = 0;
    } else {
      for (int64_t d : info.shape) {
        uint64_t ud = static_cast<uint64_t>(d);
        if (count >
            static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) / ud)
          return fail("element count of dims " + shapeText(info.shape) +
                      " overflows int64");
        count *= ud;
      }
    }
    info.numElements = static_cast<int64_t>(count);

    if (scan.hasDataLocation && scan.dataLocation > 1)
      return fail("data_location " +
                  std::to_string(static_cast<int64_t>(scan.dataLocation)) +
                  " is neither DEFAULT (0) nor EXTERNAL (1)");
    bool external = scan.hasDataLocation && scan.dataLocation == 1;

    if (!isFixedSizeOnnxDType(info.dataType)) {
      // STRING, or a type this reader does not know: listed without data.
      if (!byName.emplace(info.name, initializers.size()).second)
        return Status::error(
            p + ": two initializers named " + nameText(info.name) + " (#" +
            std::to_string(initializers[byName[info.name]].index) + " and #" +
            std::to_string(i) + ")");
      initializers.push_back(std::move(info));
      continue;
    }
    uint64_t bytes = 0;
    if (!onnxDataBytes(info.dataType, count, bytes) ||
        bytes > std::numeric_limits<size_t>::max())
      return fail("byte size of " + typeText(info.dataType, info.shape) +
                  " overflows");
    info.byteSize = bytes;
    const std::string needs = typeText(info.dataType, info.shape) + " need" +
                              (info.shape.empty() ? "s " : " ") +
                              std::to_string(bytes) + " bytes";

    // The data fields present.
    std::vector<const Repeated *> typedPresent;
    for (const Repeated *rep :
         {&scan.floatData, &scan.int32Data, &scan.int64Data, &scan.doubleData,
          &scan.uint64Data})
      if (rep->present())
        typedPresent.push_back(rep);

    if (external) {
      if (scan.hasRaw)
        return fail("data_location is EXTERNAL but raw_data " + at(scan.rawAt) +
                    " is present too");
      if (!typedPresent.empty())
        return fail("data_location is EXTERNAL but " +
                    std::string(typedPresent.front()->name) + " " +
                    at(typedPresent.front()->firstAt) + " is present too");
      // external_data: key/value pairs.
      std::string location;
      bool haveLocation = false, haveLength = false;
      uint64_t offset = 0, length = 0;
      std::vector<std::string> keys;
      for (size_t e = 0; e < scan.externalData.size(); ++e) {
        WireReader entry(base_, scan.externalData[e],
                         "the external_data entry");
        bool haveKey = false, haveValue = false;
        std::string key, value;
        while (!entry.done()) {
          WireField f;
          if (!entry.next(f, problem))
            return fail("external_data[" + std::to_string(e) + "]: " + problem);
          if (f.number != 1 && f.number != 2)
            continue;
          if (f.wireType != kLengthDelimited)
            return fail("external_data[" + std::to_string(e) +
                        "]: " + (f.number == 1 ? "key " : "value ") + at(f.at) +
                        " has wire type " + wireTypeName(f.wireType) +
                        ", expected length-delimited");
          bool &seen = f.number == 1 ? haveKey : haveValue;
          if (seen)
            return fail("external_data[" + std::to_string(e) + "] has two " +
                        (f.number == 1 ? "keys" : "values"));
          seen = true;
          (f.number == 1 ? key : value)
              .assign(reinterpret_cast<const char *>(base_ + f.bytes.begin),
                      f.bytes.size());
        }
        if (!haveKey)
          return fail("external_data[" + std::to_string(e) + "] has no key");
        for (const std::string &prior : keys)
          if (prior == key)
            return fail("external_data has the key " + nameText(key) +
                        " twice");
        keys.push_back(key);
        if (key == "location") {
          haveLocation = true;
          location = value;
        } else if (key == "offset" || key == "length") {
          uint64_t &slot = key == "offset" ? offset : length;
          if (!parseDecimal(value, slot))
            return fail("external_data " + key + " " + nameText(value) +
                        " is not a non-negative decimal integer");
          if (key == "length")
            haveLength = true;
        } else if (key != "checksum" && key != "basepath") {
          // checksum (SHA-1) is not verified; basepath is not used by
          // ONNX's own loader either.
          return fail("external_data has the unknown key " + nameText(key));
        }
      }
      if (!haveLocation)
        return fail("data_location is EXTERNAL but external_data has no "
                    "\"location\"");
      if (!isSafeRelativePath(location))
        return fail("external data location " + nameText(location) +
                    " is not a relative path inside the model's directory");
      if (haveLength && length != bytes)
        return fail("external_data length " + std::to_string(length) +
                    " does not match " + needs);
      const Mapping *m = nullptr;
      if (!mapExternal(location, m, problem))
        return fail(problem);
      uint64_t fileSize = m->size;
      if (!haveLength && offset <= fileSize && fileSize - offset != bytes)
        return fail("external data file " + nameText(location) + " holds " +
                    std::to_string(fileSize - offset) + " bytes after offset " +
                    std::to_string(offset) + " (no length given), " + needs);
      if (offset > fileSize || bytes > fileSize - offset)
        return fail("external data file " + nameText(location) + " is " +
                    std::to_string(fileSize) + " bytes, needs offset " +
                    std::to_string(offset) + " + length " +
                    std::to_string(bytes));
      info.source = OnnxDataSource::External;
      info.location = location;
      info.offset = offset;
      info.region = m->base;
      info.data = bytes ? m->base + offset : nullptr;
    } else {
      if (!scan.externalData.empty())
        return fail("external_data " + at(scan.externalAt) +
                    " is present but data_location is not EXTERNAL");
      size_t sources = typedPresent.size() + (scan.hasRaw ? 1 : 0);
      if (sources > 1) {
        std::string first =
            scan.hasRaw ? "raw_data" : std::string(typedPresent[0]->name);
        std::string second =
            std::string(typedPresent[scan.hasRaw ? 0 : 1]->name);
        return fail("data in both " + first + " and " + second +
                    " (one field must hold it)");
      }
      if (scan.hasRaw) {
        if (scan.raw.size() != bytes)
          return fail("raw_data " + at(scan.rawAt) + " is " +
                      std::to_string(scan.raw.size()) + " bytes, " + needs);
        info.source = OnnxDataSource::RawData;
        info.region = base_;
        info.data = bytes ? base_ + scan.raw.begin : nullptr;
      } else if (!typedPresent.empty()) {
        const Repeated &rep = *typedPresent.front();
        TypedLayout layout = typedLayout(info.dataType);
        if (rep.number != layout.field)
          return fail(std::string(rep.name) + " " + at(rep.firstAt) +
                      " cannot hold " + onnxDTypeName(info.dataType) +
                      " elements (expected " + typedFieldName(layout.field) +
                      " or raw_data)");
        uint64_t wanted = layout.twoPerValue ? count / 2 + count % 2
                                             : count * layout.valuesPerElement;
        if (rep.values != wanted)
          return fail(
              std::string(rep.name) + " has " + std::to_string(rep.values) +
              " values, " + typeText(info.dataType, info.shape) + " need" +
              (info.shape.empty() ? "s " : " ") + std::to_string(wanted));
        info.source = layout.source;
        if ((rep.number == kFloatData || rep.number == kDoubleData) &&
            rep.oneRun()) {
          // Packed little-endian floats or doubles: already raw_data's
          // layout.
          info.region = base_;
          info.data = bytes ? base_ + rep.firstRun.begin : nullptr;
        } else if (bytes) {
          std::vector<uint64_t> buffer(static_cast<size_t>((bytes + 7) / 8));
          unsigned char *out = reinterpret_cast<unsigned char *>(buffer.data());
          uint64_t n = 0;
          ok = forEachValue(
              base_, spans[i], rep.number, rep.kind, problem,
              [&](uint64_t v, size_t offset) {
                std::string item = std::string(rep.name) + "[" +
                                   std::to_string(n) + "] " + at(offset);
                if (n >= wanted) { // cannot happen: the scan counted them
                  problem = item + ": more values than counted";
                  return false;
                }
                if (rep.number == kInt32Data) {
                  int64_t s = static_cast<int64_t>(v);
                  if (s < std::numeric_limits<int32_t>::min() ||
                      s > std::numeric_limits<int32_t>::max()) {
                    problem = item + " is " + std::to_string(s) +
                              ", out of the int32 range";
                    return false;
                  }
                  if (s < layout.min || s > layout.max) {
                    problem = item + " is " + std::to_string(s) +
                              ", out of the range [" +
                              std::to_string(layout.min) + ", " +
                              std::to_string(layout.max) + "] of " +
                              onnxDTypeName(info.dataType) +
                              (layout.twoPerValue ? " (two to a value)" : "");
                    return false;
                  }
                } else if (rep.number == kUInt64Data && v > layout.umax) {
                  problem = item + " is " + std::to_string(v) +
                            ", out of the range of " +
                            onnxDTypeName(info.dataType);
                  return false;
                }
                unsigned char *dst = out + n * layout.outBytes;
                for (unsigned b = 0; b < layout.outBytes; ++b)
                  dst[b] = static_cast<unsigned char>((v >> (8 * b)) & 0xff);
                ++n;
                return true;
              });
          if (!ok)
            return fail(problem);
          decodedBytes_ += bytes;
          decoded_.push_back(std::move(buffer));
          info.decoded = true;
          info.region = decoded_.back().data();
          info.data = decoded_.back().data();
        }
      } else if (count != 0) {
        return fail("no data for its " + std::to_string(count) +
                    " elements (no raw_data, " +
                    typedFieldName(typedLayout(info.dataType).field) +
                    " or external data)");
      }
    }
    if (!byName.emplace(info.name, initializers.size()).second)
      return Status::error(
          p + ": two initializers named " + nameText(info.name) + " (#" +
          std::to_string(initializers[byName[info.name]].index) + " and #" +
          std::to_string(i) + ")");
    initializers.push_back(std::move(info));
  }

  initializers_ = std::move(initializers);
  byName_ = std::move(byName);
  return Status::success();
}

} // namespace moe_rt
