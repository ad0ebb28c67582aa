//===- MoEOps.cpp - moe dialect operations --------------------------------===//
//
// Part of moe-mlir.
//
// Result-type inference is deliberately lenient: it returns dynamic sizes
// where an operand is malformed, so that the verifiers below, which name the
// offending operand and the expected shape, are the ones that report it.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Dialect/MoE/IR/MoE.h"
#include "moe-mlir/Support/ShapeChecks.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/OpImplementation.h"
#include "mlir/IR/TypeUtilities.h"

#include <cmath>

using namespace mlir;
using namespace moe_mlir;
using namespace moe_mlir::moe;

static constexpr int64_t kDyn = ShapedType::kDynamic;

int64_t moe_mlir::moe::computeCapacity(std::optional<uint64_t> expertCapacity,
                                       std::optional<float> capacityFactor,
                                       int64_t numTokens, int64_t k,
                                       int64_t numExperts) {
  if (expertCapacity)
    return static_cast<int64_t>(*expertCapacity);
  if (ShapedType::isDynamic(numTokens) || ShapedType::isDynamic(numExperts) ||
      numExperts <= 0)
    return kDyn;
  double factor = capacityFactor ? static_cast<double>(*capacityFactor) : 1.0;
  return static_cast<int64_t>(std::ceil(factor * static_cast<double>(numTokens) *
                                        static_cast<double>(k) /
                                        static_cast<double>(numExperts)));
}

static std::optional<float> toFloat(std::optional<APFloat> value) {
  if (!value)
    return std::nullopt;
  return value->convertToFloat();
}

static RankedTensorType tensorOf(ArrayRef<int64_t> shape, Type elementType) {
  return RankedTensorType::get(shape, elementType);
}

static Type elementTypeOr(Type type, Type fallback) {
  if (auto tensor = llvm::dyn_cast<RankedTensorType>(type))
    return tensor.getElementType();
  return fallback;
}

#define MOE_COMPATIBLE_RETURN_TYPES(Op)                                        \
  bool Op::isCompatibleReturnTypes(TypeRange lhs, TypeRange rhs) {             \
    return tensorTypesCompatible(lhs, rhs);                                    \
  }
MOE_COMPATIBLE_RETURN_TYPES(RouteOp)
MOE_COMPATIBLE_RETURN_TYPES(DispatchOp)
MOE_COMPATIBLE_RETURN_TYPES(ExpertFfnOp)
MOE_COMPATIBLE_RETURN_TYPES(CombineOp)
MOE_COMPATIBLE_RETURN_TYPES(RoutedFfnOp)
MOE_COMPATIBLE_RETURN_TYPES(SharedExpertOp)
MOE_COMPATIBLE_RETURN_TYPES(StackExpertsOp)
#undef MOE_COMPATIBLE_RETURN_TYPES

//===----------------------------------------------------------------------===//
// Shared FFN checks (moe.expert_ffn and moe.shared_expert)
//===----------------------------------------------------------------------===//

namespace {
/// The operands and attributes of an FFN, with `prefix` the leading
/// dimensions of every weight ([E] for stacked experts, none for one FFN).
struct FfnOperands {
  Value fc1, fc2, fc3, fc1Bias, fc2Bias, fc3Bias;
  Gating gating;
  Activation activation;
  float alpha;
  std::optional<float> clampLimit;
};
} // namespace

static SmallVector<NamedDim> withPrefix(ArrayRef<NamedDim> prefix,
                                        ArrayRef<NamedDim> dims) {
  SmallVector<NamedDim> all(prefix.begin(), prefix.end());
  all.append(dims.begin(), dims.end());
  return all;
}

