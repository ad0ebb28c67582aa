//===- Lowerings.h - the moe op lowerings -----------------------*- C++ -*-===//
//
// Part of moe-mlir.
//
// One function per op; ConvertMoEToLinalg.cpp wraps them in patterns.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_LIB_CONVERSION_MOETOLINALG_LOWERINGS_H
#define MOE_MLIR_LIB_CONVERSION_MOETOLINALG_LOWERINGS_H

#include "moe-mlir/Conversion/ContractionOptions.h"
#include "moe-mlir/Dialect/MoE/IR/MoE.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/PatternMatch.h"

namespace moe_mlir::lowering {

mlir::LogicalResult lowerRoute(moe::RouteOp op, mlir::PatternRewriter &b);
mlir::LogicalResult lowerDispatch(moe::DispatchOp op, mlir::PatternRewriter &b);
mlir::LogicalResult lowerCombine(moe::CombineOp op, mlir::PatternRewriter &b);
mlir::LogicalResult lowerExpertFfn(moe::ExpertFfnOp op,
                                   mlir::PatternRewriter &b,
                                   const ContractionOptions &options);
mlir::LogicalResult lowerSharedExpert(moe::SharedExpertOp op,
                                      mlir::PatternRewriter &b,
                                      const ContractionOptions &options);
/// Erases a moe.stack_experts whose users were all grouped FFNs (they read
/// its operands in place), copies it into one tensor for any other user.
mlir::LogicalResult lowerStackExperts(moe::StackExpertsOp op,
                                      mlir::PatternRewriter &b);


// Expert parallelism (ExpertParallelLowering.cpp): calls of the runtime's
// hooks, which declareExpertParallelRuntime declares in the module first.
void declareExpertParallelRuntime(mlir::ModuleOp module);
mlir::LogicalResult lowerEpDispatch(moe::EpDispatchOp op,
                                    mlir::PatternRewriter &b);
mlir::LogicalResult lowerEpReturn(moe::EpReturnOp op, mlir::PatternRewriter &b);
mlir::LogicalResult lowerEpHome(moe::EpHomeOp op, mlir::PatternRewriter &b);
mlir::LogicalResult lowerEpAllGather(moe::EpAllGatherOp op,
                                     mlir::PatternRewriter &b);
mlir::LogicalResult lowerEpSlots(moe::EpSlotsOp op, mlir::PatternRewriter &b);

} // namespace moe_mlir::lowering

#endif // MOE_MLIR_LIB_CONVERSION_MOETOLINALG_LOWERINGS_H
