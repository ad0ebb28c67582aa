//===- RaisedMoEOps.cpp - raised MoE blocks to moe ops --------------------===//
//
// Part of moe-mlir's ONNX frontend.
//
// Imports the internal node RaiseMoE.cpp puts in place of a decomposed MoE
// block (its inputs and attributes are described in RaiseMoE.h): the
// weights are brought to the layouts moe ops take (router [E, H], experts
// [E, out, in], rows of a fused projection sliced out) and the block is
// emitted as moe.route -> moe.dispatch -> moe.expert_ffn -> moe.combine.
//
//===----------------------------------------------------------------------===//

#include "GraphImporter.h"
#include "MoEEmitter.h"
#include "RaiseMoE.h"

#include "mlir/Dialect/Tensor/IR/Tensor.h"

#include <map>

using namespace mlir;
using namespace moe_mlir;
using namespace moe_mlir::onnx_import;

namespace {

/// Rows [begin, begin + count · step) with `step` of axis 1 of `v`.
Value sliceAxis1(GraphImporter &g, Value v, int64_t begin, int64_t count,
                 int64_t step) {
  OpBuilder &b = g.b();
  int64_t rank = cast<RankedTensorType>(v.getType()).getRank();
  SmallVector<OpFoldResult> offsets(rank, b.getIndexAttr(0));
  SmallVector<OpFoldResult> sizes = g.dims(v);
  SmallVector<OpFoldResult> strides(rank, b.getIndexAttr(1));
  offsets[1] = b.getIndexAttr(begin);
  sizes[1] = b.getIndexAttr(count);
  strides[1] = b.getIndexAttr(step);
  return tensor::ExtractSliceOp::create(b, g.loc(), v, offsets, sizes, strides);
}

/// Weights already brought to [E, out, in], by input name (gate and up
/// rows of one fused weight are transposed once).
using Transposed = std::map<std::string, Value>;

/// One expert projection (input `slot`, bias input `biasSlot`) as
/// moe.expert_ffn takes it: [E, out, in], only the rows `fcN_rows` names.
LogicalResult expertWeight(GraphImporter &g, StringRef name, size_t slot,
                           size_t biasSlot, const std::string &defaultLayout,
                           Transposed &transposed, Value &weight, Value &bias) {
  if (!g.hasInput(slot)) {
    if (g.hasInput(biasSlot))
      return g.fail(name + " bias without " + name);
    return success();
  }
  const OnnxValue *w = g.input(slot);
  if (!w)
    return failure();
  std::string layout = g.attrString((name + "_layout").str(), defaultLayout);
  if (layout != "out_in" && layout != "in_out")
    return g.fail(name + "_layout '" + layout + "' is not out_in or in_out");
  if (w->rank() != 3 || !w->type().hasStaticShape())
    return g.fail(name + " ('" + g.inputName(slot) +
                  "') must be a static [E, out, in] tensor, got " +
                  shapeString(w->type().getShape()));
  if (layout == "in_out") {
    Value &t = transposed[g.inputName(slot)];
    if (!t)
      t = g.transpose(w->value, {0, 2, 1});
    weight = t;
  } else {
    weight = w->value;
  }
  int64_t rows = cast<RankedTensorType>(weight.getType()).getDimSize(1);
  std::optional<SmallVector<int64_t>> slice =
      g.attrInts((name + "_rows").str());
  int64_t begin = 0, count = rows, step = 1;
  if (slice) {
    if (slice->size() != 3 || (*slice)[0] < 0 || (*slice)[1] > rows ||
        (*slice)[0] >= (*slice)[1] || (*slice)[2] < 1)
      return g.fail(name + "_rows must be [begin, end, step] within the " +
                    std::to_string(rows) + " rows");
    begin = (*slice)[0];
    step = (*slice)[2];
    count = ((*slice)[1] - begin + step - 1) / step;
    weight = sliceAxis1(g, weight, begin, count, step);
  }
  if (!g.hasInput(biasSlot))
    return success();
  const OnnxValue *bv = g.input(biasSlot);
  if (!bv)
    return failure();
  auto shape = bv->type().getShape();
  int64_t experts = cast<RankedTensorType>(weight.getType()).getDimSize(0);
  if (shape.size() != 2 || shape[0] != experts ||
      (shape[1] != rows && shape[1] != count))
    return g.fail(name + " bias ('" + g.inputName(biasSlot) + "') has shape " +
                  shapeString(shape) + ", expected [" +
                  std::to_string(experts) + ", " + std::to_string(count) + "]");
  bias = bv->value;
  if (slice && shape[1] == rows && count != rows)
    bias = sliceAxis1(g, bias, begin, count, step);
  return success();
}

/// The node RaiseMoE.cpp put in place of a decomposed MoE block.
LogicalResult convertRaisedMoE(GraphImporter &g) {
  const OnnxValue *x = g.input(0), *router = g.input(1);
  if (!x || !router || !g.input(2) || !g.input(3))
    return failure();
  MoESpec spec;
  spec.input = x->value;
  spec.k = g.attrInt("k", 1);
  std::string scoring = g.attrString("scoring", "softmax");
  std::optional<moe::Scoring> sc = moe::symbolizeScoring(scoring);
  if (!sc)
    return g.fail("unknown scoring '" + scoring + "'");
  spec.scoring = *sc;
  spec.renormalize = g.attrInt("renormalize", 0) != 0;
  spec.renormalizeEpsilon =
      static_cast<float>(g.attrFloat("renormalize_epsilon", 0.0));
  spec.routedScalingFactor =
      static_cast<float>(g.attrFloat("routed_scaling_factor", 1.0));
  std::string act = g.attrString("activation", "silu");
  std::optional<moe::Activation> activation = moe::symbolizeActivation(act);
  if (!activation)
    return g.fail("unknown activation '" + act + "'");
  spec.activation = *activation;
  std::string gating = g.attrString("gating", "none");
  std::optional<moe::Gating> gt = moe::symbolizeGating(gating);
  if (!gt)
    return g.fail("unknown gating '" + gating + "'");
  spec.gating = *gt;

  // Router weight [E, H] (+ bias [E]).
  std::string routerLayout = g.attrString("router_layout", "EH");
  if (routerLayout != "EH" && routerLayout != "HE")
    return g.fail("router_layout '" + routerLayout + "' is not EH or HE");
  if (router->rank() != 2)
    return g.fail("the router weight must be 2-d");
  spec.routerWeight =
      routerLayout == "HE" ? g.transpose(router->value, {1, 0}) : router->value;
  if (g.hasInput(8)) {
    const OnnxValue *routerBias = g.input(8);
    if (!routerBias)
      return failure();
    spec.routerBias = routerBias->value;
  }

  // Experts [E, out, in].
  std::string layout = g.attrString("expert_layout", "out_in");
  Transposed transposed;
  if (failed(expertWeight(g, "fc1", 2, 5, layout, transposed, spec.fc1,
                          spec.fc1Bias)) ||
      failed(expertWeight(g, "fc2", 3, 6, layout, transposed, spec.fc2,
                          spec.fc2Bias)) ||
      failed(expertWeight(g, "fc3", 4, 7, layout, transposed, spec.fc3,
                          spec.fc3Bias)))
    return failure();
  bool separate = spec.gating == moe::Gating::Separate;
  if (separate != static_cast<bool>(spec.fc3))
    return g.fail(separate ? "gating 'separate' needs fc3"
                           : "fc3 is given but gating is '" + gating + "'");
  FailureOr<Value> out = emitMoE(g, spec);
  if (failed(out))
    return failure();
  g.setOutput(0, *out);
  return success();
}

} // namespace

void moe_mlir::onnx_import::registerRaisedMoEConverters(ConverterTable &table) {
  table[std::string(kRaisedDomain) + ":MoE"] = convertRaisedMoE;
}