static LogicalResult verifyFfn(Operation *op, const FfnOperands &ffn,
                               ArrayRef<NamedDim> prefix, int64_t hidden) {
  size_t rank = prefix.size() + 2;
  auto fc1Type = llvm::dyn_cast<RankedTensorType>(ffn.fc1.getType());
  if (!fc1Type || fc1Type.getRank() != static_cast<int64_t>(rank)) {
    SmallVector<StringRef> symbols;
    for (const NamedDim &d : prefix)
      symbols.push_back(d.symbol);
    bool fused = ffn.gating == Gating::Concatenated ||
                 ffn.gating == Gating::Interleaved;
    symbols.push_back(fused ? "2I" : "I");
    symbols.push_back("H");
    return checkRank(op, "fc1", ffn.fc1, symbols);
  }

  bool fused =
      ffn.gating == Gating::Concatenated || ffn.gating == Gating::Interleaved;
  int64_t fc1Rows = fc1Type.getDimSize(prefix.size());
  int64_t inter = fc1Rows;
  if (fused && !ShapedType::isDynamic(fc1Rows)) {
    if (fc1Rows % 2 != 0)
      return op->emitOpError()
             << "operand 'fc1' must have an even number of rows [2I] with "
             << stringifyGating(ffn.gating) << " gating, got " << fc1Rows;
    inter = fc1Rows / 2;
  } else if (fused) {
    inter = kDyn;
  }

  if (failed(checkOperandShape(op, "fc1", ffn.fc1,
                               withPrefix(prefix, {{fused ? "2I" : "I",
                                                    fc1Rows},
                                                   {"H", hidden}}))))
    return failure();
  if (failed(checkOperandShape(op, "fc2", ffn.fc2,
                               withPrefix(prefix, {{"H", hidden},
                                                   {"I", inter}}))))
    return failure();

  bool separate = ffn.gating == Gating::Separate;
  if (separate && !ffn.fc3)
    return op->emitOpError()
           << "operand 'fc3' (the up projection) is required with separate "
              "gating";
  if (!separate && ffn.fc3)
    return op->emitOpError() << "operand 'fc3' is only allowed with separate "
                                "gating, but gating is "
                             << stringifyGating(ffn.gating);
  if (!separate && ffn.fc3Bias)
    return op->emitOpError()
           << "operand 'fc3_bias' is only allowed with separate gating";
  if (ffn.fc3 &&
      failed(checkOperandShape(op, "fc3", ffn.fc3,
                               withPrefix(prefix, {{"I", inter},
                                                   {"H", hidden}}))))
    return failure();
  if (ffn.fc1Bias &&
      failed(checkOperandShape(op, "fc1_bias", ffn.fc1Bias,
                               withPrefix(prefix, {{fused ? "2I" : "I",
                                                    fc1Rows}}))))
    return failure();
  if (ffn.fc3Bias &&
      failed(checkOperandShape(op, "fc3_bias", ffn.fc3Bias,
                               withPrefix(prefix, {{"I", inter}}))))
    return failure();
  if (ffn.fc2Bias &&
      failed(checkOperandShape(op, "fc2_bias", ffn.fc2Bias,
                               withPrefix(prefix, {{"H", hidden}}))))
    return failure();

  Type weightType = fc1Type.getElementType();
  std::pair<StringRef, Value> others[] = {{"fc2", ffn.fc2},
                                          {"fc3", ffn.fc3},
                                          {"fc1_bias", ffn.fc1Bias},
                                          {"fc2_bias", ffn.fc2Bias},
                                          {"fc3_bias", ffn.fc3Bias}};
  for (auto [name, value] : others)
    if (value && failed(checkElementType(op, name, value, weightType, "fc1")))
      return failure();

  if (ffn.alpha != 1.0f && ffn.activation != Activation::Silu)
    return op->emitOpError() << "activation_alpha only applies to silu, but "
                                "the activation is "
                             << stringifyActivation(ffn.activation);
  if (ffn.clampLimit && !(*ffn.clampLimit > 0.0f))
    return op->emitOpError()
           << "clamp_limit must be positive, got " << *ffn.clampLimit;
  return success();
}

template <typename OpTy>
static FfnOperands ffnOperandsOf(OpTy op) {
  return FfnOperands{op.getFc1(),
                     op.getFc2(),
                     op.getFc3(),
                     op.getFc1Bias(),
                     op.getFc2Bias(),
                     op.getFc3Bias(),
                     op.getGating(),
                     op.getActivation(),
                     op.getActivationAlpha().convertToFloat(),
                     toFloat(op.getClampLimit())};
}

