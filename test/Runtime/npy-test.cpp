//===- npy-test.cpp - Unit tests of the runtime's .npy support ------------===//
//
// moe-runtime-unittests SCRATCH_DIR
//     Runs every check (round trips, bf16/f16 conversions, malformed files),
//     printing one line per check; exits 1 if any failed.
// moe-runtime-unittests --read FILE [--bf16]
//     Reads FILE and prints "dtype=... shape=(...) elements=N checksum=C
//     first=X last=Y" (see checksum() and formatElement()).
// moe-runtime-unittests --write-test FILE DTYPE [DIM...]
//     Writes a deterministic array (see patternArray()) of the given dtype
//     and shape to FILE.
//
// Plain C++17, no exceptions, no MLIR/LLVM, like the runtime itself.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Runtime/Npy.h"

#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <string>
#include <system_error>
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

std::string hex16(uint16_t v) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "0x%04x", v);
  return buf;
}

std::string hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "0x%08x", v);
  return buf;
}

uint32_t bitsOf(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return u;
}

float floatOf(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

//===----------------------------------------------------------------------===//
// Helpers shared by the modes
//===----------------------------------------------------------------------===//

std::string shapeString(const std::vector<int64_t> &shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i)
      s += ", ";
    s += std::to_string(shape[i]);
  }
  if (shape.size() == 1)
    s += ",";
  return s + ")";
}

/// Order-sensitive checksum of the raw data bytes:
/// sum over i of (i + 1) * (byte[i] + 1), modulo 2^64.
uint64_t checksum(const std::vector<uint8_t> &data) {
  uint64_t sum = 0;
  for (size_t i = 0; i < data.size(); ++i)
    sum += static_cast<uint64_t>(i + 1) * (static_cast<uint64_t>(data[i]) + 1);
  return sum;
}

template <typename T> T load(const Array &a, int64_t i) {
  T v;
  std::memcpy(&v, a.data.data() + i * sizeof(T), sizeof(T));
  return v;
}

/// Element i as text: floats with "%.9g" (exact for f16 and bf16, and what
/// Python's '%.9g' % float(x) prints), integers and bools as integers.
std::string formatElement(const Array &a, int64_t i) {
  char buf[64];
  switch (a.dtype) {
  case DType::F32:
    std::snprintf(buf, sizeof(buf), "%.9g",
                  static_cast<double>(load<float>(a, i)));
    break;
  case DType::F16:
    std::snprintf(buf, sizeof(buf), "%.9g",
                  static_cast<double>(f16ToFloat(load<uint16_t>(a, i))));
    break;
  case DType::BF16:
    std::snprintf(buf, sizeof(buf), "%.9g",
                  static_cast<double>(bf16ToFloat(load<uint16_t>(a, i))));
    break;
  case DType::I32:
    std::snprintf(buf, sizeof(buf), "%" PRId32, load<int32_t>(a, i));
    break;
  case DType::I64:
    std::snprintf(buf, sizeof(buf), "%" PRId64, load<int64_t>(a, i));
    break;
  case DType::U8:
  case DType::Bool:
    std::snprintf(buf, sizeof(buf), "%u", static_cast<unsigned>(a.data[i]));
    break;
  }
  return buf;
}

bool parseDType(const std::string &name, DType &dtype) {
  for (DType d : {DType::F32, DType::F16, DType::BF16, DType::I32, DType::I64,
                  DType::U8, DType::Bool}) {
    if (name == dtypeName(d)) {
      dtype = d;
      return true;
    }
  }
  return false;
}

template <typename T> void store(Array &a, int64_t i, T v) {
  std::memcpy(a.data.data() + i * sizeof(T), &v, sizeof(T));
}

/// The array --write-test writes; npy.test recomputes it with NumPy:
///   f32:  (i % 1000) * 0.25 - 100     f16: (i % 200) * 0.5 - 50
///   bf16: (i % 100) * 0.5 - 25        i32: i * 1000 - 7
///   i64:  i * 2^40 - 5                u8:  (i * 7) % 256
///   bool: i % 3 == 0
Array patternArray(DType dtype, const std::vector<int64_t> &shape) {
  Array a;
  a.dtype = dtype;
  a.shape = shape;
  int64_t n = a.numElements();
  a.data.assign(static_cast<size_t>(n) * dtypeSize(dtype), 0);
  for (int64_t i = 0; i < n; ++i) {
    switch (dtype) {
    case DType::F32:
      store(a, i, static_cast<float>(i % 1000) * 0.25f - 100.0f);
      break;
    case DType::F16:
      store(a, i, floatToF16(static_cast<float>(i % 200) * 0.5f - 50.0f));
      break;
    case DType::BF16:
      store(a, i, floatToBF16(static_cast<float>(i % 100) * 0.5f - 25.0f));
      break;
    case DType::I32:
      store(a, i, static_cast<int32_t>(i * 1000 - 7));
      break;
    case DType::I64:
      store(a, i, static_cast<int64_t>(i * (int64_t(1) << 40) - 5));
      break;
    case DType::U8:
      a.data[i] = static_cast<uint8_t>((i * 7) % 256);
      break;
    case DType::Bool:
      a.data[i] = i % 3 == 0 ? 1 : 0;
      break;
    }
  }
  return a;
}

