//===- onnx-file-test.cpp - Unit tests of the ONNX initializer reader -----===//
//
// moe-onnx-file-unittests SCRATCH_DIR
//     Runs every check (OnnxFile on protobuf images built here, external
//     data files, WeightSet over .onnx files), printing one line per check;
//     exits 1 if any failed.
// moe-onnx-file-unittests --dump PATH
//     Opens PATH with OnnxFile::open and prints one line per initializer
//     (see dump()); on failure prints the error to stderr and exits 1.
// moe-onnx-file-unittests --bind PATH... -- NAME:DTYPE:DIMS...
//     Adds each PATH to a WeightSet and binds each input spec (DIMS comma
//     separated, empty for a scalar; NAME may hold one '*'), printing one
//     line per input (see bindSpecs()); on failure prints the error to
//     stderr and exits 1.
//
// Plain C++17, no exceptions, no MLIR/LLVM, like the runtime itself.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Runtime/ModelInfo.h"
#include "moe-mlir/Runtime/Npy.h"
#include "moe-mlir/Runtime/OnnxFile.h"
#include "moe-mlir/Runtime/Weights.h"

#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

using namespace moe_rt;
namespace fs = std::filesystem;

namespace {

//===----------------------------------------------------------------------===//
// Reporting
//===----------------------------------------------------------------------===//

int numChecks = 0;
int numFailed = 0;

void check(bool ok, const std::string &name, const std::string &detail = "") {
  ++numChecks;
  if (ok) {
    std::printf("PASS: %s\n", name.c_str());
  } else {
    ++numFailed;
    std::printf("FAIL: %s%s%s\n", name.c_str(), detail.empty() ? "" : ": ",
                detail.c_str());
  }
}

bool contains(const std::string &text, const std::string &part) {
  return text.find(part) != std::string::npos;
}

/// The message is one line, starts with `prefix` and holds every part.
bool messageMatches(const Status &st, const std::string &prefix,
                    std::initializer_list<std::string> parts) {
  if (st.ok || contains(st.message, "\n") ||
      st.message.compare(0, prefix.size(), prefix) != 0)
    return false;
  for (const std::string &p : parts)
    if (!contains(st.message, p))
      return false;
  return true;
}

std::string statusText(const Status &st) {
  return st.ok ? std::string("ok") : "error: " + st.message;
}

std::string hexBytes(const void *data, uint64_t size) {
  static const char digits[] = "0123456789abcdef";
  const auto *p = static_cast<const unsigned char *>(data);
  std::string s;
  s.reserve(static_cast<size_t>(size) * 2);
  for (uint64_t i = 0; i < size; ++i) {
    s += digits[p[i] >> 4];
    s += digits[p[i] & 15];
  }
  return s;
}

bool writeFile(const std::string &path, const std::string &bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return static_cast<bool>(f);
}

//===----------------------------------------------------------------------===//
// Protobuf images
//===----------------------------------------------------------------------===//

std::string varint(uint64_t v) {
  std::string s;
  while (v >= 0x80) {
    s += static_cast<char>((v & 0x7f) | 0x80);
    v >>= 7;
  }
  s += static_cast<char>(v);
  return s;
}

std::string tag(uint32_t field, unsigned wireType) {
  return varint((static_cast<uint64_t>(field) << 3) | wireType);
}

std::string le(uint64_t v, unsigned width) {
  std::string s(width, '\0');
  for (unsigned i = 0; i < width; ++i)
    s[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  return s;
}

/// A protobuf message under construction.
struct Pb {
  std::string bytes;

  Pb &v(uint32_t field, uint64_t value) {
    bytes += tag(field, 0) + varint(value);
    return *this;
  }
  /// A varint of a signed int32/int64 field (sign-extended to 64 bits).
  Pb &sv(uint32_t field, int64_t value) {
    return v(field, static_cast<uint64_t>(value));
  }
  Pb &f32(uint32_t field, uint32_t bits) {
    bytes += tag(field, 5) + le(bits, 4);
    return *this;
  }
  Pb &f64(uint32_t field, uint64_t bits) {
    bytes += tag(field, 1) + le(bits, 8);
    return *this;
  }
  Pb &b(uint32_t field, const std::string &payload) {
    bytes += tag(field, 2) + varint(payload.size()) + payload;
    return *this;
  }
  Pb &m(uint32_t field, const Pb &message) { return b(field, message.bytes); }
  Pb &raw(const std::string &text) {
    bytes += text;
    return *this;
  }
};

uint32_t floatBits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

std::string floatBytes(std::initializer_list<float> values) {
  std::string s;
  for (float f : values)
    s += le(floatBits(f), 4);
  return s;
}

std::string packedVarints(std::initializer_list<int64_t> values) {
  std::string s;
  for (int64_t x : values)
    s += varint(static_cast<uint64_t>(x));
  return s;
}

/// A TensorProto with dims, data_type and name.
Pb tensor(const std::string &name, int32_t dataType,
          std::initializer_list<int64_t> dims) {
  Pb t;
  for (int64_t d : dims)
    t.sv(1, d);
  t.v(2, static_cast<uint64_t>(dataType));
  t.b(8, name);
  return t;
}

/// A ModelProto whose graph has a node, the initializers and an input.
std::string model(const std::vector<Pb> &initializers,
                  const std::string &producer = "moe-test") {
  Pb node;
  node.b(1, "x").b(1, "w").b(2, "y").b(4, "MatMul");
  Pb graph;
  graph.m(1, node).b(2, "g");
  for (const Pb &t : initializers)
    graph.m(5, t);
  graph.m(11, Pb().b(1, "x"));
  Pb opset;
  opset.b(1, "").v(2, 17);
  Pb out;
  out.v(1, 8).b(2, producer).m(7, graph).m(8, opset);
  return out.bytes;
}

Status parseImage(const std::string &bytes, std::unique_ptr<OnnxFile> &out,
                  const std::string &origin = "img.onnx") {
  return OnnxFile::parse(bytes.data(), bytes.size(), origin, out);
}

/// The initializer's bytes as hex, or a description of why there are none.
std::string dataHex(const OnnxFile &file, const std::string &name) {
  const OnnxTensorInfo *t = file.find(name);
  if (!t)
    return "(missing)";
  if (!t->data)
    return "(null)";
  return hexBytes(t->data, t->byteSize);
}

bool inFile(const OnnxFile &file, const void *p) {
  const auto *b = static_cast<const unsigned char *>(file.fileData());
  const auto *q = static_cast<const unsigned char *>(p);
  return q >= b && q < b + file.fileSize();
}

//===----------------------------------------------------------------------===//
// --dump and --bind
//===----------------------------------------------------------------------===//

std::string shapeTuple(const std::vector<int64_t> &shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i)
    s += (i ? ", " : "") + std::to_string(shape[i]);
  if (shape.size() == 1)
    s += ",";
  return s + ")";
}

int dump(const std::string &path) {
  std::unique_ptr<OnnxFile> file;
  Status st = OnnxFile::open(path, file);
  if (!st) {
    std::fprintf(stderr, "%s\n", st.message.c_str());
    return 1;
  }
  std::printf("model ir_version=%" PRId64 " producer=%s initializers=%zu "
              "decoded=%" PRIu64 "\n",
              file->irVersion(), file->producerName().c_str(), file->size(),
              file->decodedBytes());
  for (const OnnxTensorInfo &t : file->initializers()) {
    std::string where =
        t.source == OnnxDataSource::External
            ? "external:" + t.location + "@" + std::to_string(t.offset)
            : std::string(onnxDataSourceName(t.source));
    for (char &c : where)
      if (c == ' ')
        c = '_';
    std::printf("initializer %s dtype=%s shape=%s elements=%" PRId64
                " bytes=%" PRIu64 " source=%s decoded=%d aligned=%d data=%s\n",
                t.name.c_str(), t.dtypeName().c_str(),
                shapeTuple(t.shape).c_str(), t.numElements, t.byteSize,
                where.c_str(), t.decoded ? 1 : 0, t.isAligned() ? 1 : 0,
                t.data ? hexBytes(t.data, t.byteSize).c_str() : "none");
  }
  return 0;
}

/// NAME:DTYPE:DIMS, split at the last two colons.
bool parseSpec(const std::string &text, TensorSpec &spec) {
  size_t second = text.rfind(':');
  if (second == std::string::npos || second == 0)
    return false;
  size_t first = text.rfind(':', second - 1);
  if (first == std::string::npos)
    return false;
  spec.name = text.substr(0, first);
  if (!parseDType(text.substr(first + 1, second - first - 1), spec.dtype))
    return false;
  spec.shape.clear();
  std::string dims = text.substr(second + 1);
  size_t pos = 0;
  while (pos < dims.size()) {
    size_t comma = dims.find(',', pos);
    if (comma == std::string::npos)
      comma = dims.size();
    spec.shape.push_back(std::atoll(dims.substr(pos, comma - pos).c_str()));
    pos = comma + 1;
  }
  return true;
}

int bindSpecs(const std::vector<std::string> &paths,
              const std::vector<std::string> &specs) {
  WeightSet weights;
  for (const std::string &p : paths) {
    if (Status st = weights.addCheckpoint(p); !st) {
      std::fprintf(stderr, "%s\n", st.message.c_str());
      return 1;
    }
  }
  for (const std::string &text : specs) {
    TensorSpec spec;
    if (!parseSpec(text, spec)) {
      std::fprintf(stderr, "bad input spec '%s'\n", text.c_str());
      return 2;
    }
    TensorView view;
    uint64_t before = weights.copiedBytes();
    if (Status st = weights.bind(spec, view); !st) {
      std::fprintf(stderr, "%s\n", st.message.c_str());
      return 1;
    }
    int64_t n = 1;
    for (int64_t d : view.shape)
      n *= d;
    uint64_t bytes = static_cast<uint64_t>(n) * dtypeSize(view.dtype);
    std::printf("bound %s dtype=%s shape=%s copied=%" PRIu64 " data=%s\n",
                spec.name.c_str(), dtypeName(view.dtype),
                shapeTuple(view.shape).c_str(), weights.copiedBytes() - before,
                hexBytes(view.data, bytes).c_str());
  }
  return 0;
}

//===----------------------------------------------------------------------===//
// Reading valid files
//===----------------------------------------------------------------------===//

void validChecks() {
  // Every kind of storage in one model.
  Pb unpacked = tensor("unpacked", 1, {3});
  for (float f : {1.5f, -2.0f, 1e-3f})
    unpacked.f32(4, floatBits(f));
  Pb split = tensor("split", 1, {3});
  split.b(4, floatBytes({1, 2})).f32(4, floatBits(3)); // packed, then single
  Pb i32 = tensor("i32", 6, {4});
  i32.b(5, packedVarints({-1, 2147483647, -2147483648LL, 0}));
  Pb i64 = tensor("i64", 7, {2, 2});
  i64.sv(7, -5).b(7, packedVarints({INT64_MIN, INT64_MAX})).sv(7, 1);
  Pb i8 = tensor("i8", 3, {3});
  i8.b(5, packedVarints({-128, 0, 127}));
  Pb u8 = tensor("u8", 2, {2});
  u8.v(5, 0).v(5, 255);
  Pb bools = tensor("bools", 9, {3});
  bools.b(5, packedVarints({1, 0, 1}));
  Pb i16 = tensor("i16", 5, {2});
  i16.b(5, packedVarints({-32768, 32767}));
  Pb f16 = tensor("f16", 10, {2});
  f16.b(5, packedVarints({floatToF16(1.0f), floatToF16(-0.5f)}));
  Pb bf16 = tensor("bf16", 16, {2});
  bf16.b(5, packedVarints({floatToBF16(3.0f), floatToBF16(-1e30f)}));
  Pb dbl = tensor("dbl", 11, {2});
  dbl.b(10, le(0x3ff0000000000000ull, 8) + le(0xc000000000000000ull, 8));
  Pb u32 = tensor("u32", 12, {2});
  u32.v(11, 0xffffffffu).v(11, 7);
  Pb u64 = tensor("u64", 13, {1});
  u64.v(11, 0xfedcba9876543210ull);
  Pb c64 = tensor("c64", 14, {1});
  c64.b(4, floatBytes({1, -1}));
  Pb i4 = tensor("i4", 22, {3}); // three elements in two values
  i4.b(5, packedVarints({0x21, 0x03}));
  Pb scalar = tensor("scalar", 1, {});
  scalar.b(9, floatBytes({42}));
  Pb empty = tensor("empty", 1, {0, 3});
  Pb str = tensor("str", 8, {2});
  str.b(6, "ab").b(6, "c");
  Pb future = tensor("future", 99, {2});
  future.b(9, "xyz");
  // Packed dims, fields in an unusual order and unknown fields of every
  // wire type.
  Pb odd;
  odd.b(8, "odd").raw(tag(100, 0) + varint(5)).raw(tag(101, 1) + le(0, 8));
  odd.b(9, floatBytes({7, 8, 9, 10, 11, 12}));
  odd.raw(tag(102, 5) + le(0, 4))
      .b(12, "a doc string")
      .b(1, packedVarints({2, 3}));
  odd.v(2, 1).v(14, 0);
  Pb raw = tensor("raw", 1, {2, 3});
  raw.b(9, floatBytes({0, 1, 2, 3, 4, 5}));
  Pb packed = tensor("packed", 1, {2});
  packed.b(4, floatBytes({-1, 0.25f}));
  std::vector<Pb> inits = {raw,   packed, unpacked, split, i32, i64,
                           i8,    u8,     bools,    i16,   f16, bf16,
                           dbl,   u32,    u64,      c64,   i4,  scalar,
                           empty, str,    future,   odd};
  std::string image = model(inits);
  std::unique_ptr<OnnxFile> file;
  Status st = parseImage(image, file);
  check(st.ok && file && file->size() == inits.size(),
        "parses initializers of every storage kind", statusText(st));
  if (!file)
    return;
  check(file->irVersion() == 8 && file->producerName() == "moe-test",
        "reads ir_version and producer_name");
  std::vector<std::string> names = file->names();
  check(names.size() == inits.size() && names[0] == "raw" &&
            names.back() == "odd",
        "lists initializers in graph order");

  const OnnxTensorInfo *r = file->find("raw");
  check(r && r->dataType == 1 && r->shape == std::vector<int64_t>{2, 3} &&
            r->numElements == 6 && r->byteSize == 24 &&
            r->source == OnnxDataSource::RawData && !r->decoded &&
            inFile(*file, r->data) &&
            dataHex(*file, "raw") ==
                hexBytes(floatBytes({0, 1, 2, 3, 4, 5}).data(), 24),
        "raw_data is a view of the file");
  const OnnxTensorInfo *pk = file->find("packed");
  check(pk && pk->source == OnnxDataSource::FloatData && !pk->decoded &&
            inFile(*file, pk->data) &&
            dataHex(*file, "packed") ==
                hexBytes(floatBytes({-1, 0.25f}).data(), 8),
        "packed float_data is a view of the file");
  const OnnxTensorInfo *un = file->find("unpacked");
  check(un && un->decoded && !inFile(*file, un->data) && un->isAligned() &&
            dataHex(*file, "unpacked") ==
                hexBytes(floatBytes({1.5f, -2.0f, 1e-3f}).data(), 12),
        "unpacked float_data is decoded");
  check(dataHex(*file, "split") == hexBytes(floatBytes({1, 2, 3}).data(), 12),
        "float_data in a packed run and a single value is concatenated");
  check(dataHex(*file, "i32") ==
            hexBytes((le(0xffffffffu, 4) + le(0x7fffffff, 4) +
                      le(0x80000000u, 4) + le(0, 4))
                         .data(),
                     16),
        "int32_data INT32 with 10-byte negative varints");
  check(dataHex(*file, "i64") ==
            hexBytes((le(static_cast<uint64_t>(-5), 8) +
                      le(0x8000000000000000ull, 8) +
                      le(0x7fffffffffffffffull, 8) + le(1, 8))
                         .data(),
                     32),
        "int64_data packed and unpacked, in order");
  check(dataHex(*file, "i8") == "80007f", "int32_data holds INT8");
  check(dataHex(*file, "u8") == "00ff", "int32_data holds UINT8");
  check(dataHex(*file, "bools") == "010001", "int32_data holds BOOL");
  check(dataHex(*file, "i16") == "0080ff7f", "int32_data holds INT16");
  check(dataHex(*file, "f16") ==
            hexBytes(
                (le(floatToF16(1.0f), 2) + le(floatToF16(-0.5f), 2)).data(), 4),
        "int32_data holds FLOAT16 bit patterns");
  check(dataHex(*file, "bf16") ==
            hexBytes(
                (le(floatToBF16(3.0f), 2) + le(floatToBF16(-1e30f), 2)).data(),
                4),
        "int32_data holds BFLOAT16 bit patterns");
  const OnnxTensorInfo *dbl2 = file->find("dbl");
  check(dbl2 && !dbl2->decoded &&
            dataHex(*file, "dbl") == "000000000000f03f00000000000000c0",
        "packed double_data is a view of the file");
  check(dataHex(*file, "u32") == "ffffffff07000000",
        "uint64_data holds UINT32");
  check(dataHex(*file, "u64") == "1032547698badcfe",
        "uint64_data holds UINT64");
  const OnnxTensorInfo *c = file->find("c64");
  check(c && c->byteSize == 8 && c->numElements == 1 &&
            dataHex(*file, "c64") == hexBytes(floatBytes({1, -1}).data(), 8),
        "COMPLEX64 takes two float_data values per element");
  const OnnxTensorInfo *four = file->find("i4");
  check(four && four->numElements == 3 && four->byteSize == 2 &&
            dataHex(*file, "i4") == "2103",
        "INT4 packs two elements to an int32_data value");
  const OnnxTensorInfo *sc = file->find("scalar");
  check(sc && sc->shape.empty() && sc->numElements == 1 && sc->byteSize == 4,
        "a scalar has one element");
  const OnnxTensorInfo *em = file->find("empty");
  check(em && em->numElements == 0 && em->byteSize == 0 && !em->data &&
            em->source == OnnxDataSource::None,
        "an empty initializer needs no data");
  const OnnxTensorInfo *s = file->find("str");
  DType dtype;
  check(s && !s->data && s->dtypeName() == "STRING" && !s->runtimeDType(dtype),
        "a STRING initializer is listed without data");
  const OnnxTensorInfo *fu = file->find("future");
  check(fu && !fu->data && fu->dtypeName() == "code 99",
        "an initializer of an unknown type is listed without data");
  const OnnxTensorInfo *o = file->find("odd");
  check(o && o->shape == std::vector<int64_t>{2, 3} &&
            dataHex(*file, "odd") ==
                hexBytes(floatBytes({7, 8, 9, 10, 11, 12}).data(), 24),
        "packed dims, fields out of order, unknown fields skipped");
  check(file->find("nope") == nullptr, "find() of an absent name");
  check(file->decodedBytes() > 0, "decoded bytes are counted");

  bool mapped = true;
  for (const auto &[code, want] :
       std::vector<std::pair<int32_t, int>>{{1, (int)DType::F32},
                                            {10, (int)DType::F16},
                                            {16, (int)DType::BF16},
                                            {6, (int)DType::I32},
                                            {7, (int)DType::I64},
                                            {2, (int)DType::U8},
                                            {9, (int)DType::Bool}})
    mapped = mapped && onnxToRuntimeDType(code, dtype) && (int)dtype == want;
  for (int32_t code : {3, 4, 5, 8, 11, 12, 13, 14, 15, 17, 21, 22, 0, 23})
    mapped = mapped && !onnxToRuntimeDType(code, dtype);
  check(mapped, "ONNX types map to runtime dtypes");
  uint64_t bytes = 0;
  check(onnxDataBytes(21, 5, bytes) && bytes == 3 &&
            onnxDataBytes(15, 2, bytes) && bytes == 32 &&
            !onnxDataBytes(8, 1, bytes) &&
            !onnxDataBytes(11, UINT64_MAX / 4, bytes),
        "onnxDataBytes: 4-bit, complex, string, overflow");
}

//===----------------------------------------------------------------------===//
// Rejecting malformed files
//===----------------------------------------------------------------------===//

void expectReject(const std::string &name, const std::string &image,
                  std::initializer_list<std::string> parts) {
  std::unique_ptr<OnnxFile> file;
  Status st = parseImage(image, file);
  check(messageMatches(st, "img.onnx: ", parts) && !file, "rejects " + name,
        statusText(st));
}

void malformedChecks() {
  Pb ok = tensor("w", 1, {2});
  ok.b(9, floatBytes({1, 2}));
  std::string good = model({ok});

  expectReject("an empty file", "", {"empty file, not an ONNX model"});
  expectReject("text", "hello, world\n", {"not an ONNX model"});
  expectReject("a protobuf without a graph", Pb().v(1, 8).b(2, "x").bytes,
               {"not an ONNX model: no graph (ModelProto field 7)"});
  expectReject("a group", Pb().v(1, 8).raw(tag(3, 3)).bytes,
               {"field 3 at byte 2", "groups are not supported"});
  expectReject("wire type 7", Pb().raw(tag(9, 7)).bytes,
               {"field 9 at byte 0 has the invalid wire type 7"});
  expectReject("field number 0", std::string("\x00\x01", 2),
               {"field number 0 at byte 0"});
  expectReject("a varint of 11 bytes",
               Pb().raw(tag(1, 0) + std::string(10, '\x80') + "\x01").bytes,
               {"varint at byte 1 is longer than 10 bytes"});
  expectReject("a varint beyond 64 bits",
               Pb().raw(tag(1, 0) + std::string(9, '\xff') + "\x02").bytes,
               {"varint at byte 1 overflows 64 bits"});
  expectReject("a tag beyond 32 bits", varint(1ull << 35) + varint(0),
               {"tag at byte 0 does not fit in 32 bits"});
  expectReject("a varint cut by the end of the file",
               Pb().raw("\x08\x80").bytes,
               {"truncated, or not an ONNX model", "varint at byte 1"});
  expectReject("a graph of the wrong wire type", Pb().v(7, 1).bytes,
               {"field 7 (graph) at byte 0 has wire type varint, expected "
                "length-delimited"});
  expectReject("two graphs", Pb().b(7, "").b(7, "").bytes,
               {"ModelProto has a second graph at byte 2"});
  // Cut in the middle of the raw_data of the second initializer (its name
  // comes first): the message names it.
  Pb big = tensor("big", 1, {64});
  big.b(9, std::string(256, '\x01'));
  std::string two = model({ok, big});
  expectReject("a truncated file", two.substr(0, two.size() - 150),
               {"truncated: the graph (ModelProto field 7 at byte",
                "bytes are left in the file; the file ends inside "
                "initializer 'big'"});
  // An initializer longer than the graph that holds it.
  Pb graph;
  graph.raw(tag(5, 2) + varint(50) + ok.bytes);
  expectReject("an initializer past the end of its graph",
               Pb().m(7, graph).bytes,
               {"graph (ModelProto field 7 at byte 0): field 5 at byte 2 is "
                "50 bytes long, past the end of the graph"});

  auto rejectTensor = [&](const std::string &name, const Pb &t,
                          std::initializer_list<std::string> parts) {
    expectReject(name, model({t}), parts);
  };
  Pb t;
  t = Pb();
  t.v(2, 1).b(9, floatBytes({1}));
  rejectTensor("an initializer without a name", t,
               {"initializer #0 (at byte", ") has no name (field 8)"});
  t = Pb();
  t.b(8, "").v(2, 1);
  rejectTensor("an empty name", t, {"initializer #0", "has an empty name"});
  expectReject("two initializers of one name", model({ok, ok}),
               {"two initializers named 'w' (#0 and #1)"});
  t = ok;
  t.b(8, "again");
  rejectTensor("a name given twice", t,
               {"initializer 'w': field 8 (name) at byte", "appears twice"});
  t = ok;
  t.b(9, floatBytes({1, 2}));
  rejectTensor("raw_data given twice", t,
               {"initializer 'w': field 9 (raw_data)", "appears twice"});
  t = Pb();
  t.b(8, "w").b(2, "x");
  rejectTensor("data_type of the wrong wire type", t,
               {"initializer 'w': field 2 (data_type) at byte",
                "has wire type length-delimited, expected varint"});
  t = tensor("w", 1, {2});
  t.b(3, Pb().v(1, 0).v(2, 2).bytes).b(9, floatBytes({1, 2}));
  rejectTensor("a segment", t,
               {"initializer 'w': segment (field 3) is not supported"});
  t = Pb();
  t.b(8, "w").v(1, 2).b(9, floatBytes({1, 2}));
  rejectTensor("no data_type", t, {"initializer 'w': no data_type (field 2)"});
  t = tensor("w", 0, {1});
  rejectTensor("data_type UNDEFINED", t,
               {"initializer 'w': data_type 0 (UNDEFINED) is not a data type"});
  t = tensor("w", -3, {1});
  rejectTensor("a negative data_type", t,
               {"initializer 'w': data_type -3 is not a data type"});
  t = tensor("w", 1, {2, -1});
  rejectTensor("a negative dimension", t,
               {"initializer 'w': dims[1] at byte", "is negative (-1)"});
  t = tensor("w", 1, {1ll << 40, 1ll << 40});
  rejectTensor("an element count beyond int64", t,
               {"initializer 'w': element count of dims [1099511627776, "
                "1099511627776] overflows int64"});
  t = tensor("w", 11, {1ll << 62});
  rejectTensor("a byte size beyond 64 bits", t,
               {"initializer 'w': byte size of DOUBLE dims "
                "[4611686018427387904] overflows"});
  t = tensor("w", 1, {3});
  t.b(9, floatBytes({1, 2}));
  rejectTensor("raw_data of the wrong size", t,
               {"initializer 'w': raw_data at byte",
                "is 8 bytes, FLOAT dims [3] need 12 bytes"});
  t = tensor("w", 1, {3});
  t.b(4, floatBytes({1, 2}));
  rejectTensor("float_data with too few values", t,
               {"initializer 'w': float_data has 2 values, FLOAT dims [3] "
                "need 3"});
  t = tensor("w", 1, {1});
  t.v(5, 1);
  rejectTensor(
      "int32_data of a FLOAT", t,
      {"initializer 'w': int32_data at byte",
       "cannot hold FLOAT elements (expected float_data or raw_data)"});
  t = tensor("w", 1, {1});
  t.b(9, floatBytes({1})).b(4, floatBytes({1}));
  rejectTensor("data in two fields", t,
               {"initializer 'w': data in both raw_data and float_data"});
  t = tensor("w", 10, {3});
  rejectTensor("no data at all", t,
               {"initializer 'w': no data for its 3 elements (no raw_data, "
                "int32_data or external data)"});
  t = tensor("w", 3, {2});
  t.b(5, packedVarints({1, 200}));
  rejectTensor("an INT8 out of range", t,
               {"initializer 'w': int32_data[1] at byte",
                "is 200, out of the range [-128, 127] of INT8"});
  t = tensor("w", 9, {1});
  t.v(5, 2);
  rejectTensor("a BOOL other than 0 or 1", t,
               {"int32_data[0]", "is 2, out of the range [0, 1] of BOOL"});
  t = tensor("w", 6, {1});
  t.v(5, 1ull << 40);
  rejectTensor("an int32_data value beyond int32", t,
               {"int32_data[0]", "is 1099511627776, out of the int32 range"});
  t = tensor("w", 12, {1});
  t.v(11, 1ull << 32);
  rejectTensor("a UINT32 out of range", t,
               {"uint64_data[0]", "is 4294967296, out of the range of UINT32"});
  t = tensor("w", 1, {1});
  t.b(4, "abcde");
  rejectTensor("packed float_data of a partial value", t,
               {"initializer 'w': packed float_data at byte",
                "is 5 bytes, not a multiple of 4"});
  t = tensor("w", 7, {1});
  t.b(7, "\x81");
  rejectTensor("packed int64_data cut inside a varint", t,
               {"packed int64_data at byte", "ends inside a varint"});
  t = tensor("w", 7, {1});
  t.b(7, std::string(10, '\xff') + "\x01");
  rejectTensor("packed int64_data with a varint of 11 bytes", t,
               {"initializer 'w': varint at byte", "is longer than 10 bytes"});
  t = tensor("w", 1, {1});
  t.v(4, 1);
  rejectTensor("float_data of the wrong wire type", t,
               {"field 4 (float_data) at byte",
                "has wire type varint, expected fixed32 or length-delimited "
                "(packed)"});
  t = ok;
  t.v(14, 2);
  rejectTensor("an unknown data_location", t,
               {"initializer 'w': data_location 2 is neither DEFAULT (0) nor "
                "EXTERNAL (1)"});
  t = ok;
  t.m(13, Pb().b(1, "location").b(2, "w.bin"));
  rejectTensor("external_data without data_location EXTERNAL", t,
               {"initializer 'w': external_data at byte",
                "is present but data_location is not EXTERNAL"});
  t = ok;
  t.v(14, 1).m(13, Pb().b(1, "location").b(2, "w.bin"));
  rejectTensor("data_location EXTERNAL with raw_data", t,
               {"initializer 'w': data_location is EXTERNAL but raw_data at "
                "byte",
                "is present too"});
  t = tensor("w", 1, {2});
  t.v(14, 1);
  rejectTensor("data_location EXTERNAL without a location", t,
               {"initializer 'w': data_location is EXTERNAL but external_data "
                "has no \"location\""});
  auto external =
      [](std::initializer_list<std::pair<std::string, std::string>> entries) {
        Pb e = tensor("w", 1, {2});
        for (const auto &[key, value] : entries)
          e.m(13, Pb().b(1, key).b(2, value));
        e.v(14, 1);
        return e;
      };
  rejectTensor("an external location with '..'",
               external({{"location", "../w.bin"}}),
               {"initializer 'w': external data location '../w.bin' is not a "
                "relative path inside the model's directory"});
  rejectTensor("an external location with an inner '..'",
               external({{"location", "a/../../w.bin"}}),
               {"external data location 'a/../../w.bin' is not a relative"});
  rejectTensor("an absolute external location",
               external({{"location", "/etc/passwd"}}),
               {"external data location '/etc/passwd' is not a relative"});
  rejectTensor("an external location with a NUL byte",
               external({{"location", std::string("w\0.bin", 6)}}),
               {"external data location 'w\\x00.bin' is not a relative"});
  rejectTensor("an unknown external_data key",
               external({{"location", "w.bin"}, {"colour", "red"}}),
               {"initializer 'w': external_data has the unknown key 'colour'"});
  rejectTensor("an external_data key given twice",
               external({{"location", "w.bin"}, {"location", "v.bin"}}),
               {"external_data has the key 'location' twice"});
  rejectTensor("a bad external offset",
               external({{"location", "w.bin"}, {"offset", "-8"}}),
               {"initializer 'w': external_data offset '-8' is not a "
                "non-negative decimal integer"});
  rejectTensor(
      "an external length beyond 64 bits",
      external({{"location", "w.bin"}, {"length", "18446744073709551616"}}),
      {"external_data length '18446744073709551616' is not a "
       "non-negative decimal integer"});
  rejectTensor("an external length that does not match",
               external({{"location", "w.bin"}, {"length", "4"}}),
               {"initializer 'w': external_data length 4 does not match FLOAT "
                "dims [2] need 8 bytes"});
  Pb noKey = tensor("w", 1, {2});
  noKey.m(13, Pb().b(2, "w.bin")).v(14, 1);
  rejectTensor("an external_data entry without a key", noKey,
               {"initializer 'w': external_data[0] has no key"});
}

//===----------------------------------------------------------------------===//
// External data files
//===----------------------------------------------------------------------===//

Pb externalTensor(const std::string &name, std::initializer_list<int64_t> dims,
                  const std::string &location, int64_t offset, int64_t length) {
  Pb t = tensor(name, 1, dims);
  t.m(13, Pb().b(1, "location").b(2, location));
  if (offset >= 0)
    t.m(13, Pb().b(1, "offset").b(2, std::to_string(offset)));
  if (length >= 0)
    t.m(13, Pb().b(1, "length").b(2, std::to_string(length)));
  t.m(13, Pb().b(1, "checksum").b(2, "0123"));
  t.v(14, 1);
  return t;
}

void externalChecks(const std::string &dir) {
  std::string data = floatBytes({0, 1, 2, 3, 4, 5, 6, 7}); // 32 bytes
  fs::create_directories(dir + "/sub");
  writeFile(dir + "/w.bin", data);
  writeFile(dir + "/sub/v.bin", std::string(3, '\0') + floatBytes({9, 10}));
  std::string path = dir + "/ext.onnx";
  writeFile(path, model({externalTensor("a", {2, 2}, "w.bin", 0, 16),
                         externalTensor("b", {4}, "w.bin", 16, 16),
                         externalTensor("c", {2}, "sub/v.bin", 3, -1),
                         externalTensor("d", {0}, "w.bin", 32, 0)}));
  std::unique_ptr<OnnxFile> file;
  Status st = OnnxFile::open(path, file);
  check(st.ok && file && file->size() == 4, "opens external data",
        statusText(st));
  if (!file)
    return;
  const OnnxTensorInfo *a = file->find("a"), *b = file->find("b"),
                       *c = file->find("c"), *d = file->find("d");
  check(a && b && a->source == OnnxDataSource::External &&
            a->location == "w.bin" && b->offset == 16 && !a->decoded &&
            !inFile(*file, a->data) && a->region == b->region &&
            static_cast<const char *>(b->data) ==
                static_cast<const char *>(a->data) + 16 &&
            a->isAligned() &&
            dataHex(*file, "a") == hexBytes(data.data(), 16) &&
            dataHex(*file, "b") == hexBytes(data.data() + 16, 16),
        "external data are views of one mapping of the data file");
  check(c && c->region != a->region && !c->isAligned() &&
            dataHex(*file, "c") == hexBytes(floatBytes({9, 10}).data(), 8),
        "external data in a subdirectory, at an unaligned offset, no length");
  check(d && d->byteSize == 0 && !d->data, "empty external data");

  auto reject = [&](const std::string &name, const Pb &t,
                    std::initializer_list<std::string> parts) {
    std::string p = dir + "/bad.onnx";
    writeFile(p, model({t}));
    std::unique_ptr<OnnxFile> f;
    Status s = OnnxFile::open(p, f);
    check(messageMatches(s, p + ": ", parts) && !f, "rejects " + name,
          statusText(s));
  };
  reject("a missing external data file",
         externalTensor("w", {2}, "missing.bin", 0, 8),
         {"initializer 'w': external data file 'missing.bin' (" + dir +
          "/missing.bin): cannot open: No such file or directory"});
  reject("a short external data file",
         externalTensor("w", {8}, "w.bin", 16, 32),
         {"initializer 'w': external data file 'w.bin' is 32 bytes, needs "
          "offset 16 + length 32"});
  reject(
      "an external offset past the end",
      externalTensor("w", {0}, "w.bin", 33, 0),
      {"external data file 'w.bin' is 32 bytes, needs offset 33 + length 0"});
  reject("an external range without a length that does not match",
         externalTensor("w", {2}, "w.bin", 4, -1),
         {"initializer 'w': external data file 'w.bin' holds 28 bytes after "
          "offset 4 (no length given), FLOAT dims [2] need 8 bytes"});
  reject("an external location that is a directory",
         externalTensor("w", {2}, "sub", 0, 8),
         {"external data file 'sub' (" + dir + "/sub): is a directory"});
  // A path outside: the file exists but must not be reached.
  writeFile(fs::path(dir).parent_path().string() + "/outside.bin", data);
  reject("an external location outside the model's directory",
         externalTensor("w", {2}, "../outside.bin", 0, 8),
         {"external data location '../outside.bin' is not a relative path"});

  // open() errors.
  std::unique_ptr<OnnxFile> f;
  st = OnnxFile::open(dir + "/none.onnx", f);
  check(messageMatches(st, dir + "/none.onnx: ",
                       {"cannot open: No such file or directory"}),
        "open() of a missing file", statusText(st));
  st = OnnxFile::open(dir, f);
  check(messageMatches(st, dir + ": ", {"is a directory"}),
        "open() of a directory", statusText(st));
  writeFile(dir + "/empty.onnx", "");
  st = OnnxFile::open(dir + "/empty.onnx", f);
  check(messageMatches(
            st, dir + "/empty.onnx: ", {"empty file, not an ONNX model"}),
        "open() of an empty file", statusText(st));
}

//===----------------------------------------------------------------------===//
// WeightSet over ONNX files
//===----------------------------------------------------------------------===//

float floatAt(const TensorView &view, int64_t i) {
  float v;
  std::memcpy(&v, static_cast<const unsigned char *>(view.data) + 4 * i, 4);
  return v;
}

Pb rawF32(const std::string &name, std::initializer_list<int64_t> dims,
          float start) {
  Pb t = tensor(name, 1, dims);
  int64_t n = 1;
  for (int64_t d : dims)
    n *= d;
  std::string bytes;
  for (int64_t i = 0; i < n; ++i)
    bytes += le(floatBits(start + static_cast<float>(i)), 4);
  t.b(9, bytes);
  return t;
}

void weightChecks(const std::string &dir) {
  // raw_data inside the protobuf: a producer name of the right length puts
  // the first raw_data at an odd offset.
  std::vector<Pb> inits = {
      rawF32("e.0.w", {2, 3}, 0), rawF32("e.1.w", {2, 3}, 100),
      rawF32("e.2.w", {2, 3}, 200), rawF32("plain", {4}, 7)};
  Pb d = tensor("d", 11, {1});
  d.b(9, le(0, 8));
  inits.push_back(d);
  Pb ids = tensor("ids", 7, {3});
  ids.b(7, packedVarints({5, -6, 7}));
  inits.push_back(ids);
  std::string path = dir + "/weights.onnx";
  bool unaligned = false;
  for (int pad = 0; pad < 4 && !unaligned; ++pad) {
    writeFile(path, model(inits, "p" + std::string(pad, 'x')));
    std::unique_ptr<OnnxFile> f;
    unaligned = OnnxFile::open(path, f).ok && !f->find("plain")->isAligned();
  }
  check(unaligned, "test setup: raw_data of 'plain' is unaligned");

  WeightSet w;
  Status st = w.addCheckpoint(path);
  check(st.ok && !w.empty(), "WeightSet opens an .onnx file", statusText(st));
  check(w.provides(TensorSpec{"plain", DType::F32, {4}}) &&
            w.provides(TensorSpec{"e.*.w", DType::F32, {3, 2, 3}}) &&
            !w.provides(TensorSpec{"nothing", DType::F32, {1}}),
        "provides() over an ONNX model");
  TensorView view;
  st = w.bind(TensorSpec{"plain", DType::F32, {4}}, view);
  check(st && floatAt(view, 0) == 7 && floatAt(view, 3) == 10 &&
            reinterpret_cast<uintptr_t>(view.data) % 4 == 0 &&
            w.copiedBytes() == 16,
        "unaligned raw_data is copied into aligned memory", statusText(st));
  st = w.bind(TensorSpec{"e.*.w", DType::F32, {3, 2, 3}}, view);
  check(st && floatAt(view, 0) == 0 && floatAt(view, 6) == 100 &&
            floatAt(view, 17) == 205 && w.copiedBytes() == 16 + 72,
        "stacked initializers in raw_data are gathered", statusText(st));
  st = w.bind(TensorSpec{"e.*.w", DType::BF16, {3, 2, 3}}, view);
  check(st && view.dtype == DType::BF16 &&
            static_cast<const uint16_t *>(view.data)[17] == floatToBF16(205),
        "stacked initializers converted to the model's bf16", statusText(st));
  st = w.bind(TensorSpec{"ids", DType::I64, {3}}, view);
  check(st && static_cast<const int64_t *>(view.data)[1] == -6,
        "decoded int64_data is bound in place", statusText(st));
  st = w.bind(TensorSpec{"d", DType::F32, {1}}, view);
  check(messageMatches(st, path + ": ",
                       {"initializer 'd' has dtype DOUBLE, which the model "
                        "cannot take"}),
        "an initializer of a type the runtime lacks is named", statusText(st));
  st = w.bind(TensorSpec{"ids", DType::I32, {3}}, view);
  check(
      messageMatches(st, path + ": ",
                     {"initializer 'ids' has dtype i64, the model takes i32"}),
      "an integer initializer of another dtype is named", statusText(st));
  st = w.bind(TensorSpec{"e.*.w", DType::F32, {4, 2, 3}}, view);
  check(messageMatches(st, path + ": ",
                       {"no tensor 'e.3.w' (element 3 of 'e.*.w')"}),
        "a missing expert is named", statusText(st));
  st = w.bind(TensorSpec{"e.*.w", DType::F32, {3, 3, 2}}, view);
  check(
      messageMatches(st, path + ": ",
                     {"initializer 'e.0.w' has shape [2, 3], expected [3, 2]"}),
      "an expert of the wrong shape is named", statusText(st));
  st = w.bind(TensorSpec{"plain", DType::F32, {5}}, view);
  check(!st.ok && contains(st.message, path + ": ") &&
            !contains(st.message, "\n"),
        "a shape mismatch names the file", statusText(st));

  // Experts back to back in an external data file: bound in place.
  std::string data;
  for (int e = 0; e < 3; ++e)
    for (int i = 0; i < 6; ++i)
      data += le(floatBits(static_cast<float>(100 * e + i)), 4);
  writeFile(dir + "/experts.bin", data);
  std::string ext = dir + "/experts.onnx";
  writeFile(ext, model({externalTensor("x.0.w", {2, 3}, "experts.bin", 0, 24),
                        externalTensor("x.1.w", {2, 3}, "experts.bin", 24, 24),
                        externalTensor("x.2.w", {2, 3}, "experts.bin", 48, 24),
                        rawF32("plain", {4}, 1000)}));
  WeightSet both;
  st = both.addCheckpoint(ext);
  Status st2 = both.addCheckpoint(path);
  check(st && st2, "WeightSet opens two ONNX models",
        statusText(st) + "; " + statusText(st2));
  st = both.bind(TensorSpec{"x.*.w", DType::F32, {3, 2, 3}}, view);
  check(st && both.copiedBytes() == 0 && floatAt(view, 17) == 205,
        "stacked external initializers back to back are bound in place",
        statusText(st));
  st = both.bind(TensorSpec{"plain", DType::F32, {4}}, view);
  check(st && floatAt(view, 0) == 1000, "the checkpoint added first wins",
        statusText(st));
  st = both.bind(TensorSpec{"absent", DType::F32, {4}}, view);
  check(messageMatches(st, "the weight checkpoints: ", {"no tensor 'absent'"}),
        "a missing tensor over two checkpoints", statusText(st));

  // A bad .onnx file fails addCheckpoint with its path.
  writeFile(dir + "/text.onnx", "not protobuf at all\n");
  WeightSet bad;
  st = bad.addCheckpoint(dir + "/text.onnx");
  check(messageMatches(st, dir + "/text.onnx: ", {"not an ONNX model"}) &&
            bad.empty(),
        "addCheckpoint rejects a bad .onnx file", statusText(st));
}

int runAll(const std::string &dir) {
  validChecks();
  malformedChecks();
  externalChecks(dir + "/external");
  weightChecks(dir);
  if (numFailed) {
    std::printf("moe-onnx-file-unittests: %d of %d checks FAILED\n", numFailed,
                numChecks);
    return 1;
  }
  std::printf("moe-onnx-file-unittests: all %d checks passed\n", numChecks);
  return 0;
}

} // namespace

int main(int argc, char **argv) {
  if (argc == 3 && std::strcmp(argv[1], "--dump") == 0)
    return dump(argv[2]);
  if (argc >= 2 && std::strcmp(argv[1], "--bind") == 0) {
    std::vector<std::string> paths, specs;
    bool inSpecs = false;
    for (int i = 2; i < argc; ++i) {
      if (!inSpecs && std::strcmp(argv[i], "--") == 0)
        inSpecs = true;
      else
        (inSpecs ? specs : paths).push_back(argv[i]);
    }
    return bindSpecs(paths, specs);
  }
  if (argc == 2 && argv[1][0] != '-')
    return runAll(argv[1]);
  std::fprintf(stderr,
               "usage: %s SCRATCH_DIR | --dump PATH | --bind PATH... -- "
               "NAME:DTYPE:DIMS...\n",
               argv[0]);
  return 2;
}
