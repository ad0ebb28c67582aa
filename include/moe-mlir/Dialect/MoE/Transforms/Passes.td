//===- Passes.td - moe dialect passes ----------------------*- tablegen -*-===//
//
// Part of moe-mlir.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_DIALECT_MOE_TRANSFORMS_PASSES_TD
#define MOE_MLIR_DIALECT_MOE_TRANSFORMS_PASSES_TD

include "mlir/Pass/PassBase.td"

def MoEMaterializeRouterLogits : Pass<"moe-materialize-router-logits"> {
  let summary = "Compute router logits with linalg, leaving moe.route on logits";
  let description = [{
    Rewrites every `moe.route` that multiplies hidden states by its own router
    weight into an explicit `linalg.generic` computing

    ```
    logits[t, e] = Σ_h f32(x[t, h]) · f32(W[e, h])  (+ f32(b[e]))
    ```

    (a contraction over H accumulated in f32, as the op specifies), followed
    by a `moe.route` that takes those logits. With `round_logits` the logits
    are rounded to the hidden states' element type first, as the op
    specifies. A `moe.route` that already takes logits is left alone.

    This is the first step of lowering a router: the logits matmul becomes an
    ordinary linalg op that tiling, vectorization and fusion (e.g. with a
    preceding RMSNorm) handle like any other, and what remains of
    `moe.route` is pure per-token selection.
  }];
  let dependentDialects = [
    "::mlir::arith::ArithDialect",
    "::mlir::linalg::LinalgDialect",
    "::mlir::tensor::TensorDialect",
  ];
  let statistics = [
    Statistic<"numMaterialized", "routers-materialized",
              "Number of moe.route ops whose logits were materialized">,
  ];
}

#endif // MOE_MLIR_DIALECT_MOE_TRANSFORMS_PASSES_TD
