//===- MoEOps.cpp - ONNX Runtime's MoE operators to moe ops ---------------===//
//
// Part of moe-mlir's ONNX frontend.
//
// com.microsoft.MoE (ONNX Runtime 1.30's contrib operator) and the MoE
// blocks RaiseMoE.cpp recognised in decomposed graphs become
// moe.route -> moe.dispatch -> moe.expert_ffn -> moe.combine.
//
// com.microsoft.MoE inputs: 0 input [T, H] or [B, S, H]; 1 router_probs
// [T, E], which ONNX Runtime treats as logits (softmax over all experts in
// f32, top-k, renormalized when normalize_routing_weights = 1); 2
// fc1_experts_weights [E, I, H] ([E, 2I, H] for fused SwiGLU); 3
// fc1_experts_bias; 4 fc2_experts_weights [E, H, I]; 5 fc2_experts_bias; 6
// fc3_experts_weights [E, I, H]; 7 fc3_experts_bias. Every expert matrix is
// an nn.Linear weight [out, in]. The older layout (fc1 [E, H, I]) is
// refused whenever the shapes tell it apart.
//
//===----------------------------------------------------------------------===//

#include "GraphImporter.h"
#include "MoEEmitter.h"

#include "moe-mlir/Dialect/MoE/IR/MoE.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"

using namespace mlir;
using namespace moe_mlir;
using namespace moe_mlir::onnx_import;

namespace {

Operation *genericOp(GraphImporter &g, StringRef name, ValueRange operands,
                     TypeRange results, ArrayRef<NamedAttribute> attrs,
                     ArrayRef<int32_t> segments = {}) {
  OperationState state(g.loc(), name);
  state.addOperands(operands);
  state.addTypes(results);
  state.addAttributes(attrs);
  if (!segments.empty())
    state.addAttribute("operandSegmentSizes",
                       g.b().getDenseI32ArrayAttr(segments));
  return g.b().create(state);
}

} // namespace