//===----------------------------------------------------------------------===//
// --read and --write-test
//===----------------------------------------------------------------------===//

int readMode(const std::string &path, bool bf16) {
  Array a;
  Status s = readNpy(path, a, bf16);
  if (!s.ok) {
    std::fprintf(stderr, "error: %s\n", s.message.c_str());
    return 1;
  }
  int64_t n = a.numElements();
  std::printf("dtype=%s shape=%s elements=%" PRId64 " checksum=%" PRIu64
              " first=%s last=%s\n",
              dtypeName(a.dtype), shapeString(a.shape).c_str(), n,
              checksum(a.data), n ? formatElement(a, 0).c_str() : "none",
              n ? formatElement(a, n - 1).c_str() : "none");
  return 0;
}

int writeTestMode(int argc, char **argv) {
  // argv: prog --write-test FILE DTYPE [DIM...]
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s --write-test FILE DTYPE [DIM...]\n",
                 argv[0]);
    return 2;
  }
  DType dtype;
  if (!parseDType(argv[3], dtype)) {
    std::fprintf(stderr, "error: unknown dtype '%s'\n", argv[3]);
    return 2;
  }
  std::vector<int64_t> shape;
  for (int i = 4; i < argc; ++i) {
    char *end = nullptr;
    long long d = std::strtoll(argv[i], &end, 10);
    if (!*argv[i] || *end || d < 0 || d > (int64_t(1) << 32)) {
      std::fprintf(stderr, "error: bad dimension '%s'\n", argv[i]);
      return 2;
    }
    shape.push_back(d);
  }
  Array a = patternArray(dtype, shape);
  Status s = writeNpy(argv[2], a);
  if (!s.ok) {
    std::fprintf(stderr, "error: %s\n", s.message.c_str());
    return 1;
  }
  std::printf("wrote %s %s to %s\n", dtypeName(dtype),
              shapeString(shape).c_str(), argv[2]);
  return 0;
}

//===----------------------------------------------------------------------===//
// Unit checks: files
//===----------------------------------------------------------------------===//

std::string readFileBytes(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in),
                     std::istreambuf_iterator<char>());
}

bool writeFileBytes(const std::string &path, const std::string &bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return static_cast<bool>(out);
}

/// A .npy file: magic, version, header length (2 bytes for 1.0, 4 otherwise;
/// `declaredLen` overrides the real length), header, data.
std::string npyBytes(const std::string &header, const std::string &data,
                     int major = 1, int64_t declaredLen = -1) {
  std::string s("\x93NUMPY", 6);
  s += static_cast<char>(major);
  s += '\0';
  uint64_t len =
      declaredLen >= 0 ? static_cast<uint64_t>(declaredLen) : header.size();
  int lenBytes = major == 1 ? 2 : 4;
  for (int i = 0; i < lenBytes; ++i)
    s += static_cast<char>((len >> (8 * i)) & 0xff);
  return s + header + data;
}

std::string dictHeader(const std::string &descr, const std::string &fortran,
                       const std::string &shape) {
  return "{'descr': " + descr + ", 'fortran_order': " + fortran +
         ", 'shape': " + shape + ", }\n";
}

/// Deterministic pseudo-random contents (bools are 0 or 1).
Array randomArray(DType dtype, const std::vector<int64_t> &shape,
                  uint32_t seed) {
  Array a;
  a.dtype = dtype;
  a.shape = shape;
  a.data.resize(static_cast<size_t>(a.numElements()) * dtypeSize(dtype));
  uint32_t x = seed * 2654435761u + 12345u;
  for (uint8_t &b : a.data) {
    x = x * 1664525u + 1013904223u;
    b = static_cast<uint8_t>(x >> 24);
    if (dtype == DType::Bool)
      b &= 1;
  }
  return a;
}

bool noTempFiles(const std::string &dir) {
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end;
       it.increment(ec))
    if (it->path().filename().string().find(".tmp-") != std::string::npos)
      return false;
  return !ec;
}

