//===- Npy.h - NumPy .npy reader and writer ---------------------*- C++ -*-===//
//
// Part of the moe-mlir runtime. This header and its implementation depend on
// nothing but the C++17 standard library (no MLIR, no LLVM) and use no
// exceptions: every fallible operation returns a Status.
//
// Supported: .npy format versions 1.0, 2.0 and 3.0 (read) and 1.0 (write,
// falling back to 2.0 only for headers longer than 65535 bytes), C order,
// little-endian data, dtypes '<f4', '<f2', '<i4', '<i8', '|u1', '|b1', and
// bfloat16 stored as '<u2' (NumPy has no bfloat16 dtype).
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_RUNTIME_NPY_H
#define MOE_MLIR_RUNTIME_NPY_H

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace moe_rt {

/// Element types of an Array.
enum class DType { F32, F16, BF16, I32, I64, U8, Bool };

/// Size of one element in bytes (Bool is one byte, 0 or 1).
size_t dtypeSize(DType dtype);

/// Short name: "f32", "f16", "bf16", "i32", "i64", "u8", "bool".
const char *dtypeName(DType dtype);

/// A dense, C-order (row-major) array; `data` holds the elements as
/// little-endian bytes, numElements() * dtypeSize(dtype) of them.
struct Array {
  DType dtype = DType::F32;
  std::vector<int64_t> shape; // empty: a 0-d (scalar) array of one element
  std::vector<uint8_t> data;

  /// Product of the dimensions (1 for rank 0), or -1 when a dimension is
  /// negative or the product overflows int64_t.
  int64_t numElements() const;
};

/// Result of a fallible operation; `message` is a single line.
struct Status {
  bool ok = true;
  std::string message;

  static Status success() { return Status(); }
  static Status error(std::string message);

  explicit operator bool() const { return ok; }
};

/// Reads the .npy file at `path` into `out`. Files whose descr is '<u2' are
/// read as DType::BF16 when `u16AsBF16` is set and rejected otherwise. On
/// failure `out` is left unchanged and the message names the file and the
/// problem. Malformed input never crashes and is never trusted for sizes: the
/// header and data sizes are checked against the file size before anything
/// is allocated.
Status readNpy(const std::string &path, Array &out, bool u16AsBF16 = false);

/// Writes `array` to `path` as a version 1.0 .npy file (bf16 as '<u2'), the
/// header padded to a multiple of 64 bytes as NumPy does. The data go to a
/// temporary file in the same directory that is then renamed over `path`, so
/// a failure leaves `path` untouched and no partial output behind.
Status writeNpy(const std::string &path, const Array &array);

/// bfloat16 <-> float. floatToBF16 rounds to nearest, ties to even; NaN stays
/// NaN (quiet, sign kept), overflow rounds to infinity.
float bf16ToFloat(uint16_t bits);
uint16_t floatToBF16(float value);

/// IEEE binary16 <-> float. floatToF16 rounds to nearest, ties to even,
/// including into the subnormal range; NaN stays NaN (quiet, sign and the top
/// payload bits kept), values from 65520 up round to infinity.
float f16ToFloat(uint16_t bits);
uint16_t floatToF16(float value);

} // namespace moe_rt

#endif // MOE_MLIR_RUNTIME_NPY_H