FailureOr<Value> moe_mlir::onnx_import::emitMoE(GraphImporter &g,
                                                const MoESpec &spec) {
  OpBuilder &b = g.b();
  MLIRContext *ctx = g.ctx();
  auto inputType = cast<RankedTensorType>(spec.input.getType());
  int64_t hidden = inputType.getShape().back();
  auto fc1Type = cast<RankedTensorType>(spec.fc1.getType());
  int64_t experts = fc1Type.getDimSize(0);

  // Tokens as rows [N, H].
  SmallVector<OpFoldResult> inputDims = g.dims(spec.input);
  Value rowsIn = spec.input;
  if (inputType.getRank() != 2) {
    OpFoldResult n = b.getIndexAttr(1);
    Value dynamic;
    int64_t staticN = 1;
    for (size_t d = 0; d + 1 < inputDims.size(); ++d) {
      if (auto c = getConstantIntValue(inputDims[d])) {
        staticN *= *c;
        continue;
      }
      Value v = g.indexValue(inputDims[d]);
      dynamic = dynamic ? arith::MulIOp::create(b, g.loc(), dynamic, v) : v;
    }
    if (dynamic)
      n = arith::MulIOp::create(b, g.loc(), dynamic,
                                g.indexValue(b.getIndexAttr(staticN)))
              .getResult();
    else
      n = b.getIndexAttr(staticN);
    rowsIn = g.reshape(spec.input, {n, b.getIndexAttr(hidden)});
  }
  Value routerIn = spec.logits ? spec.logits : rowsIn;
  if (spec.logits &&
      cast<RankedTensorType>(spec.logits.getType()).getRank() != 2)
    routerIn = g.reshape(spec.logits, {g.dim(rowsIn, 0),
                                       b.getIndexAttr(experts)});

  // Route.
  int64_t k = spec.k;
  SmallVector<Value> routeOperands = {routerIn};
  SmallVector<int32_t> routeSegments = {1, 0, 0, 0};
  if (spec.routerWeight) {
    routeOperands.push_back(spec.routerWeight);
    routeSegments[1] = 1;
  }
  if (spec.routerBias) {
    routeOperands.push_back(spec.routerBias);
    routeSegments[2] = 1;
  }
  SmallVector<NamedAttribute> routeAttrs = {
      b.getNamedAttr("k", b.getI64IntegerAttr(k)),
      b.getNamedAttr("scoring", moe::ScoringAttr::get(ctx, spec.scoring))};
  if (spec.renormalize)
    routeAttrs.push_back(b.getNamedAttr("renormalize", b.getUnitAttr()));
  // Routing-weight epsilon and scaling (raised decomposed blocks).
  if (spec.renormalizeEpsilon != 0.0f)
    routeAttrs.push_back(b.getNamedAttr(
        "renormalize_epsilon", b.getF32FloatAttr(spec.renormalizeEpsilon)));
  if (spec.routedScalingFactor != 1.0f)
    routeAttrs.push_back(b.getNamedAttr(
        "routed_scaling_factor", b.getF32FloatAttr(spec.routedScalingFactor)));
  Type i32 = b.getI32Type(), f32 = b.getF32Type();
  auto dyn = ShapedType::kDynamic;
  Operation *route =
      genericOp(g, "moe.route", routeOperands,
                {RankedTensorType::get({dyn, k}, i32),
                 RankedTensorType::get({dyn, k}, f32)},
                routeAttrs, routeSegments);

  // Dispatch, experts, combine.
  auto rowsType = RankedTensorType::get({dyn, hidden},
                                        inputType.getElementType());
  auto dropless = moe::DispatchModeAttr::get(ctx, moe::DispatchMode::Dropless);
  Operation *dispatch = genericOp(
      g, "moe.dispatch", {rowsIn, route->getResult(0)},
      {rowsType, RankedTensorType::get({experts}, i32),
       RankedTensorType::get({dyn, k}, i32)},
      {b.getNamedAttr("mode", dropless),
       b.getNamedAttr("num_experts", b.getI64IntegerAttr(experts))});
  SmallVector<Value> ffnOperands = {dispatch->getResult(0),
                                    dispatch->getResult(1), spec.fc1,
                                    spec.fc2};
  SmallVector<int32_t> segments = {1, 1, 1, 1, 0, 0, 0, 0};
  auto optional = [&](Value v, size_t slot) {
    if (!v)
      return;
    ffnOperands.push_back(v);
    segments[slot] = 1;
  };
  optional(spec.fc3, 4);
  optional(spec.fc1Bias, 5);
  optional(spec.fc2Bias, 6);
  optional(spec.fc3Bias, 7);
  SmallVector<NamedAttribute> ffnAttrs = {
      b.getNamedAttr("activation",
                     moe::ActivationAttr::get(ctx, spec.activation)),
      b.getNamedAttr("gating", moe::GatingAttr::get(ctx, spec.gating))};
  if (spec.alpha != 1.0f)
    ffnAttrs.push_back(
        b.getNamedAttr("activation_alpha", b.getF32FloatAttr(spec.alpha)));
  if (spec.beta != 0.0f)
    ffnAttrs.push_back(
        b.getNamedAttr("activation_beta", b.getF32FloatAttr(spec.beta)));
  if (spec.clampLimit)
    ffnAttrs.push_back(
        b.getNamedAttr("clamp_limit", b.getF32FloatAttr(*spec.clampLimit)));
  Operation *ffn = genericOp(g, "moe.expert_ffn", ffnOperands, {rowsType},
                             ffnAttrs, segments);
  Operation *combine = genericOp(
      g, "moe.combine",
      {ffn->getResult(0), dispatch->getResult(2), route->getResult(1)},
      {rowsType}, {b.getNamedAttr("mode", dropless)});
  Value out = combine->getResult(0);
  if (inputType.getRank() != 2)
    out = g.reshape(out, inputDims);
  return out;
}

LogicalResult moe_mlir::onnx_import::setFfnActivation(GraphImporter &g,
                                                      MoESpec &spec,
                                                      bool hasFc3) {
  std::string act = g.attrString("activation_type", "relu");
  int64_t fusion = g.attrInt("swiglu_fusion", 0);
  bool swiglu = act == "swiglu";
  if (act == "relu") {
    spec.activation = moe::Activation::Relu;
  } else if (act == "gelu") {
    spec.activation = moe::Activation::GeluTanh;
  } else if (act == "silu") {
    spec.activation = moe::Activation::Silu;
  } else if (act == "identity") {
    spec.activation = moe::Activation::Identity;
  } else if (swiglu) {
    spec.activation = moe::Activation::Silu;
    spec.alpha = g.attrFloat("activation_alpha", 1.0);
    spec.beta = g.attrFloat("activation_beta", 0.0);
    if (const onnx::AttributeProto *limit = g.attribute("swiglu_limit")) {
      if (!(limit->f() > 0))
        return g.fail("swiglu_limit must be positive");
      spec.clampLimit = limit->f();
    }
  } else {
    return g.fail("activation_type '" + act + "' is not one of relu, gelu, "
                  "silu, swiglu, identity");
  }
  if (swiglu) {
    if (fusion == 1) {
      spec.gating = moe::Gating::Interleaved;
    } else if (fusion == 2) {
      spec.gating = moe::Gating::Concatenated;
    } else {
      if (!hasFc3)
        return g.fail("swiglu with swiglu_fusion = 0 needs "
                      "fc3_experts_weights (the linear projection)");
      spec.gating = moe::Gating::Separate;
    }
  } else if (hasFc3) {
    // A separate fc3 makes any activation gated: act(fc1 x) * (fc3 x).
    spec.gating = moe::Gating::Separate;
  } else {
    spec.gating = moe::Gating::None;
  }
  return success();
}

