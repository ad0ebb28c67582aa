//===- ShapeChecks.cpp - verifier helpers with named shapes ---------------===//
//
// Part of moe-mlir.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Support/ShapeChecks.h"

#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/TypeUtilities.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/Support/raw_ostream.h"

using namespace mlir;

namespace moe_mlir {

bool sizesCompatible(int64_t a, int64_t b) {
  return a == b || ShapedType::isDynamic(a) || ShapedType::isDynamic(b);
}

int64_t dimOrDynamic(Type type, unsigned index) {
  auto tensor = llvm::dyn_cast<RankedTensorType>(type);
  if (!tensor || index >= tensor.getRank())
    return ShapedType::kDynamic;
  return tensor.getDimSize(index);
}

int64_t mulSizes(int64_t a, int64_t b) {
  if (ShapedType::isDynamic(a) || ShapedType::isDynamic(b))
    return ShapedType::kDynamic;
  return a * b;
}

static void printDims(llvm::raw_ostream &os, ArrayRef<NamedDim> dims) {
  os << '[';
  llvm::interleaveComma(dims, os, [&](const NamedDim &d) {
    if (d.symbol.empty()) {
      if (ShapedType::isDynamic(d.size))
        os << '?';
      else
        os << d.size;
      return;
    }
    os << d.symbol;
    if (!ShapedType::isDynamic(d.size))
      os << '=' << d.size;
  });
  os << ']';
}

LogicalResult checkShape(Operation *op, StringRef kind, StringRef name,
                         Type type, ArrayRef<NamedDim> dims) {
  auto tensor = llvm::dyn_cast<RankedTensorType>(type);
  bool ok = tensor && tensor.getRank() == static_cast<int64_t>(dims.size());
  for (auto [i, d] : llvm::enumerate(dims)) {
    if (!ok)
      break;
    ok = sizesCompatible(tensor.getDimSize(i), d.size);
  }
  if (ok)
    return success();
  InFlightDiagnostic diag = op->emitOpError();
  diag << kind << " '" << name << "' must have shape ";
  std::string shape;
  llvm::raw_string_ostream os(shape);
  printDims(os, dims);
  diag << shape << ", got " << type;
  return diag;
}

LogicalResult checkRank(Operation *op, StringRef name, Value value,
                        ArrayRef<StringRef> symbols) {
  auto tensor = llvm::dyn_cast<RankedTensorType>(value.getType());
  if (tensor && tensor.getRank() == static_cast<int64_t>(symbols.size()))
    return success();
  InFlightDiagnostic diag = op->emitOpError();
  diag << "operand '" << name << "' must have rank " << symbols.size()
       << " [";
  llvm::interleaveComma(symbols, diag);
  diag << "], got " << value.getType();
  return diag;
}

LogicalResult checkElementType(Operation *op, StringRef name, Value value,
                               Type expected, StringRef expectedFrom) {
  Type actual = getElementTypeOrSelf(value.getType());
  if (actual == expected)
    return success();
  return op->emitOpError() << "operand '" << name << "' must have element type "
                           << expected << " (that of '" << expectedFrom
                           << "'), got " << actual;
}

bool tensorTypesCompatible(TypeRange lhs, TypeRange rhs) {
  if (lhs.size() != rhs.size())
    return false;
  for (auto [l, r] : llvm::zip_equal(lhs, rhs)) {
    auto lt = llvm::dyn_cast<RankedTensorType>(l);
    auto rt = llvm::dyn_cast<RankedTensorType>(r);
    if (!lt || !rt || lt.getElementType() != rt.getElementType() ||
        lt.getRank() != rt.getRank())
      return false;
    for (auto [a, b] : llvm::zip_equal(lt.getShape(), rt.getShape()))
      if (!sizesCompatible(a, b))
        return false;
  }
  return true;
}

} // namespace moe_mlir
