//===- ExpertParallel.cpp - the moe-expert-parallel pass ------------------===//
//
// Part of moe-mlir.
//
// Shards the experts of every MoE layer over an expert-parallel group (see
// the pass description in Passes.td). The placements come from the
// runtime's placement library (moe-mlir/Runtime/Placement.h, plain C++), so
// that the planner (moe-plan) and the compiler place experts identically.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Dialect/MoE/IR/MoE.h"
#include "moe-mlir/Dialect/MoE/Transforms/Passes.h"
#include "moe-mlir/Runtime/Placement.h"
#include "moe-mlir/Support/PassStatistics.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Builders.h"

namespace moe_mlir::moe {
#define GEN_PASS_DEF_MOEEXPERTPARALLEL
#include "moe-mlir/Dialect/MoE/Transforms/Passes.h.inc"
} // namespace moe_mlir::moe

using namespace mlir;
using namespace moe_mlir::moe;

static constexpr int64_t kDyn = ShapedType::kDynamic;

namespace {

/// One MoE layer: dispatch -> expert_ffn -> combine.
struct Layer {
  DispatchOp dispatch;
  ExpertFfnOp ffn;
  CombineOp combine;
};

/// The layer `combine` closes, if it is one this pass shards.
std::optional<Layer> matchLayer(CombineOp combine) {
  auto ffn = combine.getExpertOut().getDefiningOp<ExpertFfnOp>();
  if (!ffn)
    return std::nullopt;
  auto dispatch = ffn.getRows().getDefiningOp<DispatchOp>();
  // The expert outputs feed this combine alone: the rewrite replaces both.
  if (!dispatch || !ffn->hasOneUse() || ffn.getCounts() != dispatch.getCounts() ||
      combine.getMapping() != dispatch.getMapping() ||
      combine.getMode() != dispatch.getMode())
    return std::nullopt;
  return Layer{dispatch, ffn, combine};
}

/// An elementwise linalg.generic over an i32 [T, k] tensor.
Value mapIds(OpBuilder &b, Location loc, ValueRange inputs,
             function_ref<Value(OpBuilder &, Location, ValueRange)> body) {
  Value ids = inputs.front();
  auto type = cast<RankedTensorType>(ids.getType());
  SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, ids);
  Value init = tensor::EmptyOp::create(b, loc, sizes, type.getElementType());
  SmallVector<AffineMap> maps(inputs.size() + 1, b.getMultiDimIdentityMap(2));
  SmallVector<utils::IteratorType> iterators(2, utils::IteratorType::parallel);
  return linalg::GenericOp::create(
             b, loc, TypeRange{type}, inputs, ValueRange{init}, maps,
             iterators,
             [&](OpBuilder &nb, Location nl, ValueRange args) {
               linalg::YieldOp::create(nb, nl, body(nb, nl, args));
             })
      .getResult(0);
}

Value i32Constant(OpBuilder &b, Location loc, int64_t v) {
  return arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(v));
}

/// v in [0, experts).
Value isExpert(OpBuilder &b, Location loc, Value v, int64_t experts) {
  return arith::AndIOp::create(
      b, loc,
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sge, v,
                            i32Constant(b, loc, 0)),
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, v,
                            i32Constant(b, loc, experts)));
}

RankedTensorType withLeading(Type type, int64_t size) {
  auto t = cast<RankedTensorType>(type);
  SmallVector<int64_t> shape(t.getShape());
  shape[0] = size;
  return RankedTensorType::get(shape, t.getElementType());
}

struct MoEExpertParallelPass
    : moe_mlir::moe::impl::MoEExpertParallelBase<MoEExpertParallelPass> {
  using MoEExpertParallelBase::MoEExpertParallelBase;
  moe_mlir::PassCounter numLayers{this, "layers-sharded", "Number of MoE layers sharded over the ranks"};

  void runOnOperation() override;

private:
  /// The placement of layer `layer` with `experts` experts.
  FailureOr<std::vector<int32_t>> placeLayer(Operation *where, int layer,
                                             int64_t experts);
  LogicalResult shard(Layer layer, const std::vector<int32_t> &slotExperts,
                      int64_t slotsPerRank);

  moe_rt::RoutingProfile profile_;
  bool haveProfile_ = false;
};

} // namespace

