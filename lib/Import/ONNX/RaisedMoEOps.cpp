//===- RaisedMoEOps.cpp - raised MoE blocks to moe ops --------------------===//
//
// Part of moe-mlir's ONNX frontend.
//
// Imports the internal node RaiseMoE.cpp puts in place of a decomposed MoE
// block (its inputs and attributes are described in RaiseMoE.h).
//
//===----------------------------------------------------------------------===//

#include "GraphImporter.h"
#include "MoEEmitter.h"
#include "RaiseMoE.h"

using namespace mlir;
using namespace moe_mlir;
using namespace moe_mlir::onnx_import;

namespace {

/// The node RaiseMoE.cpp put in place of a decomposed MoE block.
LogicalResult convertRaisedMoE(GraphImporter &g) {
  auto get = [&](size_t i) -> const OnnxValue * {
    return g.hasInput(i) ? g.input(i) : nullptr;
  };
  const OnnxValue *x = g.input(0), *router = g.input(1), *fc1 = g.input(2),
                  *fc2 = g.input(3);
  if (!x || !router || !fc1 || !fc2)
    return failure();
  const OnnxValue *fc3 = get(4), *fc1Bias = get(5), *fc2Bias = get(6),
                  *fc3Bias = get(7), *routerBias = get(8);
  MoESpec spec;
  spec.input = x->value;
  spec.k = g.attrInt("k", 1);
  std::string scoring = g.attrString("scoring", "softmax");
  spec.scoring = scoring == "topk_softmax" ? moe::Scoring::TopkSoftmax
                                           : moe::Scoring::Softmax;
  spec.renormalize = g.attrInt("renormalize", 0) != 0;
  std::string act = g.attrString("activation", "silu");
  std::optional<moe::Activation> activation = moe::symbolizeActivation(act);
  if (!activation)
    return g.fail("unknown activation '" + act + "'");
  spec.activation = *activation;
  spec.gating = g.attrString("gating", "none") == "separate"
                    ? moe::Gating::Separate
                    : moe::Gating::None;
  // Weights into the [E, out, in] / [E, H] layouts the moe ops take.
  bool routerHE = g.attrString("router_layout", "EH") == "HE";
  bool inOut = g.attrString("expert_layout", "out_in") == "in_out";
  spec.routerWeight =
      routerHE ? g.transpose(router->value, {1, 0}) : router->value;
  auto expert = [&](const OnnxValue *w) -> Value {
    if (!w)
      return Value();
    return inOut ? g.transpose(w->value, {0, 2, 1}) : w->value;
  };
  spec.fc1 = expert(fc1);
  spec.fc2 = expert(fc2);
  spec.fc3 = expert(fc3);
  if (fc1Bias)
    spec.fc1Bias = fc1Bias->value;
  if (fc2Bias)
    spec.fc2Bias = fc2Bias->value;
  if (fc3Bias)
    spec.fc3Bias = fc3Bias->value;
  if (routerBias)
    spec.routerBias = routerBias->value;
  FailureOr<Value> out = emitMoE(g, spec);
  if (failed(out))
    return failure();
  g.setOutput(0, *out);
  return success();
}

} // namespace

void moe_mlir::onnx_import::registerRaisedMoEConverters(
    ConverterTable &table) {
  table[std::string(kRaisedDomain) + ":MoE"] = convertRaisedMoE;
}
