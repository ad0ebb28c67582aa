//===- SafeTensors.h - Hugging Face safetensors files -----------*- C++ -*-===//
//
// Part of the moe-mlir runtime: C++17 standard library and POSIX only (no
// MLIR, no LLVM), no exceptions (fallible operations return a Status).
//
// The safetensors format (github.com/huggingface/safetensors): 8 bytes, N as
// a little-endian uint64; N bytes of UTF-8 JSON, an object mapping each
// tensor name to {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin,
// end]} plus an optional "__metadata__" object of string values; then the
// data section, in which each tensor occupies the bytes [begin, end) (offsets
// relative to the start of the data section), C order, little-endian.
//
// Files are memory-mapped read-only (MAP_PRIVATE) and tensors are views of
// the mapping: nothing is copied. A file is validated completely when it is
// opened, as strictly as the reference implementation (safetensors'
// Metadata::validate) does, so that no later access can go out of bounds:
//  - the header length is at most 100,000,000 bytes and lies inside the file;
//  - the header is strict JSON (see Json.h), an object, without duplicate
//    names; "__metadata__" maps strings to strings (null reads as absent);
//  - every tensor has a known dtype (a string), a shape (an array of
//    non-negative integers) and data_offsets (two non-negative integers,
//    begin <= end); members other than these three are ignored, as the
//    reference implementation does;
//  - end - begin is exactly dtypeSize * product(shape), computed without
//    overflow;
//  - sorted by offset, the tensors tile the data section exactly: the first
//    starts at 0, each starts where the previous one ends (no overlap, no
//    hole) and the last ends at the end of the file (no trailing bytes).
//    Empty tensors (a zero dimension) occupy no bytes and may share an offset.
// Every error message is one line that starts with the file's path and names
// the tensor or field at fault.
//
// An opened file is immutable, so it may be read from many threads at once.
// A file changed or truncated by another process while mapped may raise
// SIGBUS on access; weights are expected to be immutable.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_RUNTIME_SAFETENSORS_H
#define MOE_MLIR_RUNTIME_SAFETENSORS_H

