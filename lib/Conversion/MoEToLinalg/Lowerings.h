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

/// The bookkeeping of a dropless dispatch of `indices` [T, k] to `experts`
/// experts (integer work only; moe.dispatch's semantics): rows per expert
/// `counts` [E], the row of every assignment `mapping` [T, k] (-1 when
/// dropped) and the token of every row `rowToken` [T·k] (-1 past the last).
struct DroplessPlan {
  mlir::Value counts, mapping, rowToken;
};
DroplessPlan planDropless(mlir::OpBuilder &b, mlir::Location loc,
                          mlir::Value indices, int64_t experts);

/// moe.combine's sum, in f32 ([T, H]): every token's expert rows of
/// `expertOut` ([N, H] or [E, C, H]) weighted and summed in slot order.
mlir::Value combineRows(mlir::OpBuilder &b, mlir::Location loc,
                        mlir::Value expertOut, mlir::Value mapping,
                        mlir::Value weights, mlir::Value passthrough,
                        bool expertChoice);

mlir::LogicalResult lowerDispatch(moe::DispatchOp op, mlir::PatternRewriter &b);
mlir::LogicalResult lowerCombine(moe::CombineOp op, mlir::PatternRewriter &b);
mlir::LogicalResult lowerExpertFfn(moe::ExpertFfnOp op,
                                   mlir::PatternRewriter &b,
                                   const ContractionOptions &options);
/// moe.routed_ffn: the grouped FFN reading the tokens' rows in place, with
/// the combine fused into the down projection; elsewhere lowered as
/// moe.dispatch, moe.expert_ffn and moe.combine.
mlir::LogicalResult lowerRoutedFfn(moe::RoutedFfnOp op,
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
