//===- Passes.td - moe-mlir conversion passes --------------*- tablegen -*-===//
//
// Part of moe-mlir.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_CONVERSION_PASSES_TD
#define MOE_MLIR_CONVERSION_PASSES_TD

include "mlir/Pass/PassBase.td"

def ConvertMoEToLinalg : Pass<"convert-moe-to-linalg"> {
  let summary = "Lower moe ops to linalg, tensor, scf, arith and math";
  let description = [{
    Rewrites every `moe` op into upstream ops on tensors, following the
    semantics stated in the op descriptions exactly:

    - `moe.route` (with logits as input; run
      `moe-materialize-router-logits` first): scoring and selection scores as
      elementwise `linalg.generic`s, group scores and the k-step top-k as
      `linalg.generic` reductions over the experts (strict comparison, so
      ties go to the lower index), the capacity admission as a sequential
      `scf.for` over the assignments in slot-major order.
    - `moe.dispatch`: a sequential bookkeeping pass over the assignments
      (counts, row of every assignment, token of every row; integer work
      only), then a parallel gather of the rows.
    - `moe.expert_ffn` / `moe.shared_expert`: per expert, contractions over
      dynamic row slices accumulated in f32, the activation and biases in f32.
    - `moe.combine`: a gather-based weighted sum, reduction over the slots in
      increasing order, in f32: no atomics, no scatter, the same bits for any
      tiling or thread count.
  }];
  let dependentDialects = [
    "::mlir::arith::ArithDialect",
    "::mlir::linalg::LinalgDialect",
    "::mlir::math::MathDialect",
    "::mlir::scf::SCFDialect",
    "::mlir::tensor::TensorDialect",
  ];
}

def ConvertMemRefCopyToLinalg : Pass<"convert-memref-copy-to-linalg"> {
  let summary = "Rewrite memref.copy as linalg.copy";
  let description = [{
    `memref.copy` between buffers with non-identity layouts (strided slices
    after bufferization) lowers to a call into MLIR's C runner utilities
    (`memrefCopy`), a library a compiled model must not depend on. As
    `linalg.copy` the copy becomes ordinary loops (and, later, vector code)
    in the model itself.
  }];
  let dependentDialects = ["::mlir::linalg::LinalgDialect"];
}

#endif // MOE_MLIR_CONVERSION_PASSES_TD