//===----------------------------------------------------------------------===//
// RouteOp
//===----------------------------------------------------------------------===//

int64_t RouteOp::getNumExperts() {
  if (getRouterWeight())
    return dimOrDynamic(getRouterWeight().getType(), 0);
  return dimOrDynamic(getInput().getType(), 1);
}

LogicalResult RouteOp::inferReturnTypes(MLIRContext *context,
                                        std::optional<Location>,
                                        Adaptor adaptor,
                                        SmallVectorImpl<Type> &types) {
  int64_t tokens = dimOrDynamic(adaptor.getInput().getType(), 0);
  int64_t experts = adaptor.getRouterWeight()
                        ? dimOrDynamic(adaptor.getRouterWeight().getType(), 0)
                        : dimOrDynamic(adaptor.getInput().getType(), 1);
  int64_t k = static_cast<int64_t>(adaptor.getK());
  Builder b(context);
  SmallVector<int64_t, 2> shape = {tokens, k};
  if (adaptor.getMode() == RoutingMode::ExpertChoice)
    shape = {experts,
             computeCapacity(adaptor.getExpertCapacity(),
                             toFloat(adaptor.getCapacityFactor()), tokens, k,
                             experts)};
  types.push_back(tensorOf(shape, b.getI32Type()));
  types.push_back(tensorOf(shape, b.getF32Type()));
  return success();
}

LogicalResult RouteOp::verify() {
  Operation *op = getOperation();
  if (failed(checkRank(op, "input", getInput(),
                       getRouterWeight() ? ArrayRef<StringRef>{"T", "H"}
                                         : ArrayRef<StringRef>{"T", "E"})))
    return failure();
  int64_t tokens = dimOrDynamic(getInput().getType(), 0);

  int64_t experts = getNumExperts();
  if (getRouterWeight()) {
    int64_t hidden = dimOrDynamic(getInput().getType(), 1);
    if (failed(checkRank(op, "router_weight", getRouterWeight(), {"E", "H"})) ||
        failed(checkOperandShape(op, "router_weight", getRouterWeight(),
                                 {{"E", experts}, {"H", hidden}})))
      return failure();
  } else {
    if (getRouterBias())
      return emitOpError("operand 'router_bias' requires 'router_weight' "
                         "(with logits as input there is no router matmul)");
    if (getRoundLogits())
      return emitOpError("round_logits requires 'router_weight' (the input is "
                         "already the logits)");
  }
  if (ShapedType::isDynamic(experts))
    return emitOpError("the number of experts E must be static");

  if (getRouterBias() &&
      failed(checkOperandShape(op, "router_bias", getRouterBias(),
                               {{"E", experts}})))
    return failure();
  if (getSelectionBias() &&
      failed(checkOperandShape(op, "selection_bias", getSelectionBias(),
                               {{"E", experts}})))
    return failure();

  int64_t k = static_cast<int64_t>(getK());
  if (k > experts)
    return emitOpError() << "k = " << k << " exceeds the number of experts E = "
                         << experts;
  if (getExpertCapacity() && getCapacityFactor())
    return emitOpError(
        "expert_capacity and capacity_factor are mutually exclusive");
  if (auto factor = toFloat(getCapacityFactor()); factor && !(*factor > 0.0f))
    return emitOpError() << "capacity_factor must be positive, got " << *factor;
  if (getRenormalizeAfterDrop() && !hasCapacity())
    return emitOpError("renormalize_after_drop requires a capacity "
                       "(expert_capacity or capacity_factor)");
  if (getScoring() == Scoring::TopkSoftmax && getRenormalize())
    return emitOpError("renormalize has no effect with topk_softmax scoring "
                       "(the k weights already sum to 1)");

  int64_t groups = static_cast<int64_t>(getNGroup());
  if (getMode() == RoutingMode::ExpertChoice) {
    if (getScoring() == Scoring::TopkSoftmax)
      return emitOpError("expert_choice routing needs softmax or sigmoid "
                         "scoring, not topk_softmax");
    if (groups != 1 || getTopkGroup() || getGroupScore())
      return emitOpError("expert_choice routing does not take expert groups");
    if (getSelectionBias())
      return emitOpError(
          "expert_choice routing does not take a 'selection_bias'");
    if (getRenormalize() || getRenormalizeAfterDrop())
      return emitOpError("expert_choice routing does not renormalize");
    (void)tokens;
    return success();
  }

  if (groups == 1) {
    if (getTopkGroup() || getGroupScore())
      return emitOpError("topk_group and group_score require n_group > 1");
    return success();
  }
  if (experts % groups != 0)
    return emitOpError() << "the number of experts E = " << experts
                         << " is not divisible by n_group = " << groups;
  if (!getTopkGroup())
    return emitOpError("group-limited routing (n_group > 1) requires "
                       "topk_group");
  if (!getGroupScore())
    return emitOpError("group-limited routing (n_group > 1) requires "
                       "group_score (max or top2_sum)");
  int64_t keep = static_cast<int64_t>(*getTopkGroup());
  if (keep > groups)
    return emitOpError() << "topk_group = " << keep
                         << " exceeds n_group = " << groups;
  int64_t groupSize = experts / groups;
  if (*getGroupScore() == GroupScore::Top2Sum && groupSize < 2)
    return emitOpError() << "group_score top2_sum needs at least 2 experts "
                            "per group, got "
                         << groupSize;
  if (getGroupMaskFill() == MaskFill::NegInf && k > keep * groupSize)
    return emitOpError() << "k = " << k << " exceeds the " << keep * groupSize
                         << " experts of the topk_group = " << keep
                         << " kept groups";
  return success();
}

