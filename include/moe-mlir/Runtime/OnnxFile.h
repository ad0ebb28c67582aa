//===- OnnxFile.h - initializers of ONNX model files ------------*- C++ -*-===//
//
// Part of the moe-mlir runtime: C++17 standard library and POSIX only (no
// MLIR, no LLVM, no protobuf library), no exceptions (fallible operations
// return a Status).
//
// An .onnx file is a serialized onnx.ModelProto (protobuf wire format). A
// model compiled from one takes the initializers of its top-level graph as
// entry-function inputs named after them; OnnxFile finds them again at run
// time, by name, without protobuf: it reads just the wire format, and just
// these fields of onnx.proto:
//
//   ModelProto         1 ir_version, 2 producer_name, 7 graph
//   GraphProto         5 initializer (repeated TensorProto)
//   TensorProto        1 dims, 2 data_type, 3 segment (rejected),
//                      4 float_data, 5 int32_data, 6 string_data, 7
//                      int64_data, 8 name, 9 raw_data, 10 double_data, 11
//                      uint64_data, 13 external_data, 14 data_location
//   StringStringEntry  1 key, 2 value
//
// Everything else (nodes, inputs, opsets, sparse initializers, subgraphs'
// initializers, doc strings, ...) is skipped by wire type. Repeated scalars
// may be packed or not, or both, in any number of pieces, as protobuf
// allows.
//
// An initializer's elements are exposed as little-endian bytes in C order,
// the way raw_data holds them:
//  - raw_data, and float_data / double_data stored as one packed run, are
//    views of the file's mapping (zero copy);
//  - external data (data_location EXTERNAL, external_data "location",
//    "offset", "length") are views of a read-only mapping of the data file,
//    which must lie inside the model's directory: the location may not be
//    absolute nor contain "..". (Symbolic links are followed, as a Hugging
//    Face cache needs: its snapshots link to blobs elsewhere.) Each data
//    file is mapped once. "checksum" is not verified; "basepath" is
//    ignored, as ONNX's own loader does; other keys are rejected;
//  - the typed fields otherwise (int32_data carries INT32, INT16, INT8,
//    UINT16, UINT8, BOOL, FLOAT16 and BFLOAT16 bit patterns, the 8-bit
//    floats, and the 4-bit types two to a value; int64_data INT64;
//    uint64_data UINT32 and UINT64; ...) are decoded once, at open, into
//    memory owned by the OnnxFile, aligned to 8 bytes.
// Views of a mapping are aligned only as the writer placed them: raw_data
// inside a protobuf usually is not; see isAligned().
//
// A file is validated completely when it is opened, so that no later access
// can go out of bounds: every varint, length and fixed-width value lies
// inside its enclosing message; groups and unknown wire types are rejected;
// every initializer has a name, unique in the graph, and a data_type; dims
// are non-negative and their product, and its byte size, do not overflow;
// the data (raw_data, the typed field that matches data_type, or the
// external range) hold exactly that many elements, and typed values are in
// range for the type. Where protobuf would silently merge or let the last
// one win (a singular field or the graph given twice, data in two fields),
// the file is rejected instead. Initializers of type STRING, or of a type code
// this reader does not know, are listed without data. Every error message is
// one line that starts with the file's path and names the initializer and field
// at fault.
//
// An opened file is immutable, so it may be read from many threads at once.
// A file changed or truncated by another process while mapped may raise
// SIGBUS on access; weights are expected to be immutable.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_RUNTIME_ONNXFILE_H
#define MOE_MLIR_RUNTIME_ONNXFILE_H