void roundTripChecks(const std::string &dir) {
  const DType dtypes[] = {DType::F32, DType::F16, DType::BF16, DType::I32,
                          DType::I64, DType::U8,  DType::Bool};
  const std::vector<std::vector<int64_t>> shapes = {
      {}, {5}, {3, 4}, {2, 3, 5}, {2, 1, 3, 2}, {0}, {2, 0, 3}, {100003}};
  uint32_t seed = 1;
  for (DType dtype : dtypes) {
    for (const auto &shape : shapes) {
      std::string name = std::string("round trip ") + dtypeName(dtype) + " " +
                         shapeString(shape) + " (rank " +
                         std::to_string(shape.size()) + ")";
      std::string path =
          dir + "/rt-" + dtypeName(dtype) + "-" + std::to_string(seed) + ".npy";
      Array a = randomArray(dtype, shape, seed++);
      Status ws = writeNpy(path, a);
      if (!ws.ok) {
        check(false, name, "write: " + ws.message);
        continue;
      }
      Array b;
      Status rs = readNpy(path, b, dtype == DType::BF16);
      if (!rs.ok) {
        check(false, name, "read: " + rs.message);
        continue;
      }
      std::error_code ec;
      uintmax_t size = fs::file_size(path, ec);
      bool aligned =
          !ec && size >= a.data.size() && (size - a.data.size()) % 64 == 0;
      bool same = b.dtype == a.dtype && b.shape == a.shape && b.data == a.data;
      check(same && aligned, name,
            !same ? "read back differs"
                  : "header not padded to 64 bytes (file size " +
                        std::to_string(size) + ")");
    }
  }
  check(noTempFiles(dir), "writeNpy leaves no temporary files behind");

  // Byte-identical to np.save(np.zeros((2, 3), np.float32)).
  {
    Array a;
    a.dtype = DType::F32;
    a.shape = {2, 3};
    a.data.assign(24, 0);
    std::string path = dir + "/numpy-identical.npy";
    Status ws = writeNpy(path, a);
    std::string expectedHeader =
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
    expectedHeader.append(118 - 1 - expectedHeader.size(), ' ');
    expectedHeader += '\n';
    std::string expected = npyBytes(expectedHeader, std::string(24, '\0'), 1);
    check(ws.ok && readFileBytes(path) == expected,
          "writeNpy output is byte-identical to np.save (f32 (2, 3))");
  }
  // A bf16 file says '<u2' and is rejected unless asked to read bf16.
  {
    std::string path = dir + "/bf16.npy";
    Array a = randomArray(DType::BF16, {4}, 99);
    Status ws = writeNpy(path, a);
    std::string bytes = readFileBytes(path);
    check(ws.ok && bytes.find("'descr': '<u2'") != std::string::npos,
          "bf16 is written with descr '<u2'");
    Array b;
    Status rs = readNpy(path, b);
    check(!rs.ok &&
              rs.message.find("unsupported dtype '<u2'") != std::string::npos,
          "'<u2' without u16AsBF16 is an unsupported dtype", rs.message);
  }
  // Overwriting an existing file works.
  {
    std::string path = dir + "/overwrite.npy";
    Array a = randomArray(DType::I32, {7}, 5),
          b = randomArray(DType::U8, {3}, 6);
    Array c;
    bool ok = writeNpy(path, a).ok && writeNpy(path, b).ok &&
              readNpy(path, c).ok && c.dtype == DType::U8 && c.data == b.data;
    check(ok, "writeNpy replaces an existing file");
  }
}

/// Files NumPy (or other writers) may produce that must be read.
void validVariantChecks(const std::string &dir) {
  std::string data6(24, '\0');
  for (int i = 0; i < 6; ++i) {
    float f = static_cast<float>(i) + 0.5f;
    std::memcpy(&data6[i * 4], &f, 4);
  }
  struct Case {
    const char *name;
    std::string bytes;
  };
  std::string header = dictHeader("'<f4'", "False", "(2, 3)");
  const Case cases[] = {
      {"reads version 2.0", npyBytes(header, data6, 2)},
      {"reads version 3.0", npyBytes(header, data6, 3)},
      {"reads an unpadded header without trailing comma or newline",
       npyBytes("{'descr':'<f4','fortran_order':False,'shape':(2,3)}", data6)},
      {"reads double quotes, keys in any order and extra whitespace",
       npyBytes("{ \"shape\" : ( 2 , 3 ) ,\n \"descr\" : \"<f4\" , "
                "\"fortran_order\" : False }   \n",
                data6)},
      {"reads Python 2 long dimensions (2L, 3L)",
       npyBytes(dictHeader("'<f4'", "False", "(2L, 3L)"), data6)},
  };
  for (const Case &c : cases) {
    std::string path = dir + "/variant.npy";
    writeFileBytes(path, c.bytes);
    Array a;
    Status s = readNpy(path, a);
    bool ok = s.ok && a.dtype == DType::F32 &&
              a.shape == std::vector<int64_t>{2, 3} &&
              a.data == std::vector<uint8_t>(data6.begin(), data6.end());
    check(ok, c.name, s.message);
  }
  // '<u2' read as bf16 when asked.
  {
    std::string path = dir + "/u2.npy";
    std::string data("\x80\x3f\xc0\x7f", 4); // 1.0, NaN
    writeFileBytes(path, npyBytes(dictHeader("'<u2'", "False", "(2,)"), data));
    Array a;
    Status s = readNpy(path, a, /*u16AsBF16=*/true);
    check(s.ok && a.dtype == DType::BF16 &&
              bf16ToFloat(load<uint16_t>(a, 0)) == 1.0f &&
              std::isnan(bf16ToFloat(load<uint16_t>(a, 1))),
          "'<u2' with u16AsBF16 reads as bf16", s.message);
  }
  // Every supported descr maps to its dtype, incl. the 1-byte '<u1'/'|b1'.
  {
    struct D {
      const char *descr;
      DType dtype;
    };
    const D ds[] = {{"'<f4'", DType::F32}, {"'<f2'", DType::F16},
                    {"'<i4'", DType::I32}, {"'<i8'", DType::I64},
                    {"'|u1'", DType::U8},  {"'|b1'", DType::Bool},
                    {"'<u1'", DType::U8}};
    bool ok = true;
    std::string detail;
    for (const D &d : ds) {
      std::string path = dir + "/descr.npy";
      writeFileBytes(path, npyBytes(dictHeader(d.descr, "False", "(3,)"),
                                    std::string(3 * dtypeSize(d.dtype), '\1')));
      Array a;
      Status s = readNpy(path, a);
      if (!s.ok || a.dtype != d.dtype) {
        ok = false;
        detail += std::string(d.descr) + " " + s.message + "; ";
      }
    }
    check(ok, "every supported descr maps to its dtype", detail);
  }
}