//===----------------------------------------------------------------------===//
// DispatchOp
//===----------------------------------------------------------------------===//

LogicalResult DispatchOp::inferReturnTypes(MLIRContext *context,
                                           std::optional<Location>,
                                           Adaptor adaptor,
                                           SmallVectorImpl<Type> &types) {
  Type inputType = adaptor.getInput().getType();
  Type indicesType = adaptor.getIndices().getType();
  int64_t tokens = dimOrDynamic(inputType, 0);
  int64_t hidden = dimOrDynamic(inputType, 1);
  int64_t experts = static_cast<int64_t>(adaptor.getNumExperts());
  int64_t second = dimOrDynamic(indicesType, 1);
  Type elementType = elementTypeOr(inputType, Float32Type::get(context));
  Builder b(context);
  Type i32 = b.getI32Type();

  switch (adaptor.getMode()) {
  case DispatchMode::Dropless:
    types.push_back(tensorOf({mulSizes(tokens, second), hidden}, elementType));
    types.push_back(tensorOf({experts}, i32));
    types.push_back(tensorOf({tokens, second}, i32));
    break;
  case DispatchMode::Capacity: {
    int64_t capacity =
        computeCapacity(adaptor.getExpertCapacity(),
                        toFloat(adaptor.getCapacityFactor()), tokens,
                        ShapedType::isDynamic(second) ? 1 : second, experts);
    if (ShapedType::isDynamic(second) && !adaptor.getExpertCapacity())
      capacity = kDyn;
    types.push_back(tensorOf({experts, capacity, hidden}, elementType));
    types.push_back(tensorOf({experts}, i32));
    types.push_back(tensorOf({tokens, second}, i32));
    break;
  }
  case DispatchMode::ExpertChoice:
    types.push_back(tensorOf({experts, second, hidden}, elementType));
    types.push_back(tensorOf({experts}, i32));
    types.push_back(tensorOf({tokens, experts}, i32));
    break;
  }
  return success();
}

