//===- FuseSharedExpert.cpp - the moe-fuse-shared-expert pass -------------===//
//
// Part of moe-mlir.
//
// A MoE layer with a shared expert,
//
//   ids, w = route(h); rows, counts, map = dispatch(h, ids)
//   out = combine(expert_ffn(rows, counts), map, w) + shared_expert(h)
//
// becomes one routed layer in which the shared expert is m more experts
// (E .. E+m-1) that every token selects:
//
//   ids' = [ids | E .. E+m-1], w' = [w | g .. g]   (g = the shared gate, or 1)
//   out  = combine(expert_ffn'(dispatch(h, ids')), map', w')
//
// with the shared FFN of width m·I cut into m experts of the routed width I
// (moe.stack_experts), so that one grouped FFN runs routed and shared work
// together.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Dialect/MoE/IR/MoE.h"
#include "moe-mlir/Dialect/MoE/Transforms/Passes.h"
#include "moe-mlir/Support/PassStatistics.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Remarks.h"

namespace moe_mlir::moe {
#define GEN_PASS_DEF_MOEFUSESHAREDEXPERT
#include "moe-mlir/Dialect/MoE/Transforms/Passes.h.inc"
} // namespace moe_mlir::moe

using namespace mlir;
using namespace moe_mlir::moe;