/// A malformed file must fail with a one-line message that names the file
/// and contains `expect`, and leave the output array untouched.
void expectReadError(const std::string &name, const std::string &path,
                     const std::string &expect, bool u16AsBF16 = false) {
  Array out;
  out.dtype = DType::I64;
  out.shape = {1};
  out.data.assign(8, 0xab);
  Status s = readNpy(path, out, u16AsBF16);
  bool ok = !s.ok && s.message.find(path) != std::string::npos &&
            s.message.find(expect) != std::string::npos &&
            s.message.find('\n') == std::string::npos &&
            out.dtype == DType::I64 && out.shape == std::vector<int64_t>{1} &&
            out.data == std::vector<uint8_t>(8, 0xab);
  check(ok, "rejects " + name + " [" + s.message + "]",
        s.ok ? "read succeeded"
             : "expected a message containing '" + expect + "'");
}

void malformedChecks(const std::string &dir) {
  int counter = 0;
  auto file = [&](const std::string &bytes) {
    std::string path = dir + "/bad-" + std::to_string(counter++) + ".npy";
    writeFileBytes(path, bytes);
    return path;
  };
  std::string f4x6(24, '\0');
  std::string good = dictHeader("'<f4'", "False", "(2, 3)");

  expectReadError("a missing file", dir + "/does-not-exist.npy",
                  "no such file");
  expectReadError("a directory", dir, "is a directory");
  expectReadError("an empty file", file(""), "truncated header");
  expectReadError("a file shorter than the magic", file("\x93NUM"),
                  "truncated header");
  expectReadError("bad magic", file("\x93NUMPX\x01\x00" + good), "bad magic");
  expectReadError("a text file", file("hello, world\n"), "bad magic");
  expectReadError("a truncated preamble (magic and version only)",
                  file(std::string("\x93NUMPY\x01\x00", 8)),
                  "truncated header");
  expectReadError("a truncated 2.0 preamble",
                  file(std::string("\x93NUMPY\x02\x00\x10\x00", 10)),
                  "truncated header");
  expectReadError("unsupported version 4.0", file(npyBytes(good, f4x6, 4)),
                  "unsupported .npy format version 4.0");
  expectReadError("a header length past the end of the file",
                  file(npyBytes(good, "", 1, 1000)), "truncated header");
  expectReadError("a 2.0 header length of 4 GiB",
                  file(npyBytes(good, f4x6, 2, 0xfffffff0)),
                  "truncated header");
  expectReadError("a header that is a list",
                  file(npyBytes("['<f4', False, (2, 3)]\n", f4x6)),
                  "header is not a valid dict");
  expectReadError("a header with a syntax error",
                  file(npyBytes("{'descr': '<f4', 'fortran_order': False, "
                                "'shape': (2, 3}\n",
                                f4x6)),
                  "header is not a valid dict");
  expectReadError(
      "a header with an unterminated string",
      file(npyBytes("{'descr': '<f4, 'fortran_order': False}\n", f4x6)),
      "header is not a valid dict");
  expectReadError("a header that is binary garbage",
                  file(npyBytes(std::string("\x01\xff\x00{", 4), f4x6)),
                  "header is not a valid dict");
  expectReadError("a header nested 10000 deep",
                  file(npyBytes(std::string(10000, '('), f4x6)),
                  "header is not a valid dict");
  expectReadError("a header that is an empty string", file(npyBytes("", f4x6)),
                  "header is not a valid dict");
  expectReadError(
      "a header missing 'shape'",
      file(npyBytes("{'descr': '<f4', 'fortran_order': False}\n", f4x6)),
      "missing key 'shape'");
  expectReadError("a header with an unexpected key",
                  file(npyBytes("{'descr': '<f4', 'fortran_order': False, "
                                "'shape': (2, 3), 'extra': 1}\n",
                                f4x6)),
                  "unexpected key 'extra'");
  expectReadError("a header with a duplicate key",
                  file(npyBytes("{'descr': '<f4', 'descr': '<f4', "
                                "'fortran_order': False, 'shape': (2, 3)}\n",
                                f4x6)),
                  "duplicate key 'descr'");
  expectReadError("dtype '<c8'",
                  file(npyBytes(dictHeader("'<c8'", "False", "(3,)"),
                                std::string(24, '\0'))),
                  "unsupported dtype '<c8'");
  expectReadError("dtype '<f8'",
                  file(npyBytes(dictHeader("'<f8'", "False", "(3,)"),
                                std::string(24, '\0'))),
                  "unsupported dtype '<f8'");
  expectReadError("dtype '<u2' without u16AsBF16",
                  file(npyBytes(dictHeader("'<u2'", "False", "(3,)"),
                                std::string(6, '\0'))),
                  "unsupported dtype '<u2'");
  expectReadError(
      "a structured dtype",
      file(npyBytes(dictHeader("[('a', '<f4')]", "False", "(6,)"), f4x6)),
      "unsupported dtype");
  expectReadError("an object dtype",
                  file(npyBytes(dictHeader("'|O'", "False", "(3,)"),
                                std::string(24, '\0'))),
                  "unsupported dtype '|O'");
  expectReadError("big-endian '>f4'",
                  file(npyBytes(dictHeader("'>f4'", "False", "(2, 3)"), f4x6)),
                  "big-endian dtype '>f4'");
  expectReadError("big-endian '>u2' read as bf16",
                  file(npyBytes(dictHeader("'>u2'", "False", "(3,)"),
                                std::string(6, '\0'))),
                  "big-endian dtype '>u2'", /*u16AsBF16=*/true);
  expectReadError("fortran_order True",
                  file(npyBytes(dictHeader("'<f4'", "True", "(2, 3)"), f4x6)),
                  "fortran_order True");
  expectReadError("fortran_order 1",
                  file(npyBytes(dictHeader("'<f4'", "1", "(2, 3)"), f4x6)),
                  "fortran_order is 1, not a bool");
  expectReadError("a negative dimension",
                  file(npyBytes(dictHeader("'<f4'", "False", "(-2, 3)"), f4x6)),
                  "negative dimension -2");
  expectReadError(
      "a string dimension",
      file(npyBytes(dictHeader("'<f4'", "False", "('a', 3)"), f4x6)),
      "invalid shape");
  expectReadError(
      "a float dimension",
      file(npyBytes(dictHeader("'<f4'", "False", "(2.5, 3)"), f4x6)),
      "invalid shape");
  expectReadError("a shape that is an int, not a tuple",
                  file(npyBytes(dictHeader("'<f4'", "False", "6"), f4x6)),
                  "invalid shape");
  expectReadError("a shape that is a list",
                  file(npyBytes(dictHeader("'<f4'", "False", "[2, 3]"), f4x6)),
                  "invalid shape");
  expectReadError(
      "a dimension beyond int64",
      file(npyBytes(dictHeader("'<f4'", "False", "(99999999999999999999999,)"),
                    f4x6)),
      "invalid shape");
  expectReadError(
      "a shape whose size overflows",
      file(npyBytes(dictHeader("'<f4'", "False", "(4611686018427387904, 4)"),
                    f4x6)),
      "too large");
  expectReadError(
      "a huge shape with little data (no allocation)",
      file(npyBytes(dictHeader("'<i8'", "False", "(1099511627776, 1024)"),
                    f4x6)),
      "data size mismatch: expected 9007199254740992 bytes");
  expectReadError("too little data",
                  file(npyBytes(good, std::string(20, '\0'))),
                  "expected 24 bytes (shape (2, 3) of f32), actual 20 bytes");
  expectReadError("too much data", file(npyBytes(good, std::string(28, '\0'))),
                  "expected 24 bytes (shape (2, 3) of f32), actual 28 bytes");
  expectReadError("no data for a 0-d array",
                  file(npyBytes(dictHeader("'<f4'", "False", "()"), "")),
                  "expected 4 bytes (shape () of f32), actual 0 bytes");
}