LogicalResult DispatchOp::verify() {
  Operation *op = getOperation();
  if (failed(checkRank(op, "input", getInput(), {"T", "H"})))
    return failure();
  int64_t tokens = dimOrDynamic(getInput().getType(), 0);
  int64_t experts = static_cast<int64_t>(getNumExperts());
  bool hasCapacity = getExpertCapacity() || getCapacityFactor();

  switch (getMode()) {
  case DispatchMode::Dropless:
  case DispatchMode::Capacity:
    if (failed(checkRank(op, "indices", getIndices(), {"T", "k"})) ||
        failed(checkOperandShape(
            op, "indices", getIndices(),
            {{"T", tokens}, {"k", dimOrDynamic(getIndices().getType(), 1)}})))
      return failure();
    break;
  case DispatchMode::ExpertChoice:
    if (failed(checkRank(op, "indices", getIndices(), {"E", "C"})) ||
        failed(checkOperandShape(
            op, "indices", getIndices(),
            {{"E", experts}, {"C", dimOrDynamic(getIndices().getType(), 1)}})))
      return failure();
    break;
  }

  if (getMode() == DispatchMode::Capacity) {
    if (!hasCapacity)
      return emitOpError("capacity dispatch requires expert_capacity or "
                         "capacity_factor");
    if (getExpertCapacity() && getCapacityFactor())
      return emitOpError(
          "expert_capacity and capacity_factor are mutually exclusive");
    if (auto factor = toFloat(getCapacityFactor()); factor && !(*factor > 0.0f))
      return emitOpError() << "capacity_factor must be positive, got "
                           << *factor;
  } else if (hasCapacity) {
    return emitOpError() << "expert_capacity/capacity_factor only apply to "
                            "capacity dispatch, not "
                         << stringifyDispatchMode(getMode());
  }
  return success();
}

//===----------------------------------------------------------------------===//
// ExpertFfnOp
//===----------------------------------------------------------------------===//

LogicalResult ExpertFfnOp::inferReturnTypes(MLIRContext *context,
                                            std::optional<Location>,
                                            Adaptor adaptor,
                                            SmallVectorImpl<Type> &types) {
  types.push_back(adaptor.getRows().getType());
  return success();
}

LogicalResult ExpertFfnOp::verify() {
  Operation *op = getOperation();
  auto rowsType = llvm::dyn_cast<RankedTensorType>(getRows().getType());
  if (!rowsType || (rowsType.getRank() != 2 && rowsType.getRank() != 3))
    return emitOpError() << "operand 'rows' must have rank 2 [N, H] or rank 3 "
                            "[E, C, H], got "
                         << getRows().getType();
  bool fused = getGating() == Gating::Concatenated ||
               getGating() == Gating::Interleaved;
  if (failed(checkRank(op, "fc1", getFc1(), {"E", fused ? "2I" : "I", "H"})))
    return failure();
  int64_t experts = dimOrDynamic(getFc1().getType(), 0);
  int64_t hidden = rowsType.getShape().back();
  if (rowsType.getRank() == 3 &&
      failed(checkOperandShape(op, "rows", getRows(),
                               {{"E", experts},
                                {"C", rowsType.getDimSize(1)},
                                {"H", hidden}})))
    return failure();
  if (failed(checkOperandShape(op, "counts", getCounts(), {{"E", experts}})))
    return failure();
  return verifyFfn(op, ffnOperandsOf(*this), {{"E", experts}}, hidden);
}

//===----------------------------------------------------------------------===//
// CombineOp
//===----------------------------------------------------------------------===//

LogicalResult CombineOp::inferReturnTypes(MLIRContext *context,
                                          std::optional<Location>,
                                          Adaptor adaptor,
                                          SmallVectorImpl<Type> &types) {
  Type outType = adaptor.getExpertOut().getType();
  int64_t hidden = kDyn;
  if (auto tensor = llvm::dyn_cast<RankedTensorType>(outType);
      tensor && tensor.getRank() > 0)
    hidden = tensor.getShape().back();
  int64_t tokens = dimOrDynamic(adaptor.getMapping().getType(), 0);
  types.push_back(tensorOf({tokens, hidden},
                           elementTypeOr(outType, Float32Type::get(context))));
  return success();
}

