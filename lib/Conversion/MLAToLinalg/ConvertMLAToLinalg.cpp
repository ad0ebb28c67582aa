//===- ConvertMLAToLinalg.cpp - the convert-mla-to-linalg pass ------------===//
//
// Part of moe-mlir.
//
//===----------------------------------------------------------------------===//

#include "../Utils/LoweringUtils.h"
#include "AttentionLowering.h"

#include "moe-mlir/Conversion/Passes.h"
#include "moe-mlir/Dialect/MLA/IR/MLA.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/Dialect/X86Vector/X86VectorDialect.h"
#include "mlir/Transforms/WalkPatternRewriteDriver.h"

namespace moe_mlir {
#define GEN_PASS_DEF_CONVERTMLATOLINALG
#include "moe-mlir/Conversion/Passes.h.inc"
} // namespace moe_mlir

using namespace mlir;
using namespace moe_mlir;

namespace {
struct LowerAttention : OpRewritePattern<mla::AttentionOp> {
  LowerAttention(MLIRContext *ctx, const ContractionOptions &options)
      : OpRewritePattern(ctx), options(options) {}
  LogicalResult matchAndRewrite(mla::AttentionOp op,
                                PatternRewriter &rewriter) const override {
    return lowering::mla::lowerAttention(op, rewriter, options);
  }
  ContractionOptions options;
};

struct LowerGqaAttention : OpRewritePattern<mla::GqaAttentionOp> {
  LowerGqaAttention(MLIRContext *ctx, const ContractionOptions &options)
      : OpRewritePattern(ctx), options(options) {}
  LogicalResult matchAndRewrite(mla::GqaAttentionOp op,
                                PatternRewriter &rewriter) const override {
    return lowering::mla::lowerGqaAttention(op, rewriter, options);
  }
  ContractionOptions options;
};

struct ConvertMLAToLinalgPass
    : moe_mlir::impl::ConvertMLAToLinalgBase<ConvertMLAToLinalgPass> {
  using ConvertMLAToLinalgBase::ConvertMLAToLinalgBase;
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    ContractionOptions options;
    options.bf16DotProducts = bf16DotProducts;
    populateMLAToLinalgPatterns(patterns, options);
    walkAndApplyPatterns(getOperation(), std::move(patterns));
    if (failed(lowering::reportUnlowered(getOperation(),
                                         mla::MLADialect::getDialectNamespace())))
      signalPassFailure();
  }
};
} // namespace

void moe_mlir::populateMLAToLinalgPatterns(RewritePatternSet &patterns,
                                           const ContractionOptions &options) {
  patterns.add<LowerAttention, LowerGqaAttention>(patterns.getContext(),
                                                  options);
}