void writeErrorChecks(const std::string &dir) {
  // Data that does not match the shape: an error, and no file.
  {
    std::string path = dir + "/write-bad-size.npy";
    Array a;
    a.dtype = DType::F32;
    a.shape = {2, 3};
    a.data.assign(20, 0);
    Status s = writeNpy(path, a);
    check(!s.ok && s.message.find("needs 24 bytes") != std::string::npos &&
              !fs::exists(path),
          "writeNpy rejects data not matching the shape [" + s.message + "]");
  }
  // A failed write leaves an existing file untouched.
  {
    std::string path = dir + "/write-keep.npy";
    Array good = randomArray(DType::I32, {4}, 7);
    bool wrote = writeNpy(path, good).ok;
    std::string before = readFileBytes(path);
    Array bad;
    bad.dtype = DType::I64;
    bad.shape = {-1};
    Status s = writeNpy(path, bad);
    check(wrote && !s.ok && s.message.find("negative") != std::string::npos &&
              readFileBytes(path) == before,
          "a failed writeNpy leaves the existing file untouched [" + s.message +
              "]");
  }
  // A directory that does not exist.
  {
    std::string path = dir + "/no-such-dir/x.npy";
    Status s = writeNpy(path, randomArray(DType::U8, {3}, 8));
    check(!s.ok && s.message.find(path) != std::string::npos &&
              s.message.find("cannot create temporary file") !=
                  std::string::npos,
          "writeNpy into a missing directory fails [" + s.message + "]");
  }
  // The target is a directory: the rename fails and the temporary goes.
  {
    std::string path = dir + "/a-directory";
    std::error_code ec;
    fs::create_directories(path, ec);
    Status s = writeNpy(path, randomArray(DType::U8, {3}, 9));
    check(!s.ok && s.message.find("cannot rename") != std::string::npos &&
              fs::is_directory(path) && noTempFiles(dir),
          "writeNpy over a directory fails and cleans up [" + s.message + "]");
  }
}