FailureOr<std::vector<int32_t>>
MoEExpertParallelPass::placeLayer(Operation *where, int layer,
                                  int64_t experts) {
  int n = static_cast<int>(ranks);
  moe_rt::ExpertPlacement p;
  moe_rt::Status st;
  if (placement == "contiguous") {
    st = moe_rt::placeContiguous(static_cast<int>(experts), n, p);
  } else if (placement == "round-robin") {
    st = moe_rt::placeRoundRobin(static_cast<int>(experts), n, p);
  } else {
    std::vector<double> load(experts, 1.0);
    if (haveProfile_) {
      if (profile_.numExperts != experts)
        return where->emitError()
               << "moe-expert-parallel: routing profile '"
               << routingProfile.getValue() << "' has num_experts "
               << profile_.numExperts << ", MoE layer " << layer << " has "
               << experts;
      if (layer >= static_cast<int>(profile_.layers.size()))
        return where->emitError()
               << "moe-expert-parallel: routing profile '"
               << routingProfile.getValue() << "' has "
               << profile_.layers.size() << " layers, the model more (MoE "
               << "layer " << layer << ")";
      for (int64_t e = 0; e < experts; ++e)
        load[e] = static_cast<double>(profile_.layers[layer].expertCounts[e]);
    }
    st = moe_rt::placeBalanced(load, n, static_cast<int>(redundant), p);
  }
  if (!st)
    return where->emitError() << "moe-expert-parallel: cannot place the "
                              << experts << " experts of MoE layer " << layer
                              << " on " << ranks.getValue() << " ranks (" << placement
                              << "): " << st.message;
  size_t slots = 0;
  for (int r = 0; r < n; ++r)
    slots = std::max(slots, p.rankSlots(r).size());
  std::vector<int32_t> slotExperts(n * slots, -1);
  for (int r = 0; r < n; ++r)
    for (auto [s, e] : llvm::enumerate(p.rankSlots(r)))
      slotExperts[r * slots + s] = e;
  return slotExperts;
}