LogicalResult moe_mlir::onnx_import::expectShape(GraphImporter &g, size_t slot, StringRef what,
                          const OnnxValue &v, ArrayRef<int64_t> expected,
                          StringRef symbolic) {
  auto shape = v.type().getShape();
  bool ok = shape.size() == expected.size();
  for (size_t i = 0; ok && i < expected.size(); ++i)
    ok = ShapedType::isDynamic(expected[i]) ||
         ShapedType::isDynamic(shape[i]) || shape[i] == expected[i];
  if (ok)
    return success();
  return g.fail(what + " ('" + g.inputName(slot) + "') has shape " +
                shapeString(shape) + ", expected " + symbolic + " = " +
                shapeString(expected));
}

namespace {

LogicalResult convertMicrosoftMoE(GraphImporter &g) {
  const OnnxValue *input = g.input(0), *probs = g.input(1),
                  *fc1 = g.input(2), *fc2 = g.input(4);
  if (!input || !probs || !fc1 || !fc2)
    return failure();
  auto optionalInput = [&](size_t i) -> const OnnxValue * {
    return g.hasInput(i) ? g.input(i) : nullptr;
  };
  const OnnxValue *fc1Bias = optionalInput(3), *fc2Bias = optionalInput(5),
                  *fc3 = optionalInput(6), *fc3Bias = optionalInput(7);
  if ((g.hasInput(3) && !fc1Bias) || (g.hasInput(5) && !fc2Bias) ||
      (g.hasInput(6) && !fc3) || (g.hasInput(7) && !fc3Bias))
    return failure();
  if (g.numInputs() > 8)
    return g.fail("has " + std::to_string(g.numInputs()) +
                  " inputs; com.microsoft.MoE takes at most 8");

  // Element types.
  Type elem = input->elementType();
  if (!isa<Float32Type, Float16Type, BFloat16Type>(elem))
    return g.fail("input must be float, float16 or bfloat16");
  if (!isa<FloatType>(probs->elementType()))
    return g.fail("router_probs must be floating-point");
  Type weightElem = fc1->elementType();
  if (!isa<Float32Type, Float16Type, BFloat16Type>(weightElem))
    return g.fail("fc1_experts_weights must be float, float16 or bfloat16 "
                  "(quantized experts use com.microsoft.QMoE)");
  for (auto [slot, v] : {std::pair<size_t, const OnnxValue *>{4, fc2},
                         {3, fc1Bias}, {5, fc2Bias}, {6, fc3}, {7, fc3Bias}})
    if (v && v->elementType() != weightElem)
      return g.fail("input '" + g.inputName(slot) +
                    "' has a different element type from fc1_experts_weights");

  // Attributes.
  int64_t k = g.attrInt("k", 1);
  std::string act = g.attrString("activation_type", "relu");
  int64_t fusion = g.attrInt("swiglu_fusion", 0);
  bool normalize = g.attrInt("normalize_routing_weights", 0) != 0;
  bool sparseMixer = g.attrInt("use_sparse_mixer", 0) != 0;
  if (sparseMixer)
    return g.fail("use_sparse_mixer = 1 (SparseMixer routing) is not "
                  "supported");
  if (fusion < 0 || fusion > 2)
    return g.fail("swiglu_fusion = " + std::to_string(fusion) +
                  " is not 0, 1 or 2");

  // Shapes: input [.., H], router [.., E], fc1 [E, I or 2I, H], fc2 [E, H, I].
  if (input->rank() != 2 && input->rank() != 3)
    return g.fail("input must be [T, H] or [B, S, H], got " +
                  shapeString(input->type().getShape()));
  int64_t hidden = input->type().getShape().back();
  if (ShapedType::isDynamic(hidden))
    return g.fail("the hidden size (last dimension of input) must be static");
  if (fc1->rank() != 3 || fc2->rank() != 3)
    return g.fail("fc1_experts_weights and fc2_experts_weights must be 3-d "
                  "[E, out, in]");
  // E and I come from fc2 [E, H, I] when its H matches, else from fc1
  // [E, I or 2I, H]; fc1 is checked first, so that the older [E, H, I]
  // layout is reported on fc1 whenever H != I.
  if (llvm::any_of(fc1->type().getShape(), ShapedType::isDynamic) ||
      llvm::any_of(fc2->type().getShape(), ShapedType::isDynamic))
    return g.fail("expert weight shapes must be static");
  bool swiglu = act == "swiglu";
  bool fused = swiglu && fusion != 0;
  auto fc1Shape = fc1->type().getShape(), fc2Shape = fc2->type().getShape();
  int64_t experts, inter;
  if (fc2Shape[1] == hidden) {
    experts = fc2Shape[0];
    inter = fc2Shape[2];
  } else {
    experts = fc1Shape[0];
    inter = fused ? fc1Shape[1] / 2 : fc1Shape[1];
  }
  int64_t fc1Rows = fused ? 2 * inter : inter;
  if (failed(expectShape(g, 2, "fc1_experts_weights", *fc1,
                         {experts, fc1Rows, hidden},
                         fused ? "[E, 2I, H]" : "[E, I, H]")))
    return failure();
  if (failed(expectShape(g, 4, "fc2_experts_weights", *fc2,
                         {experts, hidden, inter}, "[E, H, I]")))
    return failure();
  auto probsShape = probs->type().getShape();
  if (probsShape.back() != experts && !ShapedType::isDynamic(probsShape.back()))
    return g.fail("router_probs ('" + g.inputName(1) + "') has " +
                  std::to_string(probsShape.back()) + " experts, the weights " +
                  std::to_string(experts));
  if (k < 1 || k > experts)
    return g.fail("k = " + std::to_string(k) + " is out of range for " +
                  std::to_string(experts) + " experts");
  if (fc1Bias && failed(expectShape(g, 3, "fc1_experts_bias", *fc1Bias,
                                    {experts, fc1Rows},
                                    fused ? "[E, 2I]" : "[E, I]")))
    return failure();
  if (fc2Bias && failed(expectShape(g, 5, "fc2_experts_bias", *fc2Bias,
                                    {experts, hidden}, "[E, H]")))
    return failure();
  if (fc3 && failed(expectShape(g, 6, "fc3_experts_weights", *fc3,
                                {experts, inter, hidden}, "[E, I, H]")))
    return failure();
  if (fc3Bias && !fc3)
    return g.fail("fc3_experts_bias needs fc3_experts_weights");
  if (fc3Bias && failed(expectShape(g, 7, "fc3_experts_bias", *fc3Bias,
                                    {experts, inter}, "[E, I]")))
    return failure();

  MoESpec spec;
  spec.input = input->value;
  spec.logits = probs->value;
  spec.k = k;
  spec.scoring = moe::Scoring::Softmax;
  spec.renormalize = normalize;
  spec.fc1 = fc1->value;
  spec.fc2 = fc2->value;
  if (fc1Bias)
    spec.fc1Bias = fc1Bias->value;
  if (fc2Bias)
    spec.fc2Bias = fc2Bias->value;
  if (failed(setFfnActivation(g, spec, fc3 != nullptr)))
    return failure();
  if (fc3 && spec.gating == moe::Gating::Separate) {
    spec.fc3 = fc3->value;
    if (fc3Bias)
      spec.fc3Bias = fc3Bias->value;
  } else if (fc3) {
    return g.fail("fc3_experts_weights is given but swiglu_fusion = " +
                  std::to_string(fusion) + " fuses the linear projection "
                  "into fc1");
  }
  FailureOr<Value> out = emitMoE(g, spec);
  if (failed(out))
    return failure();
  g.setOutput(0, *out);
  return success();
}


} // namespace


void moe_mlir::onnx_import::registerMoEConverters(ConverterTable &table) {
  table["com.microsoft:MoE"] = convertMicrosoftMoE;
}