//===----------------------------------------------------------------------===//
// Unit checks: bf16 / f16 conversions
//===----------------------------------------------------------------------===//

void bf16Checks() {
  struct C {
    uint32_t in;
    uint16_t out;
    const char *what;
  };
  const C cases[] = {
      {0x3f800000u, 0x3f80, "1.0"},
      {0xbf800000u, 0xbf80, "-1.0"},
      {0x00000000u, 0x0000, "+0"},
      {0x80000000u, 0x8000, "-0"},
      {0x3f808000u, 0x3f80, "tie 1+2^-8 rounds down to even"},
      {0x3f818000u, 0x3f82, "tie rounds up to even"},
      {0x3f808001u, 0x3f81, "just above a tie rounds up"},
      {0x3f807fffu, 0x3f80, "just below a tie rounds down"},
      {0x7f800000u, 0x7f80, "+inf"},
      {0xff800000u, 0xff80, "-inf"},
      {0x7f7fffffu, 0x7f80, "FLT_MAX rounds to +inf"},
      {0x7f7f7fffu, 0x7f7f, "just below the overflow tie stays finite"},
      {0x00010000u, 0x0001, "denormal 2^-133 exact"},
      {0x000116c2u, 0x0001, "denormal rounds down"},
      {0x00008000u, 0x0000, "denormal tie rounds to even zero"},
      {0x00018000u, 0x0002, "denormal tie rounds up to even"},
      {0x807fffffu, 0x8080, "largest negative denormal rounds to -FLT_MIN"},
  };
  for (const C &c : cases) {
    uint16_t got = floatToBF16(floatOf(c.in));
    check(got == c.out,
          std::string("floatToBF16 ") + c.what + " " + hex32(c.in) + " -> " +
              hex16(c.out),
          "got " + hex16(got));
  }
  // NaN stays NaN, sign kept, even with only low payload bits.
  {
    const uint32_t nans[] = {0x7fc00000u, 0xffc00000u, 0x7f800001u,
                             0xff800001u, 0x7fffffffu, 0x7fa00000u};
    bool ok = true;
    std::string detail;
    for (uint32_t n : nans) {
      uint16_t b = floatToBF16(floatOf(n));
      if ((b & 0x7fff) <= 0x7f80 || ((b >> 15) != (n >> 31))) {
        ok = false;
        detail += hex32(n) + "->" + hex16(b) + " ";
      }
    }
    check(ok, "floatToBF16 keeps NaN a NaN with its sign", detail);
  }
  check(bf16ToFloat(0x3f80) == 1.0f && bf16ToFloat(0xc040) == -3.0f &&
            bitsOf(bf16ToFloat(0x0001)) == 0x00010000u &&
            std::isinf(bf16ToFloat(0xff80)) && bf16ToFloat(0xff80) < 0 &&
            std::isnan(bf16ToFloat(0x7fc1)),
        "bf16ToFloat specific values (1, -3, denormal, -inf, NaN)");
  // Exhaustive: every bf16 survives bf16 -> float -> bf16.
  {
    int bad = 0;
    for (uint32_t h = 0; h <= 0xffff; ++h) {
      float f = bf16ToFloat(static_cast<uint16_t>(h));
      uint16_t back = floatToBF16(f);
      bool isNan = (h & 0x7fff) > 0x7f80;
      if (isNan ? !std::isnan(bf16ToFloat(back)) : back != h)
        ++bad;
    }
    check(bad == 0, "bf16 -> float -> bf16 is exact for all 65536 values",
          std::to_string(bad) + " mismatches");
  }
  // Exhaustive ties: the midpoint of any two neighbours rounds to the even
  // one, and one ulp (of float) either side rounds to the nearer one.
  {
    int bad = 0;
    for (uint32_t sign = 0; sign <= 1; ++sign) {
      for (uint32_t h = 0; h < 0x7f80; ++h) {
        uint32_t lo = (sign << 15) | h, hi = lo + 1;
        uint32_t mid = (lo << 16) | 0x8000u;
        uint32_t even = (lo & 1) ? hi : lo;
        if (floatToBF16(floatOf(mid)) != even ||
            floatToBF16(floatOf(mid - 1)) != lo ||
            floatToBF16(floatOf(mid + 1)) != hi)
          ++bad;
      }
    }
    check(bad == 0, "floatToBF16 rounds all 65280 midpoints to even",
          std::to_string(bad) + " mismatches");
  }
}

