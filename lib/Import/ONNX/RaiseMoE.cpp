//===- RaiseMoE.cpp - decomposed MoE blocks to one node -------------------===//
//
// Part of moe-mlir's ONNX frontend.
//
//===----------------------------------------------------------------------===//

#include "RaiseMoE.h"

using namespace moe_mlir::onnx_import;

int moe_mlir::onnx_import::raiseDecomposedMoE(onnx::GraphProto &graph) {
  (void)graph;
  return 0;
}
