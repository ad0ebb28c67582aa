//===- Passes.td - mla dialect passes ----------------------*- tablegen -*-===//
//
// Part of moe-mlir.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_DIALECT_MLA_TRANSFORMS_PASSES_TD
#define MOE_MLIR_DIALECT_MLA_TRANSFORMS_PASSES_TD

include "mlir/Pass/PassBase.td"

def MLAWeightAbsorption : Pass<"mla-weight-absorption"> {
  let summary = "Choose how every mla.attention applies kv_b_proj";
  let description = [{
    Sets `weight_absorption` on every `mla.attention` that has none to
    `mode`:

    - `cost` (default): the lowering decides per call by the op's cost rule
      (absorbed at decode and for short prompts, naive for long prompts);
      when the new and cached token counts are both static the rule is
      evaluated here and the op gets `absorbed` or `naive` directly;
    - `absorbed` or `naive`: that form always.

    An op that already has a `weight_absorption` is left alone. Both forms
    compute the same attention; they differ by the reassociation of the
    kv_b_proj products in f32 (see `mla.attention`).
  }];
  let options = [
    Option<"mode", "mode", "std::string", /*default=*/"\"cost\"",
           "cost, absorbed or naive">,
  ];
}

#endif // MOE_MLIR_DIALECT_MLA_TRANSFORMS_PASSES_TD