void f16Checks() {
  struct C {
    float in;
    uint16_t out;
    const char *what;
  };
  const float tiny = std::ldexp(1.0f, -24); // smallest f16 subnormal
  const C cases[] = {
      {1.0f, 0x3c00, "1.0"},
      {-2.0f, 0xc000, "-2.0"},
      {0.0f, 0x0000, "+0"},
      {-0.0f, 0x8000, "-0"},
      {0.1f, 0x2e66, "0.1"},
      {65504.0f, 0x7bff, "65504 (max)"},
      {65519.99f, 0x7bff, "65519.99 rounds down to max"},
      {65520.0f, 0x7c00, "65520 (tie above max) rounds to inf"},
      {1e10f, 0x7c00, "1e10 overflows to inf"},
      {-1e10f, 0xfc00, "-1e10 overflows to -inf"},
      {std::numeric_limits<float>::infinity(), 0x7c00, "+inf"},
      {-std::numeric_limits<float>::infinity(), 0xfc00, "-inf"},
      {1.0f + std::ldexp(1.0f, -11), 0x3c00, "tie 1+2^-11 rounds to even"},
      {1.0f + 3 * std::ldexp(1.0f, -11), 0x3c02, "tie 1+3*2^-11 rounds up"},
      {std::ldexp(1.0f, -14), 0x0400, "2^-14 (min normal)"},
      {std::ldexp(1023.0f, -24), 0x03ff, "largest subnormal"},
      {tiny, 0x0001, "2^-24 (min subnormal)"},
      {-tiny, 0x8001, "-2^-24"},
      {tiny / 2, 0x0000, "2^-25 tie rounds to even zero"},
      {-tiny / 2, 0x8000, "-2^-25 rounds to -0"},
      {std::nextafter(tiny / 2, 1.0f), 0x0001, "just above 2^-25 rounds up"},
      {tiny * 1.5f, 0x0002, "1.5*2^-24 tie rounds up to even"},
      {tiny * 2.5f, 0x0002, "2.5*2^-24 tie rounds down to even"},
      {std::ldexp(2047.0f, -25), 0x0400,
       "subnormal rounding carries to normal"},
      {1e-40f, 0x0000, "float denormal 1e-40 flushes to 0"},
      {-1e-40f, 0x8000, "float denormal -1e-40 flushes to -0"},
  };
  for (const C &c : cases) {
    uint16_t got = floatToF16(c.in);
    check(got == c.out,
          std::string("floatToF16 ") + c.what + " -> " + hex16(c.out),
          "got " + hex16(got));
  }
  {
    const uint32_t nans[] = {0x7fc00000u, 0xffc00000u, 0x7f800001u, 0xff800001u,
                             0x7fffffffu};
    bool ok = true;
    std::string detail;
    for (uint32_t n : nans) {
      uint16_t h = floatToF16(floatOf(n));
      if ((h & 0x7fff) <= 0x7c00 || ((h >> 15) != (n >> 31))) {
        ok = false;
        detail += hex32(n) + "->" + hex16(h) + " ";
      }
    }
    check(ok, "floatToF16 keeps NaN a NaN with its sign", detail);
  }
  check(f16ToFloat(0x3c00) == 1.0f && f16ToFloat(0xc000) == -2.0f &&
            f16ToFloat(0x7bff) == 65504.0f && f16ToFloat(0x0001) == tiny &&
            f16ToFloat(0x03ff) == std::ldexp(1023.0f, -24) &&
            f16ToFloat(0x8001) == -tiny &&
            bitsOf(f16ToFloat(0x8000)) == 0x80000000u &&
            std::isinf(f16ToFloat(0x7c00)) && f16ToFloat(0xfc00) < 0 &&
            std::isnan(f16ToFloat(0x7e00)) && std::isnan(f16ToFloat(0x7c01)),
        "f16ToFloat specific values (1, -2, max, subnormals, -0, inf, NaN)");
  {
    int bad = 0;
    for (uint32_t h = 0; h <= 0xffff; ++h) {
      float f = f16ToFloat(static_cast<uint16_t>(h));
      uint16_t back = floatToF16(f);
      bool isNan = (h & 0x7fff) > 0x7c00;
      if (isNan ? !std::isnan(f16ToFloat(back)) : back != h)
        ++bad;
    }
    check(bad == 0, "f16 -> float -> f16 is exact for all 65536 values",
          std::to_string(bad) + " mismatches");
  }
  // Every midpoint between neighbouring f16 values (subnormals, normals, and
  // max/inf) rounds to the even one; one float ulp either side rounds to the
  // nearer one. Midpoints need 12 significant bits: exact in float.
  {
    int bad = 0;
    for (uint32_t sign = 0; sign <= 1; ++sign) {
      for (uint32_t h = 0; h < 0x7c00; ++h) {
        uint16_t lo = static_cast<uint16_t>((sign << 15) | h);
        uint16_t hi = static_cast<uint16_t>(lo + 1);
        double hiValue = h == 0x7bff ? (sign ? -65536.0 : 65536.0)
                                     : static_cast<double>(f16ToFloat(hi));
        float mid = static_cast<float>(
            (static_cast<double>(f16ToFloat(lo)) + hiValue) / 2);
        float away = std::nextafter(mid, sign ? -1e30f : 1e30f);
        float toward = std::nextafter(mid, 0.0f);
        uint16_t even = (lo & 1) ? hi : lo;
        if (floatToF16(mid) != even || floatToF16(away) != hi ||
            floatToF16(toward) != lo)
          ++bad;
      }
    }
    check(bad == 0, "floatToF16 rounds all 63488 midpoints to even",
          std::to_string(bad) + " mismatches");
  }
}