namespace {

/// The routed half of a layer: route -> dispatch -> expert_ffn -> combine,
/// dropless, every intermediate result used by the next op only.
struct RoutedLayer {
  RouteOp route;
  DispatchOp dispatch;
  ExpertFfnOp ffn;
  CombineOp combine;
};

/// Whether an FFN op (moe.expert_ffn or moe.shared_expert) has a bias.
template <typename FfnOp>
bool hasBias(FfnOp op) {
  return op.getFc1Bias() || op.getFc2Bias() || op.getFc3Bias();
}

/// Why `combine` is not the end of a routed layer the shared expert can
/// join, or the layer.
FailureOr<RoutedLayer> routedLayerOf(CombineOp combine, std::string &why) {
  auto fail = [&](StringRef reason) {
    why = reason.str();
    return failure();
  };
  if (combine.getMode() != DispatchMode::Dropless)
    return fail("the routed experts are not dropless");
  if (combine.getPassthrough())
    return fail("the combine has a passthrough for dropped tokens");
  if (!combine->hasOneUse())
    return fail("the routed output has other uses");
  auto ffn = combine.getExpertOut().getDefiningOp<ExpertFfnOp>();
  if (!ffn || !ffn->hasOneUse())
    return fail("the combined rows do not come from one moe.expert_ffn");
  auto dispatch = ffn.getRows().getDefiningOp<DispatchOp>();
  if (!dispatch || dispatch.getMode() != DispatchMode::Dropless ||
      ffn.getCounts() != dispatch.getCounts() ||
      combine.getMapping() != dispatch.getMapping())
    return fail("the expert rows do not come from one dropless moe.dispatch");
  if (!dispatch.getRows().hasOneUse() || !dispatch.getCounts().hasOneUse() ||
      !dispatch.getMapping().hasOneUse())
    return fail("the dispatch results have other uses");
  auto route = dispatch.getIndices().getDefiningOp<RouteOp>();
  if (!route || route.getMode() != RoutingMode::TokenChoice ||
      combine.getWeights() != route.getWeights())
    return fail("the routing does not come from one token-choice moe.route");
  return RoutedLayer{route, dispatch, ffn, combine};
}

/// Why the shared FFN cannot become experts of `ffn`'s stack, or the number
/// m of routed-width experts it becomes.
FailureOr<int64_t> sharedSlots(SharedExpertOp shared, ExpertFfnOp ffn,
                               std::string &why) {
  auto fail = [&](StringRef reason) {
    why = reason.str();
    return failure();
  };
  if (shared.getActivation() != ffn.getActivation() ||
      shared.getGating() != ffn.getGating() ||
      shared.getActivationAlpha() != ffn.getActivationAlpha() ||
      shared.getActivationBeta() != ffn.getActivationBeta() ||
      shared.getClampLimit() != ffn.getClampLimit())
    return fail("the shared and routed FFNs differ in activation, gating or "
                "clamp");
  if (shared.getGating() != Gating::Separate &&
      shared.getGating() != Gating::None)
    return fail("fc1 holds gate and up together (concatenated or "
                "interleaved gating)");
  if (hasBias(shared) || hasBias(ffn))
    return fail("an FFN has biases");
  auto routed = cast<RankedTensorType>(ffn.getFc1().getType());
  auto own = cast<RankedTensorType>(shared.getFc1().getType());
  if (!routed.hasStaticShape() || !own.hasStaticShape())
    return fail("the weights have dynamic shapes");
  if (routed.getElementType() != own.getElementType())
    return fail("the shared and routed weights differ in element type");
  int64_t width = routed.getDimSize(1);
  if (own.getDimSize(0) % width != 0)
    return fail("the shared width is not a multiple of the routed width " +
                std::to_string(width));
  return own.getDimSize(0) / width;
}

struct MoEFuseSharedExpertPass
    : moe_mlir::moe::impl::MoEFuseSharedExpertBase<MoEFuseSharedExpertPass> {
  using MoEFuseSharedExpertBase::MoEFuseSharedExpertBase;
  moe_mlir::PassCounter numFused{this, "fused", "Shared experts fused into their routed layer"};
  moe_mlir::PassCounter numNotFused{this, "not-fused", "Shared experts left alone"};

  void fuse(SharedExpertOp shared) {
    auto opts = remark::RemarkOpts::name("SharedExpertFusion")
                    .category(getArgument())
                    .subCategory(shared->getName().getStringRef());
    auto missed = [&](StringRef why) {
      ++numNotFused;
      remark::missed(shared.getLoc(), opts) << "not fused: " << why;
    };
    // The shared output must be added to a routed output, and nothing else.
    if (!shared->hasOneUse())
      return missed("the shared output has other uses than one addition");
    auto add = dyn_cast<arith::AddFOp>(*shared->user_begin());
    if (!add || add.getLhs() == add.getRhs())
      return missed("the shared output is not added to a routed output (a "
                    "dense MLP)");
    Value other = add.getLhs() == shared.getResult() ? add.getRhs()
                                                     : add.getLhs();
    auto combine = other.getDefiningOp<CombineOp>();
    if (!combine)
      return missed("the shared output is not added to a routed output (a "
                    "dense MLP)");
    std::string why;
    FailureOr<RoutedLayer> layer = routedLayerOf(combine, why);
    if (failed(layer))
      return missed(why);
    if (layer->dispatch.getInput() != shared.getInput())
      return missed("the shared and routed experts read different inputs");
    if (add.getType() != combine.getType())
      return missed("the addition changes the type");
    FailureOr<int64_t> slots = sharedSlots(shared, layer->ffn, why);
    if (failed(slots))
      return missed(why);
    rewrite(shared, add, *layer, *slots);
    ++numFused;
    remark::passed(shared.getLoc(), opts)
        << "shared expert fused as " << std::to_string(*slots)
        << (*slots == 1 ? " always-selected slot" : " always-selected slots")
        << " of the routed experts";
  }

  void rewrite(SharedExpertOp shared, arith::AddFOp add, RoutedLayer &layer,
               int64_t slots) {
    OpBuilder b(add);
    Location loc = shared.getLoc();
    MLIRContext *ctx = b.getContext();
    Value h = shared.getInput();
    Value ids = layer.route.getIndices(), weights = layer.route.getWeights();
    auto idsType = cast<RankedTensorType>(ids.getType());
    int64_t k = idsType.getDimSize(1);
    int64_t experts = layer.dispatch.getNumExperts();
    OpFoldResult tokens = tensor::getMixedSize(b, loc, ids, 0);
    auto twoD = [&](int64_t cols, Type element) {
      return tensor::EmptyOp::create(b, loc,
                                     ArrayRef<OpFoldResult>{
                                         tokens, b.getIndexAttr(cols)},
                                     element)
          .getResult();
    };
    AffineMap id2 = b.getMultiDimIdentityMap(2);
    auto parallel2 = SmallVector<utils::IteratorType>(
        2, utils::IteratorType::parallel);

    // The new slots' expert ids, E + j in column j.
    Value idsInit = twoD(slots, b.getI32Type());
    Value extraIds =
        linalg::GenericOp::create(
            b, loc, TypeRange{idsInit.getType()}, ValueRange{},
            ValueRange{idsInit},
            ArrayRef<AffineMap>{id2}, parallel2,
            [&](OpBuilder &nb, Location l, ValueRange) {
              Value j = arith::IndexCastOp::create(
                  nb, l, nb.getI32Type(), linalg::IndexOp::create(nb, l, 1));
              linalg::YieldOp::create(
                  nb, l,
                  ValueRange{arith::AddIOp::create(
                      nb, l, j,
                      arith::ConstantIntOp::create(nb, l, nb.getI32Type(),
                                                   experts))});
            })
            .getResult(0);

    // Their weights: the shared gate sigmoid(h · gateᵀ) (f32 products, as
    // moe.shared_expert computes it), or 1.
    Type f32 = b.getF32Type();
    Value extraWeights;
    Value one = arith::ConstantOp::create(b, loc, f32, b.getF32FloatAttr(1.0f));
    if (Value gate = shared.getGate()) {
      Value logit = buildMatmulTransposedB(b, loc, h, gate); // [T, 1]
      AffineMap firstColumn =
          AffineMap::get(2, 0, {b.getAffineDimExpr(0),
                                b.getAffineConstantExpr(0)},
                         ctx);
      Value weightsInit = twoD(slots, f32);
      extraWeights =
          linalg::GenericOp::create(
              b, loc, TypeRange{weightsInit.getType()}, ValueRange{logit},
              ValueRange{weightsInit},
              ArrayRef<AffineMap>{firstColumn, id2}, parallel2,
              [&](OpBuilder &nb, Location l, ValueRange a) {
                Value e = math::ExpOp::create(
                    nb, l, arith::NegFOp::create(nb, l, a[0]));
                Value g = arith::DivFOp::create(
                    nb, l, one, arith::AddFOp::create(nb, l, one, e));
                linalg::YieldOp::create(nb, l, ValueRange{g});
              })
              .getResult(0);
    } else {
      extraWeights =
          linalg::FillOp::create(b, loc, one, twoD(slots, f32)).getResult(0);
    }

    // [T, k + m]: the routed columns, then the shared ones.
    auto append = [&](Value routed, Value extra, Type element) -> Value {
      SmallVector<OpFoldResult> ones(2, b.getIndexAttr(1));
      Value all = twoD(k + slots, element);
      all = tensor::InsertSliceOp::create(
          b, loc, routed, all,
          ArrayRef<OpFoldResult>{b.getIndexAttr(0), b.getIndexAttr(0)},
          ArrayRef<OpFoldResult>{tokens, b.getIndexAttr(k)}, ones);
      return tensor::InsertSliceOp::create(
          b, loc, extra, all,
          ArrayRef<OpFoldResult>{b.getIndexAttr(0), b.getIndexAttr(k)},
          ArrayRef<OpFoldResult>{tokens, b.getIndexAttr(slots)}, ones);
    };
    Value allIds = append(ids, extraIds, b.getI32Type());
    Value allWeights = append(weights, extraWeights, f32);

    auto dispatch = DispatchOp::create(
        b, layer.dispatch.getLoc(), h, allIds, DispatchMode::Dropless,
        experts + slots, IntegerAttr(), FloatAttr());
    auto stack = [&](Value routed, Value own, int64_t splitDim) -> Value {
      if (!routed)
        return routed;
      return StackExpertsOp::create(b, loc, routed, own, splitDim);
    };
    ExpertFfnOp old = layer.ffn;
    auto ffn = ExpertFfnOp::create(
        b, old.getLoc(), dispatch.getRows(), dispatch.getCounts(),
        stack(old.getFc1(), shared.getFc1(), 0),
        stack(old.getFc2(), shared.getFc2(), 1),
        stack(old.getFc3(), shared.getFc3(), 0), Value(), Value(), Value(),
        old.getActivationAttr(), old.getGatingAttr(),
        old.getActivationAlphaAttr(), old.getActivationBetaAttr(),
        old.getClampLimitAttr(),
        old.getFuseGateUp() && shared.getFuseGateUp() ? b.getUnitAttr()
                                                      : UnitAttr());
    auto combine = CombineOp::create(b, layer.combine.getLoc(), ffn.getResult(),
                                     dispatch.getMapping(), allWeights,
                                     Value(), DispatchMode::Dropless);
    Value result = combine.getResult();
    if (result.getType() != add.getType())
      result = tensor::CastOp::create(b, loc, add.getType(), result);
    add.replaceAllUsesWith(result);
    add.erase();
    shared.erase();
    layer.combine.erase();
    layer.ffn.erase();
    layer.dispatch.erase();
  }

  void runOnOperation() override {
    SmallVector<SharedExpertOp> shared;
    getOperation()->walk([&](SharedExpertOp op) { shared.push_back(op); });
    for (SharedExpertOp op : shared)
      fuse(op);
  }
};

} // namespace
