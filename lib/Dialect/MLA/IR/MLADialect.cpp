//===- MLADialect.cpp - the mla dialect -----------------------------------===//
//
// Part of moe-mlir.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Dialect/MLA/IR/MLA.h"

#include "mlir/IR/DialectImplementation.h"
#include "mlir/Transforms/InliningUtils.h"
#include "llvm/ADT/TypeSwitch.h"

#include <cmath>

using namespace mlir;
using namespace moe_mlir::mla;

#include "moe-mlir/Dialect/MLA/IR/MLADialect.cpp.inc"
#include "moe-mlir/Dialect/MLA/IR/MLAEnums.cpp.inc"

#define GET_ATTRDEF_CLASSES
#include "moe-mlir/Dialect/MLA/IR/MLAAttrs.cpp.inc"

namespace {
/// Every mla op may be inlined: the ops have no regions and refer to
/// nothing outside their operands.
struct MLAInlinerInterface : DialectInlinerInterface {
  using DialectInlinerInterface::DialectInlinerInterface;
  bool isLegalToInline(Operation *, Region *, bool, IRMapping &) const final {
    return true;
  }
};
} // namespace

void MLADialect::initialize() {
  addAttributes<
#define GET_ATTRDEF_LIST
#include "moe-mlir/Dialect/MLA/IR/MLAAttrs.cpp.inc"
      >();
  addOperations<
#define GET_OP_LIST
#include "moe-mlir/Dialect/MLA/IR/MLAOps.cpp.inc"
      >();
  addInterfaces<MLAInlinerInterface>();
}

double moe_mlir::mla::yarnMscale(double factor, double mscale) {
  if (factor <= 1.0)
    return 1.0;
  return 0.1 * mscale * std::log(factor) + 1.0;
}

LogicalResult YarnAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                               APFloat factorValue,
                               int64_t originalMaxPositions,
                               APFloat betaFastValue, APFloat betaSlowValue,
                               APFloat mscale, APFloat mscaleAllDim) {
  double factor = factorValue.convertToDouble();
  double betaFast = betaFastValue.convertToDouble();
  double betaSlow = betaSlowValue.convertToDouble();
  if (!(factor > 0.0))
    return emitError() << "yarn factor must be positive, got " << factor;
  if (originalMaxPositions <= 0)
    return emitError()
           << "yarn original_max_position_embeddings must be positive, got "
           << originalMaxPositions;
  if (!(betaFast > 0.0) || !(betaSlow > 0.0))
    return emitError() << "yarn beta_fast and beta_slow must be positive, got "
                       << betaFast << " and " << betaSlow;
  double factorForScale = factor;
  for (auto [name, value] : {std::pair{"mscale", mscale.convertToDouble()},
                             std::pair{"mscale_all_dim",
                                       mscaleAllDim.convertToDouble()}})
    if (!(yarnMscale(factorForScale, value) > 0.0))
      return emitError() << "yarn " << name << " = " << value
                         << " makes the magnitude correction 0.1 * " << name
                         << " * ln(factor) + 1 non-positive";
  return success();
}