void dtypeChecks() {
  check(dtypeSize(DType::F32) == 4 && dtypeSize(DType::F16) == 2 &&
            dtypeSize(DType::BF16) == 2 && dtypeSize(DType::I32) == 4 &&
            dtypeSize(DType::I64) == 8 && dtypeSize(DType::U8) == 1 &&
            dtypeSize(DType::Bool) == 1,
        "dtypeSize");
  check(std::string(dtypeName(DType::F32)) == "f32" &&
            std::string(dtypeName(DType::F16)) == "f16" &&
            std::string(dtypeName(DType::BF16)) == "bf16" &&
            std::string(dtypeName(DType::I32)) == "i32" &&
            std::string(dtypeName(DType::I64)) == "i64" &&
            std::string(dtypeName(DType::U8)) == "u8" &&
            std::string(dtypeName(DType::Bool)) == "bool",
        "dtypeName");
  Array a;
  bool ok = a.numElements() == 1;
  a.shape = {2, 3, 4};
  ok = ok && a.numElements() == 24;
  a.shape = {2, 0};
  ok = ok && a.numElements() == 0;
  a.shape = {-1, 2};
  ok = ok && a.numElements() == -1;
  a.shape = {int64_t(1) << 62, 4};
  ok = ok && a.numElements() == -1;
  check(ok, "Array::numElements (rank 0, zero dims, negative, overflow)");
  Status e = Status::error("two\nlines");
  check(!e.ok && !e && e.message.find('\n') == std::string::npos &&
            Status::success().ok,
        "Status::error messages are one line");
}

int runUnitTests(const std::string &dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec || !fs::is_directory(dir)) {
    std::fprintf(stderr, "error: cannot create scratch directory '%s'\n",
                 dir.c_str());
    return 2;
  }
  dtypeChecks();
  roundTripChecks(dir);
  validVariantChecks(dir);
  malformedChecks(dir);
  writeErrorChecks(dir);
  bf16Checks();
  f16Checks();
  if (numFailed == 0) {
    std::printf("moe-runtime-unittests: all %d checks passed\n", numChecks);
    return 0;
  }
  std::printf("moe-runtime-unittests: %d of %d checks FAILED\n", numFailed,
              numChecks);
  return 1;
}

} // namespace

int main(int argc, char **argv) {
  if (argc >= 3 && std::string(argv[1]) == "--read") {
    bool bf16 = argc >= 4 && std::string(argv[3]) == "--bf16";
    return readMode(argv[2], bf16);
  }
  if (argc >= 2 && std::string(argv[1]) == "--write-test")
    return writeTestMode(argc, argv);
  if (argc == 2 && argv[1][0] != '-')
    return runUnitTests(argv[1]);
  std::fprintf(stderr,
               "usage: %s SCRATCH_DIR\n"
               "       %s --read FILE [--bf16]\n"
               "       %s --write-test FILE DTYPE [DIM...]\n",
               argv[0], argv[0], argv[0]);
  return 2;
}
