//===- MoEParallelOps.cpp - moe expert-parallel operations ----------------===//
//
// Part of moe-mlir.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Dialect/MoE/IR/MoE.h"
#include "moe-mlir/Support/ShapeChecks.h"

#include "mlir/IR/TypeUtilities.h"

using namespace mlir;
using namespace moe_mlir;
using namespace moe_mlir::moe;

/// Checks that the result `name` has the element type of operand `fromName`.
static LogicalResult checkSameElementType(Operation *op, StringRef name,
                                          Value value, StringRef fromName,
                                          Value from) {
  Type expected = getElementTypeOrSelf(from.getType());
  if (getElementTypeOrSelf(value.getType()) == expected)
    return success();
  return op->emitOpError() << (name == "result" ? "result" : "result '" + name.str() + "'")
                           << " must have the element type of '" << fromName
                           << "' (" << expected << "), got " << value.getType();
}

LogicalResult EpDispatchOp::verify() {
  Operation *op = getOperation();
  if (failed(checkRank(op, "input", getInput(), {"T", "H"})) ||
      failed(checkRank(op, "indices", getIndices(), {"T", "k"})))
    return failure();
  int64_t tokens = dimOrDynamic(getInput().getType(), 0);
  int64_t hidden = dimOrDynamic(getInput().getType(), 1);
  int64_t k = dimOrDynamic(getIndices().getType(), 1);
  if (failed(checkOperandShape(op, "indices", getIndices(),
                               {{"T", tokens}, {"k", k}})))
    return failure();

  ArrayRef<int32_t> slots = getSlotExperts();
  int64_t ranks = static_cast<int64_t>(getRanks());
  int64_t experts = static_cast<int64_t>(getNumExperts());
  if (slots.empty() || static_cast<int64_t>(slots.size()) % ranks != 0)
    return emitOpError() << "slot_experts has " << slots.size()
                         << " entries, not a positive multiple of ranks = "
                         << ranks;
  std::vector<bool> held(experts, false);
  for (auto [i, e] : llvm::enumerate(slots)) {
    if (e < -1 || e >= experts)
      return emitOpError() << "slot_experts[" << i << "] = " << e
                           << " is not an expert id in [0, " << experts
                           << ") or -1";
    if (e >= 0)
      held[e] = true;
  }
  for (int64_t e = 0; e < experts; ++e)
    if (!held[e])
      return emitOpError() << "expert " << e << " has no slot in slot_experts";

  int64_t rows = mulSizes(tokens, k);
  if (failed(checkShape(op, "result", "rows", getRows().getType(),
                        {{"T*k", rows}, {"H", hidden}})) ||
      failed(checkSameElementType(op, "rows", getRows(), "input",
                                  getInput())) ||
      failed(checkShape(op, "result", "counts", getCounts().getType(),
                        {{"S", getSlotsPerRank()}})) ||
      failed(checkShape(op, "result", "source", getSource().getType(),
                        {{"T*k", rows}})))
    return failure();
  return success();
}

LogicalResult EpReturnOp::verify() {
  Operation *op = getOperation();
  if (failed(checkRank(op, "indices", getIndices(), {"T", "k"})) ||
      failed(checkRank(op, "expert_out", getExpertOut(), {"T*k", "H"})))
    return failure();
  int64_t rows = mulSizes(dimOrDynamic(getIndices().getType(), 0),
                          dimOrDynamic(getIndices().getType(), 1));
  int64_t hidden = dimOrDynamic(getExpertOut().getType(), 1);
  if (failed(checkOperandShape(op, "expert_out", getExpertOut(),
                               {{"T*k", rows}, {"H", hidden}})) ||
      failed(checkOperandShape(op, "source", getSource(), {{"T*k", rows}})) ||
      failed(checkShape(op, "result", "result", getResult().getType(),
                        {{"Th*k", ShapedType::kDynamic}, {"H", hidden}})) ||
      failed(checkSameElementType(op, "result", getResult(), "expert_out",
                                  getExpertOut())))
    return failure();
  return success();
}

LogicalResult EpHomeOp::verify() {
  auto in = cast<RankedTensorType>(getInput().getType());
  auto out = cast<RankedTensorType>(getResult().getType());
  if (in.getRank() < 1)
    return emitOpError("operand 'input' must have a leading token dimension");
  if (out.getRank() != in.getRank())
    return emitOpError() << "result must have rank " << in.getRank()
                         << ", got " << out;
  for (int64_t d = 1; d < in.getRank(); ++d)
    if (!sizesCompatible(in.getDimSize(d), out.getDimSize(d)))
      return emitOpError() << "result dimension " << d << " must match the "
                           << "input's, got " << out << " for " << in;
  if (!in.isDynamicDim(0) && !out.isDynamicDim(0) &&
      out.getDimSize(0) > in.getDimSize(0))
    return emitOpError() << "result has more tokens than the input";
  return success();
}

LogicalResult EpAllGatherOp::verify() {
  Operation *op = getOperation();
  if (failed(checkRank(op, "input", getInput(), {"Th", "H"})))
    return failure();
  int64_t hidden = dimOrDynamic(getInput().getType(), 1);
  if (failed(checkShape(op, "result", "result", getResult().getType(),
                        {{"T", ShapedType::kDynamic}, {"H", hidden}})) ||
      failed(checkSameElementType(op, "result", getResult(), "input",
                                  getInput())))
    return failure();
  return success();
}

LogicalResult EpSlotsOp::verify() {
  auto in = cast<RankedTensorType>(getInput().getType());
  auto out = cast<RankedTensorType>(getResult().getType());
  ArrayRef<int32_t> slots = getSlotExperts();
  int64_t ranks = static_cast<int64_t>(getRanks());
  if (slots.empty() || static_cast<int64_t>(slots.size()) % ranks != 0)
    return emitOpError() << "slot_experts has " << slots.size()
                         << " entries, not a positive multiple of ranks = "
                         << ranks;
  int64_t perRank = static_cast<int64_t>(slots.size()) / ranks;
  if (in.getRank() < 1 || out.getRank() != in.getRank())
    return emitOpError() << "result must have the rank of the input [E, ...], "
                         << "got " << out << " for " << in;
  if (out.getDimSize(0) != perRank)
    return emitOpError() << "result must have S = " << perRank
                         << " slots in its leading dimension, got " << out;
  for (int64_t d = 1; d < in.getRank(); ++d)
    if (!sizesCompatible(in.getDimSize(d), out.getDimSize(d)))
      return emitOpError() << "result dimension " << d
                           << " must match the input's, got " << out;
  if (failed(checkSameElementType(getOperation(), "result", getResult(),
                                  "input", getInput())))
    return failure();
  for (auto [i, e] : llvm::enumerate(slots))
    if (e < -1 || (!in.isDynamicDim(0) && e >= in.getDimSize(0)))
      return emitOpError() << "slot_experts[" << i << "] = " << e
                           << " is not an expert of the input or -1";
  return success();
}
