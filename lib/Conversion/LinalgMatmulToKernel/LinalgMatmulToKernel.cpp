//===- LinalgMatmulToKernel.cpp - x·Wᵀ matmuls to the vectorized kernel --===//
//
// Part of moe-mlir.
//
// Importers write dense projections (the language-model head, ...) as
// upstream `linalg.matmul` ops with a transposed B map. Left to the generic
// path they would become scalar loops; this pass hands them to the same
// register-tiled kernel that the moe and mla lowerings use.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Conversion/Passes.h"

#include "../Utils/LoweringUtils.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/AffineMap.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/WalkPatternRewriteDriver.h"

namespace moe_mlir {
#define GEN_PASS_DEF_CONVERTLINALGMATMULTOKERNEL
#include "moe-mlir/Conversion/Passes.h.inc"
} // namespace moe_mlir

using namespace mlir;
namespace lw = moe_mlir::lowering;

namespace {
/// True when `value` is produced by a linalg.fill of the constant 0.0.
bool isZeroFilled(Value value) {
  auto fill = value.getDefiningOp<linalg::FillOp>();
  if (!fill)
    return false;
  FloatAttr constant;
  Value scalar = fill.getInputs().front();
  if (auto cst = scalar.getDefiningOp<arith::ConstantOp>())
    constant = dyn_cast<FloatAttr>(cst.getValue());
  return constant && constant.getValue().isZero();
}

/// True when the maps are (m, k), (n, k) -> (m, n).
bool readsBTransposed(linalg::MatmulOp op) {
  MLIRContext *ctx = op.getContext();
  AffineExpr m, n, k;
  bindDims(ctx, m, n, k);
  SmallVector<AffineMap> expected = {
      AffineMap::get(3, 0, {m, k}, ctx), AffineMap::get(3, 0, {n, k}, ctx),
      AffineMap::get(3, 0, {m, n}, ctx)};
  return op.getIndexingMapsArray() == ArrayRef<AffineMap>(expected);
}

struct TransposedBMatmulToKernel : OpRewritePattern<linalg::MatmulOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(linalg::MatmulOp op,
                                PatternRewriter &rewriter) const override {
    if (!op.hasPureTensorSemantics() || !readsBTransposed(op))
      return rewriter.notifyMatchFailure(op, "not a tensor x·Wᵀ matmul");
    Value init = op.getDpsInits().front();
    if (!isZeroFilled(init))
      return rewriter.notifyMatchFailure(op, "init is not zero-filled");
    auto resultType = cast<RankedTensorType>(op.getResultTypes().front());
    if (!isa<FloatType>(resultType.getElementType()))
      return rewriter.notifyMatchFailure(op, "integer matmul");
    Location loc = op.getLoc();
    Value a = op.getDpsInputs()[0];
    Value bt = op.getDpsInputs()[1];
    // A generic matmul keeps its exact semantics: f32 products of the
    // operands as stored (no bf16 rounding of the activations).
    Value product = lw::contractTransposedB(rewriter, loc, a, bt, {});
    if (resultType.getElementType() != rewriter.getF32Type())
      product =
          lw::convertTensor(rewriter, loc, product, resultType.getElementType());
    if (product.getType() != resultType)
      product = tensor::CastOp::create(rewriter, loc, resultType, product);
    rewriter.replaceOp(op, product);
    return success();
  }
};

struct ConvertLinalgMatmulToKernelPass
    : moe_mlir::impl::ConvertLinalgMatmulToKernelBase<
          ConvertLinalgMatmulToKernelPass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<TransposedBMatmulToKernel>(&getContext());
    walkAndApplyPatterns(getOperation(), std::move(patterns));
  }
};
} // namespace