LogicalResult CombineOp::verify() {
  Operation *op = getOperation();
  auto outType = llvm::dyn_cast<RankedTensorType>(getExpertOut().getType());
  bool rowList = getMode() == DispatchMode::Dropless;
  if (!outType || outType.getRank() != (rowList ? 2 : 3))
    return emitOpError() << "operand 'expert_out' must have rank "
                         << (rowList ? "2 [N, H]" : "3 [E, C, H]") << " in "
                         << stringifyDispatchMode(getMode())
                         << " mode, got " << getExpertOut().getType();
  int64_t hidden = outType.getShape().back();

  if (failed(checkRank(op, "mapping", getMapping(),
                       getMode() == DispatchMode::ExpertChoice
                           ? ArrayRef<StringRef>{"T", "E"}
                           : ArrayRef<StringRef>{"T", "k"})))
    return failure();
  int64_t tokens = dimOrDynamic(getMapping().getType(), 0);
  int64_t second = dimOrDynamic(getMapping().getType(), 1);

  if (getMode() == DispatchMode::ExpertChoice) {
    if (failed(checkOperandShape(op, "mapping", getMapping(),
                                 {{"T", tokens}, {"E", outType.getDimSize(0)}})))
      return failure();
    if (failed(checkOperandShape(
            op, "weights", getWeights(),
            {{"E", outType.getDimSize(0)}, {"C", outType.getDimSize(1)}})))
      return failure();
  } else if (failed(checkOperandShape(op, "weights", getWeights(),
                                      {{"T", tokens}, {"k", second}}))) {
    return failure();
  }

  if (getPassthrough()) {
    if (getMode() == DispatchMode::ExpertChoice)
      return emitOpError("operand 'passthrough' has no meaning in "
                         "expert_choice mode (no token is dropped there)");
    if (failed(checkOperandShape(op, "passthrough", getPassthrough(),
                                 {{"T", tokens}, {"H", hidden}})))
      return failure();
  }
  return success();
}

//===----------------------------------------------------------------------===//
// RoutedFfnOp
//===----------------------------------------------------------------------===//

int64_t RoutedFfnOp::getNumExperts() {
  return dimOrDynamic(getFc1().getType(), 0);
}

LogicalResult RoutedFfnOp::inferReturnTypes(MLIRContext *context,
                                            std::optional<Location>,
                                            Adaptor adaptor,
                                            SmallVectorImpl<Type> &types) {
  types.push_back(adaptor.getInput().getType());
  return success();
}

LogicalResult RoutedFfnOp::verify() {
  Operation *op = getOperation();
  if (failed(checkRank(op, "input", getInput(), {"T", "H"})) ||
      failed(checkRank(op, "indices", getIndices(), {"T", "k"})))
    return failure();
  int64_t tokens = dimOrDynamic(getInput().getType(), 0);
  int64_t hidden = dimOrDynamic(getInput().getType(), 1);
  int64_t k = dimOrDynamic(getIndices().getType(), 1);
  if (failed(checkOperandShape(op, "indices", getIndices(),
                               {{"T", tokens}, {"k", k}})) ||
      failed(checkOperandShape(op, "weights", getWeights(),
                               {{"T", tokens}, {"k", k}})))
    return failure();
  bool fused = getGating() == Gating::Concatenated ||
               getGating() == Gating::Interleaved;
  if (failed(checkRank(op, "fc1", getFc1(), {"E", fused ? "2I" : "I", "H"})))
    return failure();
  // E is what the dispatch it stands for would take as `experts`.
  if (ShapedType::isDynamic(getNumExperts()) || getNumExperts() < 1)
    return emitOpError() << "operand 'fc1' must have a static, positive "
                            "number of experts in dimension 0, got "
                         << getFc1().getType();
  return verifyFfn(op, ffnOperandsOf(*this), {{"E", getNumExperts()}},
                   hidden);
}

//===----------------------------------------------------------------------===//
// SharedExpertOp
//===----------------------------------------------------------------------===//

LogicalResult SharedExpertOp::inferReturnTypes(MLIRContext *context,
                                               std::optional<Location>,
                                               Adaptor adaptor,
                                               SmallVectorImpl<Type> &types) {
  types.push_back(adaptor.getInput().getType());
  return success();
}