#include "moe-mlir/Runtime/Json.h"
#include "moe-mlir/Runtime/Npy.h" // DType, Status

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace moe_rt {

/// The element types a safetensors file may declare. This is the file's
/// vocabulary, wider than the runtime's DType: toRuntimeDType() maps the
/// types the runtime computes with, and a caller rejects the others (F64,
/// I8, I16, the unsigned types beyond U8, the 8-bit floats).
enum class SafeTensorsDType {
  Bool,
  U8,
  I8,
  F8_E5M2,
  F8_E4M3,
  I16,
  U16,
  F16,
  BF16,
  I32,
  U32,
  F32,
  F64,
  I64,
  U64,
};

/// The name used in files: "F32", "BF16", "F8_E4M3", "BOOL", ...
const char *safeTensorsDTypeName(SafeTensorsDType dtype);
/// Bytes per element (1 to 8).
size_t safeTensorsDTypeSize(SafeTensorsDType dtype);
/// Parses a file's dtype name (case-sensitive, as the format requires).
bool parseSafeTensorsDType(const std::string &name, SafeTensorsDType &out);
/// The runtime DType of the same element type (F32, F16, BF16, I32, I64, U8,
/// BOOL), or false.
bool toRuntimeDType(SafeTensorsDType dtype, DType &out);

/// One tensor of a mapped file.
struct TensorInfo {
  std::string name;
  SafeTensorsDType dtype = SafeTensorsDType::F32;
  std::vector<int64_t> shape; // empty: a scalar
  int64_t numElements = 0;    // product of shape (1 for a scalar)
  uint64_t begin = 0;         // data_offsets, relative to the data section
  uint64_t end = 0;
  /// The first byte, inside the file's mapping (zero copy); valid while the
  /// SafeTensorsFile lives. Aligned to the element size when the header
  /// length is a multiple of 8, which the reference writer ensures, but not
  /// necessarily otherwise: see isAligned().
  const void *data = nullptr;

  uint64_t byteSize() const { return end - begin; }
  bool isAligned() const;
  /// toRuntimeDType(dtype, out).
  bool runtimeDType(DType &out) const { return toRuntimeDType(dtype, out); }
};

/// A validated, memory-mapped safetensors file.
class SafeTensorsFile {
public:
  /// Largest accepted header (the reference implementation's limit).
  static constexpr uint64_t kMaxHeaderSize = 100000000;

  /// Maps and validates the file at `path`. On failure `out` is unchanged.
  static Status open(const std::string &path,
                     std::unique_ptr<SafeTensorsFile> &out);

  /// Validates `size` bytes at `bytes` as a safetensors file without copying
  /// them: the caller keeps them alive (and unchanged) as long as the
  /// result. `origin` names them in messages and path().
  static Status parse(const void *bytes, size_t size, const std::string &origin,
                      std::unique_ptr<SafeTensorsFile> &out);

  ~SafeTensorsFile();
  SafeTensorsFile(const SafeTensorsFile &) = delete;
  SafeTensorsFile &operator=(const SafeTensorsFile &) = delete;

  const std::string &path() const { return path_; }

  /// The tensors sorted by offset (ties, empty tensors, in header order).
  const std::vector<TensorInfo> &tensors() const { return tensors_; }
  /// Their names, in the same order.
  std::vector<std::string> names() const;
  size_t size() const { return tensors_.size(); }

  /// The tensor named `name`, or nullptr.
  const TensorInfo *find(const std::string &name) const;

  /// The "__metadata__" strings (empty when absent).
  const std::map<std::string, std::string> &metadata() const {
    return metadata_;
  }

  /// The whole file as mapped, and its layout.
  const void *fileData() const { return base_; }
  size_t fileSize() const { return size_; }
  uint64_t headerSize() const { return headerSize_; } // N
  uint64_t dataOffset() const { return 8 + headerSize_; }

private:
  SafeTensorsFile() = default;
  Status load(); // parses and validates base_[0, size_)

  std::string path_;
  const unsigned char *base_ = nullptr;
  size_t size_ = 0;
  bool mapped_ = false; // base_ is an mmap to unmap
  uint64_t headerSize_ = 0;
  std::vector<TensorInfo> tensors_;
  std::unordered_map<std::string, size_t> byName_;
  std::map<std::string, std::string> metadata_;
};

/// Tensor names resolved to (file, tensor) over the shards of a sharded
/// checkpoint, listed by a model.safetensors.index.json ({"metadata": {...},
/// "weight_map": {tensor name: shard file name}}), or over a single file.
///
/// Opening an index opens every shard it names once, eagerly, and checks the
/// whole checkpoint: every weight_map value is a relative path (no "..")
/// to a valid safetensors file, resolved against the index's directory;
/// every tensor the weight_map names is in the shard it names; every tensor
/// of every shard is in the weight_map, mapped to that shard (so no tensor is
/// in two shards). Messages start with the index's path and name the tensor.
class SafeTensorsIndex {
public:
  /// Opens a model.safetensors.index.json and all its shards.
  static Status open(const std::string &indexPath,
                     std::unique_ptr<SafeTensorsIndex> &out);
  /// Opens a single safetensors file as a one-shard index.
  static Status openSingleFile(const std::string &path,
                               std::unique_ptr<SafeTensorsIndex> &out);

  /// The index file, or the single file.
  const std::string &path() const { return path_; }
  bool isSharded() const { return sharded_; }

  /// The shards, in the order the weight_map first names them.
  const std::vector<std::unique_ptr<SafeTensorsFile>> &shards() const {
    return shards_;
  }

  /// Every tensor name: weight_map order for an index, file (offset) order
  /// for a single file.
  const std::vector<std::string> &names() const { return names_; }
  size_t size() const { return names_.size(); }

  /// The tensor named `name` and (when `file` is given) its shard, or
  /// nullptr.
  const TensorInfo *find(const std::string &name,
                         const SafeTensorsFile **file = nullptr) const;
  /// find(), with a message naming the index and the tensor when absent.
  Status lookup(const std::string &name, const TensorInfo *&info,
                const SafeTensorsFile **file = nullptr) const;

  /// The index's "metadata" member (null for a single file or when absent;
  /// transformers writes {"total_size": bytes}).
  const JsonValue &metadata() const { return metadata_; }

private:
  SafeTensorsIndex() = default;

  struct Entry {
    size_t shard;
    const TensorInfo *info;
  };

  std::string path_;
  bool sharded_ = false;
  std::vector<std::unique_ptr<SafeTensorsFile>> shards_;
  std::vector<std::string> names_;
  std::unordered_map<std::string, Entry> byName_;
  JsonValue metadata_;
};

/// Opens a checkpoint at `path`: a directory holding model.safetensors
/// (preferred, as transformers does) or model.safetensors.index.json; a file
/// whose name ends in ".json" as an index; any other file as a single
/// safetensors file.
Status openSafeTensorsCheckpoint(const std::string &path,
                                 std::unique_ptr<SafeTensorsIndex> &out);

} // namespace moe_rt

#endif // MOE_MLIR_RUNTIME_SAFETENSORS_H