LogicalResult
MoEExpertParallelPass::shard(Layer layer,
                             const std::vector<int32_t> &slotExperts,
                             int64_t slotsPerRank) {
  DispatchOp dispatch = layer.dispatch;
  ExpertFfnOp ffn = layer.ffn;
  CombineOp combine = layer.combine;
  int64_t experts = static_cast<int64_t>(dispatch.getNumExperts());
  auto fn = combine->getParentOfType<func::FuncOp>();
  Block &entry = fn.getBody().front();

  // Everything is checked before anything changes.
  if (ShapedType::isDynamic(
          cast<RankedTensorType>(dispatch.getIndices().getType()).getDimSize(1)))
    return dispatch.emitOpError("moe-expert-parallel needs a static number "
                                "of experts per token (k)");

  // The weights become this rank's slots [S, ...]: a function argument used
  // by this op alone changes type (each rank binds its own experts); any
  // other weight (computed in the function, or shared with other ops) is
  // gathered from all E experts by moe.ep_slots.
  static const char *names[] = {"fc1",      "fc2",      "fc3",
                                "fc1_bias", "fc2_bias", "fc3_bias"};
  Value weights[] = {ffn.getFc1(),     ffn.getFc2(),     ffn.getFc3(),
                     ffn.getFc1Bias(), ffn.getFc2Bias(), ffn.getFc3Bias()};
  for (auto [name, w] : llvm::zip(names, weights))
    if (w && cast<RankedTensorType>(w.getType()).getDimSize(0) != experts)
      return ffn.emitOpError() << "operand '" << name << "' must have "
                               << experts << " experts in its leading "
                               << "dimension to be sharded";
  SmallVector<Value> localWeights;
  for (Value w : weights) {
    localWeights.push_back(w);
    if (!w)
      continue;
    auto arg = dyn_cast<BlockArgument>(w);
    if (arg && arg.getOwner() == &entry && w.hasOneUse() &&
        !fn.getArgAttr(arg.getArgNumber(), "moe.expert_slots")) {
      arg.setType(withLeading(arg.getType(), slotsPerRank));
      fn.setArgAttr(arg.getArgNumber(), "moe.expert_slots",
                    DenseI32ArrayAttr::get(fn.getContext(), slotExperts));
      continue;
    }
    OpBuilder wb(ffn);
    localWeights.back() = EpSlotsOp::create(
        wb, ffn.getLoc(), withLeading(w.getType(), slotsPerRank), w, ranks,
        slotExperts);
  }

  OpBuilder b(combine);
  Location loc = combine.getLoc();
  Value x = dispatch.getInput();
  Value ids = dispatch.getIndices();
  // Capacity layers exchange the assignments their dispatch admitted.
  if (dispatch.getMode() == DispatchMode::Capacity)
    ids = mapIds(b, loc, {ids, dispatch.getMapping()},
                 [&](OpBuilder &nb, Location nl, ValueRange a) -> Value {
                   Value admitted = arith::CmpIOp::create(
                       nb, nl, arith::CmpIPredicate::sge, a[1],
                       i32Constant(nb, nl, 0));
                   return arith::SelectOp::create(nb, nl, admitted, a[0],
                                                  i32Constant(nb, nl, -1));
                 });

  auto xType = cast<RankedTensorType>(x.getType());
  auto idsType = cast<RankedTensorType>(ids.getType());
  int64_t tokens = xType.getDimSize(0), hidden = xType.getDimSize(1);
  int64_t k = idsType.getDimSize(1);
  int64_t capacity =
      ShapedType::isDynamic(tokens) || ShapedType::isDynamic(k) ? kDyn
                                                                : tokens * k;
  Type elementType = xType.getElementType();
  auto rowsType = RankedTensorType::get({capacity, hidden}, elementType);
  auto i32 = b.getI32Type();
  auto ep = EpDispatchOp::create(
      b, loc, rowsType, RankedTensorType::get({slotsPerRank}, i32),
      RankedTensorType::get({capacity}, i32), x, ids, ranks, experts,
      slotExperts);

  IRMapping map;
  map.map(ffn.getRows(), ep.getRows());
  map.map(ffn.getCounts(), ep.getCounts());
  for (auto [w, local] : llvm::zip(weights, localWeights))
    if (w && local != w)
      map.map(w, local);
  Operation *local = b.clone(*ffn, map);
  local->getResult(0).setType(rowsType);

  auto homeRowsType = RankedTensorType::get({kDyn, hidden}, elementType);
  Value back = EpReturnOp::create(b, loc, homeRowsType, local->getResult(0),
                                  ep.getSource(), ids, ranks);
  auto home = [&](Value v) -> Value {
    return EpHomeOp::create(b, loc, withLeading(v.getType(), kDyn), v, ranks);
  };
  Value homeIds = home(ids);
  Value homeWeights = home(combine.getWeights());
  Value homePass = combine.getPassthrough() ? home(combine.getPassthrough())
                                            : Value();
  Value homeMap = mapIds(
      b, loc, {homeIds}, [&](OpBuilder &nb, Location nl, ValueRange a) -> Value {
        Value t = linalg::IndexOp::create(nb, nl, 0);
        Value j = linalg::IndexOp::create(nb, nl, 1);
        Value kk = arith::ConstantIndexOp::create(nb, nl, k);
        Value row = arith::AddIOp::create(
            nb, nl, arith::MulIOp::create(nb, nl, t, kk), j);
        Value row32 = arith::IndexCastOp::create(nb, nl, nb.getI32Type(), row);
        return arith::SelectOp::create(nb, nl, isExpert(nb, nl, a[0], experts),
                                       row32, i32Constant(nb, nl, -1));
      });
  Value homeOut = CombineOp::create(b, loc, homeRowsType, back, homeMap,
                                    homeWeights, homePass,
                                    DispatchMode::Dropless);
  Value allTokens = tensor::DimOp::create(b, loc, x, 0);
  Value out = EpAllGatherOp::create(b, loc, combine.getResult().getType(),
                                    homeOut, allTokens, ranks);
  combine.getResult().replaceAllUsesWith(out);
  combine.erase();
  ffn.erase();
  if (dispatch->use_empty())
    dispatch.erase();
  fn.setType(FunctionType::get(fn.getContext(), entry.getArgumentTypes(),
                               fn.getResultTypes()));
  return success();
}