LogicalResult SharedExpertOp::verify() {
  Operation *op = getOperation();
  if (failed(checkRank(op, "input", getInput(), {"T", "H"})))
    return failure();
  int64_t hidden = dimOrDynamic(getInput().getType(), 1);
  if (failed(verifyFfn(op, ffnOperandsOf(*this), {}, hidden)))
    return failure();
  if (getGate()) {
    if (failed(checkOperandShape(op, "gate", getGate(),
                                 {{"", 1}, {"H", hidden}})) ||
        failed(checkElementType(op, "gate", getGate(),
                                getElementTypeOrSelf(getFc1().getType()),
                                "fc1")))
      return failure();
  }
  return success();
}

//===----------------------------------------------------------------------===//
// StackExpertsOp
//===----------------------------------------------------------------------===//

int64_t StackExpertsOp::getNumSharedExperts() {
  auto routed = llvm::cast<RankedTensorType>(getRouted().getType());
  auto shared = llvm::cast<RankedTensorType>(getShared().getType());
  int64_t dim = getSplitDim();
  return shared.getDimSize(dim) / routed.getDimSize(dim + 1);
}

LogicalResult StackExpertsOp::inferReturnTypes(MLIRContext *context,
                                               std::optional<Location>,
                                               Adaptor adaptor,
                                               SmallVectorImpl<Type> &types) {
  auto routed = llvm::dyn_cast<RankedTensorType>(adaptor.getRouted().getType());
  auto shared = llvm::dyn_cast<RankedTensorType>(adaptor.getShared().getType());
  if (!routed || !shared || routed.getRank() != 3 || shared.getRank() != 2) {
    // The verifier names what is wrong.
    types.push_back(tensorOf({kDyn, kDyn, kDyn},
                             elementTypeOr(adaptor.getRouted().getType(),
                                           Float32Type::get(context))));
    return success();
  }
  int64_t dim = adaptor.getSplitDim();
  int64_t part = routed.getDimSize(dim + 1);
  int64_t whole = shared.getDimSize(dim);
  int64_t experts = kDyn;
  if (!ShapedType::isDynamic(routed.getDimSize(0)) &&
      !ShapedType::isDynamic(part) && !ShapedType::isDynamic(whole) &&
      part > 0)
    experts = routed.getDimSize(0) + whole / part;
  types.push_back(tensorOf({experts, routed.getDimSize(1),
                            routed.getDimSize(2)},
                           routed.getElementType()));
  return success();
}

LogicalResult StackExpertsOp::verify() {
  Operation *op = getOperation();
  if (failed(checkRank(op, "routed", getRouted(), {"E", "R", "C"})) ||
      failed(checkRank(op, "shared", getShared(), {"R'", "C'"})))
    return failure();
  auto routed = llvm::cast<RankedTensorType>(getRouted().getType());
  auto shared = llvm::cast<RankedTensorType>(getShared().getType());
  if (!routed.hasStaticShape() || !shared.hasStaticShape())
    return emitOpError() << "needs static shapes, got " << routed << " and "
                         << shared;
  if (routed.getElementType() != shared.getElementType())
    return emitOpError() << "operands 'routed' and 'shared' must have one "
                            "element type, got "
                         << routed.getElementType() << " and "
                         << shared.getElementType();
  int64_t dim = getSplitDim(), other = 1 - dim;
  int64_t part = routed.getDimSize(dim + 1);
  if (shared.getDimSize(other) != routed.getDimSize(other + 1))
    return emitOpError() << "operand 'shared' must have size "
                         << routed.getDimSize(other + 1) << " in dimension "
                         << other << " (that of 'routed' in dimension "
                         << other + 1 << "), got " << shared.getDimSize(other);
  if (part == 0 || shared.getDimSize(dim) % part != 0 ||
      shared.getDimSize(dim) == 0)
    return emitOpError() << "operand 'shared' must have a positive multiple "
                            "of "
                         << part << " in dimension " << dim
                         << " (split_dim), got " << shared.getDimSize(dim);
  return success();
}

#define GET_OP_CLASSES
#include "moe-mlir/Dialect/MoE/IR/MoEOps.cpp.inc"