#include "moe-mlir/Runtime/Npy.h" // DType, Status

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace moe_rt {

/// onnx.TensorProto.DataType: the element types an ONNX file may declare.
/// Files may hold other codes (newer types); they are kept as read.
enum class OnnxDType : int32_t {
  Undefined = 0,
  Float = 1,
  UInt8 = 2,
  Int8 = 3,
  UInt16 = 4,
  Int16 = 5,
  Int32 = 6,
  Int64 = 7,
  String = 8,
  Bool = 9,
  Float16 = 10,
  Double = 11,
  UInt32 = 12,
  UInt64 = 13,
  Complex64 = 14,
  Complex128 = 15,
  BFloat16 = 16,
  Float8E4M3FN = 17,
  Float8E4M3FNUZ = 18,
  Float8E5M2 = 19,
  Float8E5M2FNUZ = 20,
  UInt4 = 21,
  Int4 = 22,
};

/// The onnx.proto name of a data_type code ("FLOAT", "BFLOAT16", ...), or
/// "code N" for a code this reader does not know.
std::string onnxDTypeName(int32_t code);
/// True for the codes 1 to 22 except STRING: the types whose elements have
/// a fixed size and that OnnxFile reads.
bool isFixedSizeOnnxDType(int32_t code);
/// Bytes that `count` elements of `code` take (the 4-bit types two to a
/// byte, rounded up); false when the type has no fixed size or the size
/// overflows.
bool onnxDataBytes(int32_t code, uint64_t count, uint64_t &bytes);
/// The runtime DType of the same element type (FLOAT, FLOAT16, BFLOAT16,
/// INT32, INT64, UINT8, BOOL), or false.
bool onnxToRuntimeDType(int32_t code, DType &out);

/// Where an initializer's bytes come from.
enum class OnnxDataSource {
  None, // no data: no elements, or STRING / an unknown type
  RawData,
  FloatData,
  Int32Data,
  Int64Data,
  DoubleData,
  UInt64Data,
  External,
};

/// The TensorProto field name of a source ("raw_data", "external data").
const char *onnxDataSourceName(OnnxDataSource source);

/// One initializer of the top-level graph.
struct OnnxTensorInfo {
  std::string name;
  int32_t dataType = 0;       // an OnnxDType code
  std::vector<int64_t> shape; // dims; empty: a scalar
  int64_t numElements = 0;    // product of shape (1 for a scalar)
  uint64_t byteSize = 0;      // onnxDataBytes(dataType, numElements)
  /// The elements, byteSize little-endian bytes in C order; valid while the
  /// OnnxFile lives. Null when there are no bytes.
  const void *data = nullptr;
  OnnxDataSource source = OnnxDataSource::None;
  /// True when `data` was decoded into memory owned by the OnnxFile; false
  /// when it is a view of the model file or an external data file.
  bool decoded = false;
  /// The block of memory `data` lies in (a file mapping, or a decoded
  /// buffer): tensors back to back in one region may be viewed as one.
  const void *region = nullptr;
  /// For external data: the "location" as written and the offset used.
  std::string location;
  uint64_t offset = 0;
  /// Index in the graph's initializer list.
  size_t index = 0;

  /// The onnx.proto name of dataType.
  std::string dtypeName() const { return onnxDTypeName(dataType); }
  /// `data` is aligned to the element size (true for 1-byte types and when
  /// there is no data).
  bool isAligned() const;
  /// onnxToRuntimeDType(dataType, out).
  bool runtimeDType(DType &out) const {
    return onnxToRuntimeDType(dataType, out);
  }
};

/// A validated, memory-mapped ONNX model file: its graph's initializers.
class OnnxFile {
public:
  /// Maps and validates the file at `path`, mapping the external data files
  /// it names (relative to its directory). On failure `out` is unchanged.
  static Status open(const std::string &path, std::unique_ptr<OnnxFile> &out);

  /// Validates `size` bytes at `bytes` as an ONNX model without copying
  /// them: the caller keeps them alive (and unchanged) as long as the
  /// result. `origin` names them in messages and path(); external data
  /// locations are resolved against its directory.
  static Status parse(const void *bytes, size_t size, const std::string &origin,
                      std::unique_ptr<OnnxFile> &out);

  ~OnnxFile();
  OnnxFile(const OnnxFile &) = delete;
  OnnxFile &operator=(const OnnxFile &) = delete;

  const std::string &path() const { return path_; }

  /// The initializers, in graph order.
  const std::vector<OnnxTensorInfo> &initializers() const {
    return initializers_;
  }
  /// Their names, in the same order.
  std::vector<std::string> names() const;
  size_t size() const { return initializers_.size(); }

  /// The initializer named `name`, or nullptr.
  const OnnxTensorInfo *find(const std::string &name) const;

  /// ModelProto.ir_version (0 when absent) and producer_name.
  int64_t irVersion() const { return irVersion_; }
  const std::string &producerName() const { return producerName_; }

  /// The model file as mapped.
  const void *fileData() const { return base_; }
  size_t fileSize() const { return size_; }
  /// Bytes decoded into memory the file owns.
  uint64_t decodedBytes() const { return decodedBytes_; }

private:
  struct Mapping {
    std::string path;
    const unsigned char *base = nullptr;
    size_t size = 0;
  };

  OnnxFile() = default;
  Status load(); // parses and validates base_[0, size_)
  /// Maps (once) the external data file at `location`, relative to the
  /// model's directory; false with `problem` set when it cannot.
  bool mapExternal(const std::string &location, const Mapping *&out,
                   std::string &problem);

  std::string path_;
  const unsigned char *base_ = nullptr;
  size_t size_ = 0;
  bool mapped_ = false; // base_ is an mmap to unmap
  int64_t irVersion_ = 0;
  std::string producerName_;
  std::vector<OnnxTensorInfo> initializers_;
  std::unordered_map<std::string, size_t> byName_;
  std::vector<std::unique_ptr<Mapping>> external_; // unmapped by ~OnnxFile
  std::unordered_map<std::string, size_t> externalByPath_;
  std::vector<std::vector<uint64_t>> decoded_; // 8-byte aligned
  uint64_t decodedBytes_ = 0;
};

} // namespace moe_rt

#endif // MOE_MLIR_RUNTIME_ONNXFILE_H