void MoEExpertParallelPass::runOnOperation() {
  ModuleOp module = getOperation();
  if (ranks < 1) {
    module.emitError() << "moe-expert-parallel: ranks must be at least 1, got "
                       << ranks.getValue();
    return signalPassFailure();
  }
  if (placement != "contiguous" && placement != "round-robin" &&
      placement != "balanced") {
    module.emitError() << "moe-expert-parallel: unknown placement '"
                       << placement
                       << "' (expected contiguous, round-robin or balanced)";
    return signalPassFailure();
  }
  if (placement != "balanced" && (redundant != 0 || !routingProfile.empty())) {
    module.emitError() << "moe-expert-parallel: redundant experts and a "
                          "routing profile need placement=balanced";
    return signalPassFailure();
  }
  if (redundant < 0) {
    module.emitError() << "moe-expert-parallel: redundant must be >= 0, got "
                       << redundant.getValue();
    return signalPassFailure();
  }
  if (ranks == 1)
    return;
  if (!routingProfile.empty()) {
    if (moe_rt::Status st =
            moe_rt::readRoutingProfile(routingProfile, profile_);
        !st) {
      module.emitError() << "moe-expert-parallel: " << st.message;
      return signalPassFailure();
    }
    haveProfile_ = true;
  }

  if (failed(inlineMoELayerCalls(module)))
    return signalPassFailure();
  int sharded = 0;
  for (auto fn : module.getOps<func::FuncOp>()) {
    if (fn.isExternal())
      continue;
    SmallVector<Layer> layers;
    WalkResult walked = fn.walk([&](Operation *op) {
      if (isa<RoutedFfnOp>(op)) {
        op->emitOpError("moe-expert-parallel: a layer already fused by "
                        "moe-fuse-dispatch-combine cannot be sharded; run "
                        "moe-expert-parallel before moe-optimize");
        return WalkResult::interrupt();
      }
      if (auto combine = dyn_cast<CombineOp>(op)) {
        std::optional<Layer> layer = matchLayer(combine);
        if (!layer) {
          combine.emitOpError("moe-expert-parallel: not the combine of a "
                              "moe.dispatch -> moe.expert_ffn layer whose "
                              "expert outputs it alone reads; cannot shard it");
          return WalkResult::interrupt();
        }
        if (combine.getMode() == DispatchMode::ExpertChoice) {
          combine.emitOpError("moe-expert-parallel: expert-choice routing "
                              "cannot be sharded yet (token-choice layers "
                              "only)");
          return WalkResult::interrupt();
        }
        layers.push_back(*layer);
      }
      return WalkResult::advance();
    });
    if (walked.wasInterrupted())
      return signalPassFailure();
    if (layers.empty())
      continue;
    if (!SymbolTable::symbolKnownUseEmpty(fn, module)) {
      fn.emitError() << "moe-expert-parallel: @" << fn.getSymName()
                     << " is called in the module; only entry functions can "
                        "be sharded (their weight arguments change)";
      return signalPassFailure();
    }
    // Layers are numbered per function, as moe-expose-routing numbers the
    // routers whose profile balances them.
    int layerIndex = 0;
    for (Layer &layer : layers) {
      int64_t experts = static_cast<int64_t>(layer.dispatch.getNumExperts());
      FailureOr<std::vector<int32_t>> slots =
          placeLayer(layer.combine, layerIndex, experts);
      if (failed(slots))
        return signalPassFailure();
      int64_t slotsPerRank = static_cast<int64_t>(slots->size()) / ranks;
      if (failed(shard(layer, *slots, slotsPerRank)))
        return signalPassFailure();
      ++layerIndex;
      ++sharded;
      ++numLayers;
    }
    fn->setAttr("moe.expert_parallel",
                IntegerAttr::get(IntegerType::get(fn.getContext(), 64), ranks));
  }
  if (sharded == 0) {
    module.emitError() << "moe-expert-parallel: no MoE layer (moe.dispatch -> "
                          "moe.expert_ffn -> moe.combine) to shard over "
                       << ranks.getValue() << " ranks";
    return signalPassFailure();
  }
}
